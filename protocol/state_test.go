package protocol

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// TestAntecedentTable pins the table to the rules of RFC 5321 section
// 4.1.4 as this server applies them, so that a change to it is a
// deliberate one.
func TestAntecedentTable(t *testing.T) {
	want := map[Verb][numStates]bool{
		//         Init   Helo   Mail   Rcpt   Bdat   Refused
		VerbHELO: {true, true, true, true, true, false},
		VerbEHLO: {true, true, true, true, true, false},
		VerbMAIL: {false, true, false, false, false, false},
		VerbRCPT: {false, false, true, true, false, false},
		VerbDATA: {false, false, false, true, false, false},
		VerbRSET: {true, true, true, true, true, false},
		VerbNOOP: {true, true, true, true, true, false},
		VerbQUIT: {true, true, true, true, true, true},
		VerbHELP: {true, true, true, true, true, false},
		VerbVRFY: {true, true, true, true, true, false},
		// Offered unless CHUNKING is withheld: bdat_test.go.
		VerbBDAT: {false, false, false, true, true, false},
		// Only when offered (Config.TLS, ServeConn): tls_test.go.
		VerbSTARTTLS: {false, true, false, false, false, false},
		// Only when offered (Config.Auth); in Init it says "Send EHLO
		// first": auth_test.go.
		VerbAUTH: {true, true, false, false, false, false},
	}
	if n := len(carriedOut()); n != len(want) {
		t.Errorf("table has %d verbs, want %d", n, len(want))
	}
	for v, row := range want {
		for s := range numStates {
			if got := allowed(v, s); got != row[s] {
				t.Errorf("allowed(%s, %s) = %v, want %v", v, s, got, row[s])
			}
		}
	}
}

// TestSessionStates drives a session into every state and sends every
// command: a command the table allows gets its normal reply, any other
// gets 503 5.5.1, and the state is as expected afterwards.
func TestSessionStates(t *testing.T) {
	prefixes := [numStates]string{
		StateInit:    "",
		StateHelo:    "EHLO c.example\r\n",
		StateMail:    "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n",
		StateRcpt:    "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\n",
		StateBdat:    "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nBDAT 3\r\nabc",
		StateRefused: "", // Config.Greet refuses with 554
	}
	commands := map[Verb]struct {
		line  string
		reply string // reply when allowed
		after State  // state after the reply when allowed; numStates: unchanged
	}{
		VerbHELO: {"HELO c.example", "250 mx.example.net greets c.example", StateHelo},
		VerbEHLO: {"EHLO c.example", "250-mx.example.net greets c.example", StateHelo},
		VerbMAIL: {"MAIL FROM:<a@c.example>", "250 2.1.0 Sender OK", StateMail},
		VerbRCPT: {"RCPT TO:<e@d.example>", "250 2.1.5 Recipient OK", StateRcpt},
		VerbDATA: {"DATA", "354 Start mail input; end with <CRLF>.<CRLF>", StateHelo},
		VerbRSET: {"RSET", "250 2.0.0 OK", StateHelo},
		VerbNOOP: {"NOOP", "250 2.0.0 OK", numStates},
		VerbQUIT: {"QUIT", "221 2.0.0 mx.example.net closing connection", numStates},
		VerbHELP: {"HELP", "214 2.0.0 ", numStates},
		VerbVRFY: {"VRFY b", "252 2.5.2 ", numStates},
	}
	if n := len(alwaysOffered()); len(commands) != n {
		t.Fatalf("test covers %d verbs, table has %d", len(commands), n)
	}
	for v, c := range commands {
		for s := range numStates {
			input := prefixes[s] + c.line + "\r\n"
			if v == VerbDATA {
				input += ".\r\n"
			}
			var out bytes.Buffer
			cfg := testConfig()
			if s == StateRefused {
				cfg.Greet = func(Client) *Reply { return reply(554, "5.7.1", "No thanks") }
			}
			sess := NewSession(cfg, testClient, &relayPolicy{}, &fakeDelivery{}, discardLogger())
			sess.Serve(bufio.NewReader(strings.NewReader(input)), &out, nil)
			replies := replyLines(out.String())
			// Skip the greeting and the replies to the prefix.
			skip := 1 + strings.Count(prefixes[s], "\r\n")
			if s > StateInit && s != StateRefused {
				skip += 7 // EHLO's extension lines
			}
			if len(replies) <= skip {
				t.Errorf("%s in %s: no reply in %q", v, s, out.String())
				continue
			}
			got := replies[skip]
			switch {
			case allowed(v, s):
				if !strings.HasPrefix(got, c.reply) {
					t.Errorf("%s in %s: got %q, want %q", v, s, got, c.reply)
				}
				want := c.after
				if want == numStates || s == StateInit && v == VerbRSET {
					want = s
				}
				if sess.state != want {
					t.Errorf("%s in %s: state after is %s, want %s", v, s, sess.state, want)
				}
			default:
				if !strings.HasPrefix(got, "503 5.5.1 ") {
					t.Errorf("%s in %s: got %q, want 503 5.5.1", v, s, got)
				}
				if want := outOfSequence(v, s).Lines[0]; !strings.HasSuffix(got, want) {
					t.Errorf("%s in %s: got %q, want text %q", v, s, got, want)
				}
				if sess.state != s {
					t.Errorf("%s in %s: state changed to %s", v, s, sess.state)
				}
			}
		}
	}
}

// carriedOut returns the verbs of the command table that have a handler.
func carriedOut() []Verb {
	var verbs []Verb
	for _, c := range commands {
		if c.run != nil {
			verbs = append(verbs, c.verb)
		}
	}
	return verbs
}

// alwaysOffered lists the verbs carried out in every session: those of
// carriedOut but STARTTLS, which a session without TLS answers 502.
func alwaysOffered() []Verb {
	var verbs []Verb
	for _, c := range commands {
		if c.run != nil && c.offered == nil {
			verbs = append(verbs, c.verb)
		}
	}
	return verbs
}

func replyLines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateInit: "Init", StateHelo: "Helo", StateMail: "Mail", StateRcpt: "Rcpt", StateBdat: "Bdat", StateRefused: "Refused", 9: "State(9)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", s, got, want)
		}
	}
	var zero State
	if zero != StateInit {
		t.Errorf("zero State is %s, want Init", zero)
	}
}

// TestCommandTable checks the rows against each other: every verb once
// and in upper case, a verb carried out has an argument check and some
// state to follow, one not carried out has neither, and HELP lists the
// verbs carried out in table order.
func TestCommandTable(t *testing.T) {
	seen := map[Verb]bool{}
	for _, c := range commands {
		if seen[c.verb] || string(c.verb) != upperASCII(string(c.verb)) || c.verb == "" {
			t.Errorf("verb %q twice, empty or not in upper case", c.verb)
		}
		seen[c.verb] = true
		if (c.run != nil) != (c.args != nil) || (c.run != nil) != (c.after != 0) {
			t.Errorf("%s: handler, argument check and states disagree", c.verb)
		}
		if c.group == endsSession && c.verb != VerbQUIT {
			t.Errorf("%s ends the session", c.verb)
		}
	}
	var verbs []string
	s := NewSession(Config{}, Client{}, nil, nil, nil)
	for _, c := range commands {
		if c.run != nil && c.isOffered(s) {
			verbs = append(verbs, string(c.verb))
		}
	}
	help, _ := s.help(Command{})
	if got, want := help.Lines[0], "Commands: "+strings.Join(verbs, " ")+"; see RFC 5321"; got != want {
		t.Errorf("HELP says %q, want %q", got, want)
	}
}
