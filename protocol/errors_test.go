package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// serveWith runs a session with policy p over input.
func serveWith(cfg Config, p Policy, d *fakeDelivery, input string) (string, error) {
	var out bytes.Buffer
	err := NewSession(cfg, testClient, p, d, discardLogger()).Serve(bufio.NewReader(strings.NewReader(input)), &out, nil)
	return out.String(), err
}

const replyTooManyErrorsLine = "421 4.7.0 mx.example.net Too many errors, closing connection"

// TestRelayProbesEndSession is the relay probing of issue 8: a client
// got 60 "550 5.7.1" relay refusals in a row and never a 421. Now the
// refusal past MaxErrors is followed by 421 4.7.0 and the session ends;
// the commands after it are never read.
func TestRelayProbesEndSession(t *testing.T) {
	cfg := testConfig()
	cfg.MaxErrors = 20
	in := "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n" +
		strings.Repeat("RCPT TO:<victim@elsewhere.example>\r\n", 60) + "QUIT\r\n"
	out, err := serveWith(cfg, &relayPolicy{domains: []string{"example.net"}}, &fakeDelivery{}, in)
	if !errors.Is(err, ErrTooManyErrors) {
		t.Fatalf("Serve returned %v, want ErrTooManyErrors", err)
	}
	lines := replyLines(out)
	if n := strings.Count(out, "550 5.7.1 Relaying denied\r\n"); n != cfg.MaxErrors+1 {
		t.Errorf("%d relay refusals before the end, want %d", n, cfg.MaxErrors+1)
	}
	if last := lines[len(lines)-1]; last != replyTooManyErrorsLine {
		t.Errorf("last reply %q, want %q", last, replyTooManyErrorsLine)
	}
	if strings.Contains(out, "221 ") {
		t.Errorf("QUIT after the 421 was read: %q", out)
	}
}

// TestEveryRefusalCounts: each kind of 4yz or 5yz reply, repeated
// MaxErrors times, leaves the session open; once more, and the session
// replies 421 4.7.0 and ends.
func TestEveryRefusalCounts(t *testing.T) {
	const mail = "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n"
	for _, tc := range []struct {
		name  string
		setup string // sent once
		cmd   string // repeated; each gets one refusal
		reply string
		begin error // fakeDelivery.beginErr
	}{
		{name: "relay denied", setup: mail, cmd: "RCPT TO:<v@elsewhere.example>\r\n", reply: "550 5.7.1 Relaying denied"},
		{name: "syntax", setup: mail, cmd: "RCPT TO:v@example.net\r\n", reply: "501 5.1.3 Bad recipient address syntax"},
		{name: "unknown verb", cmd: "FOO\r\n", reply: "500 5.5.2 Command unrecognized"},
		{name: "not implemented", cmd: "EXPN list\r\n", reply: "502 5.5.1 Command not implemented"},
		{name: "sequence", setup: "EHLO c.example\r\n", cmd: "RCPT TO:<v@example.net>\r\n", reply: "503 5.5.1 Need MAIL before RCPT"},
		{name: "non-ASCII without SMTPUTF8", setup: mail, cmd: "RCPT TO:<ü@example.net>\r\n", reply: "553 5.6.7 Non-ASCII address needs SMTPUTF8"},
		{name: "SIZE too big", setup: "EHLO c.example\r\n", cmd: "MAIL FROM:<a@c.example> SIZE=999999999\r\n", reply: "552 5.3.4 Message too big"},
		{name: "delivery fails", setup: mail + "RCPT TO:<v@example.net>\r\n",
			cmd: "DATA\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<v@example.net>\r\n", reply: "451 4.3.0 Local error, try again later",
			begin: errors.New("disk gone")},
		{name: "message refused", setup: mail + "RCPT TO:<v@example.net>\r\n",
			cmd:   "DATA\r\nbare\nLF\r\n.\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<v@example.net>\r\n",
			reply: "550 5.5.2 Message contains bare CR or LF, rejected (RFC 5321 section 2.3.8)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxErrors = 5
			pol := &relayPolicy{domains: []string{"example.net"}}
			in := tc.setup + strings.Repeat(tc.cmd, cfg.MaxErrors) + "NOOP\r\nQUIT\r\n"
			out, err := serveWith(cfg, pol, &fakeDelivery{beginErr: tc.begin}, in)
			if err != nil || !strings.HasSuffix(out, "250 2.0.0 OK\r\n221 2.0.0 mx.example.net closing connection\r\n") || strings.Count(out, tc.reply+"\r\n") != cfg.MaxErrors {
				t.Fatalf("%d refusals: Serve returned %v, output %q", cfg.MaxErrors, err, out)
			}
			in = tc.setup + strings.Repeat(tc.cmd, cfg.MaxErrors+1) + "NOOP\r\nQUIT\r\n"
			out, err = serveWith(cfg, pol, &fakeDelivery{beginErr: tc.begin}, in)
			if !errors.Is(err, ErrTooManyErrors) || !strings.HasSuffix(out, tc.reply+"\r\n"+replyTooManyErrorsLine+"\r\n") {
				t.Fatalf("%d refusals: Serve returned %v, output %q", cfg.MaxErrors+1, err, out)
			}
		})
	}
}

// TestTooManyRecipientsNotCounted: 452 4.5.3 for recipients past
// MaxRecipients is the one refusal that does not count (countsAsError),
// so a pipelining client with many recipients keeps its session and
// delivers the first MaxRecipients.
func TestTooManyRecipientsNotCounted(t *testing.T) {
	cfg := testConfig()
	cfg.MaxErrors, cfg.MaxRecipients = 2, 3
	var rcpts strings.Builder
	for i := range 50 {
		rcpts.WriteString("RCPT TO:<u" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@example.net>\r\n")
	}
	d := &fakeDelivery{}
	out, err := serveWith(cfg, &relayPolicy{domains: []string{"example.net"}}, d,
		"EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n"+rcpts.String()+"DATA\r\nhi\r\n.\r\nQUIT\r\n")
	if err != nil || strings.Count(out, "452 4.5.3 Too many recipients\r\n") != 47 || len(d.committed()) != 1 {
		t.Fatalf("Serve returned %v, %d messages, output %q", err, len(d.committed()), out)
	}
}
