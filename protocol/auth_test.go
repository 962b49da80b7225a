package protocol

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAuth accepts the passwords in users; the user "broken" is a check
// that fails (a checkpassword that exits 111).
type fakeAuth struct {
	users map[string]string
	mu    sync.Mutex
	asked []string // user names asked about, in order
}

func (a *fakeAuth) Authenticate(_ Client, user, pass string) error {
	a.mu.Lock()
	a.asked = append(a.asked, user)
	a.mu.Unlock()
	if user == "broken" {
		return errors.New("checkpassword exited 111")
	}
	if p, ok := a.users[user]; ok && p == pass {
		return nil
	}
	return ErrBadCredentials
}

func newFakeAuth() *fakeAuth { return &fakeAuth{users: map[string]string{"alice": "s3cret pass"}} }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// authSession runs a session of client over in with cfg and a fakeAuth,
// and returns the replies, one per line, and the messages committed.
func authSession(t *testing.T, cfg Config, client Client, in string) (string, []*fakeWriter, *fakeAuth) {
	t.Helper()
	a := newFakeAuth()
	cfg.Auth = a
	d := &fakeDelivery{}
	var out strings.Builder
	NewSession(cfg, client, &relayPolicy{}, d, discardLogger()).
		Serve(bufio.NewReader(strings.NewReader(in)), &out, nil)
	return out.String(), d.committed(), a
}

// replies returns the reply lines of out that start with a code and a
// space: the last line of each reply.
func lastLines(out string) []string {
	var r []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if len(l) >= 4 && l[3] == ' ' {
			r = append(r, l)
		}
	}
	return r
}

// TestAuthReplies holds each reply of AUTH (RFC 4954 sections 4 to 6)
// on a session where AUTH may be used (a local pipe session): one
// command sequence per case, and the reply its last command gets.
func TestAuthReplies(t *testing.T) {
	local := Client{Local: true}
	plainOK := "AUTH PLAIN " + b64("\x00alice\x00s3cret pass")
	tests := []struct {
		name string
		cfg  func(*Config)
		in   []string // commands after the greeting
		want string   // prefix of the reply to the last one
	}{
		{"PLAIN with an initial response", nil, []string{"EHLO c", plainOK}, "235 2.7.0 "},
		{"PLAIN after 334", nil, []string{"EHLO c", "AUTH PLAIN", b64("alice\x00alice\x00s3cret pass")}, "235 2.7.0 "},
		{"PLAIN empty initial response", nil, []string{"EHLO c", "AUTH PLAIN ="}, "535 5.7.8 "},
		{"PLAIN wrong password", nil, []string{"EHLO c", "AUTH PLAIN " + b64("\x00alice\x00guess")}, "535 5.7.8 "},
		{"PLAIN unknown user", nil, []string{"EHLO c", "AUTH PLAIN " + b64("\x00mallory\x00s3cret pass")}, "535 5.7.8 "},
		{"PLAIN other identity", nil, []string{"EHLO c", "AUTH PLAIN " + b64("bob\x00alice\x00s3cret pass")}, "535 5.7.8 "},
		{"PLAIN malformed", nil, []string{"EHLO c", "AUTH PLAIN " + b64("alice s3cret")}, "535 5.7.8 "},
		{"PLAIN NUL in password", nil, []string{"EHLO c", "AUTH PLAIN " + b64("\x00alice\x00s3cret\x00pass")}, "535 5.7.8 "},
		{"PLAIN newline in user", nil, []string{"EHLO c", "AUTH PLAIN " + b64("\x00ali\nce\x00s3cret pass")}, "535 5.7.8 "},
		{"LOGIN", nil, []string{"EHLO c", "AUTH LOGIN", b64("alice"), b64("s3cret pass")}, "235 2.7.0 "},
		{"LOGIN initial response", nil, []string{"EHLO c", "auth login " + b64("alice"), b64("s3cret pass")}, "235 2.7.0 "},
		{"LOGIN wrong", nil, []string{"EHLO c", "AUTH LOGIN", b64("alice"), b64("x")}, "535 5.7.8 "},
		{"temporary failure", nil, []string{"EHLO c", "AUTH PLAIN " + b64("\x00broken\x00x")}, "454 4.7.0 "},
		{"cancelled", nil, []string{"EHLO c", "AUTH LOGIN", "*"}, "501 5.0.0 "},
		{"bad base64 response", nil, []string{"EHLO c", "AUTH LOGIN", "!!!"}, "501 5.5.2 "},
		{"bad base64 initial response", nil, []string{"EHLO c", "AUTH PLAIN !!!"}, "501 5.5.2 "},
		{"unknown mechanism", nil, []string{"EHLO c", "AUTH CRAM-MD5"}, "504 5.5.4 "},
		{"no mechanism", nil, []string{"EHLO c", "AUTH"}, "501 5.5.4 "},
		{"before EHLO", nil, []string{plainOK}, "503 5.5.1 "},
		{"after HELO", nil, []string{"HELO c", plainOK}, "503 5.5.1 "},
		{"twice", nil, []string{"EHLO c", plainOK, plainOK}, "503 5.5.1 Already authenticated"},
		{"in a transaction", nil, []string{"EHLO c", "MAIL FROM:<a@c.example>", plainOK}, "503 5.5.1 "},
		{"TLS required", func(c *Config) { c.RequireTLS = true }, []string{"EHLO c", plainOK}, "530 5.7.0 Must issue a STARTTLS"},
		{"MAIL before AUTH when required", func(c *Config) { c.RequireAuth = true },
			[]string{"EHLO c", "MAIL FROM:<a@c.example>"}, "530 5.7.0 Authentication required"},
		{"MAIL after AUTH when required", func(c *Config) { c.RequireAuth = true },
			[]string{"EHLO c", plainOK, "MAIL FROM:<a@c.example>"}, "250 "},
		{"AUTH= on MAIL", nil, []string{"EHLO c", "MAIL FROM:<a@c.example> AUTH=a+2Bb@c.example"}, "250 "},
		{"AUTH= not xtext", nil, []string{"EHLO c", "MAIL FROM:<a@c.example> AUTH=a+2bb@c.example"}, "501 5.5.4 "},
		{"line too long", nil, []string{"EHLO c", "AUTH LOGIN", strings.Repeat("A", maxAuthLine)}, "500 5.5.6 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			out, _, _ := authSession(t, cfg, local, strings.Join(tc.in, "\r\n")+"\r\n")
			got := lastLines(out)
			if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], tc.want) {
				t.Errorf("last reply %q, want %q...\n%s", got, tc.want, out)
			}
		})
	}
}

// TestAuthNotOffered: without an Authenticator AUTH is 502 and no one
// hears of it, and MAIL FROM's AUTH= is 555 (RFC 5321 section
// 4.1.1.11); on a network session without TLS it is not advertised and
// is 538 5.7.11, unless AllowPlaintextAuth.
func TestAuthNotOffered(t *testing.T) {
	out := runSession(t, testConfig(), "EHLO c\r\nHELP\r\nAUTH PLAIN "+b64("\x00alice\x00s3cret pass")+
		"\r\nMAIL FROM:<a@c.example> AUTH=<>\r\n")
	got := lastLines(out)
	if strings.Contains(out, "AUTH") || len(got) != 5 || !strings.HasPrefix(got[3], "502 5.5.1") || !strings.HasPrefix(got[4], "555 5.5.4") {
		t.Errorf("without an Authenticator:\n%s", out)
	}

	in := "EHLO c\r\nAUTH PLAIN " + b64("\x00alice\x00s3cret pass") + "\r\n"
	out, _, a := authSession(t, testConfig(), testClient, in)
	if strings.Contains(out, "250 AUTH") || !strings.HasSuffix(out, "538 5.7.11 Encryption required for requested authentication mechanism\r\n") || len(a.asked) != 0 {
		t.Errorf("network session without TLS:\n%s\nasked %q", out, a.asked)
	}

	cfg := testConfig()
	cfg.AllowPlaintextAuth = true
	out, _, _ = authSession(t, cfg, testClient, in)
	if !strings.Contains(out, "\r\n250 AUTH PLAIN LOGIN\r\n") || !strings.HasSuffix(out, "235 2.7.0 Authentication successful\r\n") {
		t.Errorf("AllowPlaintextAuth:\n%s", out)
	}
}

// TestAuthOverTLS: AUTH is offered only after STARTTLS, EHLO stops
// offering it once used, the Received: header says ESMTPSA and the
// envelope carries the user; STARTTLS would forget it.
func TestAuthOverTLS(t *testing.T) {
	server, client := testCert(t)
	cfg := testConfig()
	cfg.TLS = server
	cfg.Auth = newFakeAuth()
	td := startTLSDialog(t, cfg)
	td.expect("", "220 ")
	if r := td.expect("EHLO c.example", "250-"); strings.Contains(r, "AUTH") {
		t.Errorf("AUTH offered before TLS: %q", r)
	}
	td.expect("HELP", "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH;")
	td.expect("AUTH PLAIN "+b64("\x00alice\x00s3cret pass"), "538 5.7.11 ")
	td.expect("STARTTLS", "220 ")
	td.upgrade(client)
	if r := td.expect("EHLO c.example", "250-"); !strings.HasSuffix(r, "\n250 AUTH PLAIN LOGIN") {
		t.Errorf("EHLO over TLS: %q", r)
	}
	td.expect("AUTH LOGIN", "334 VXNlcm5hbWU6")
	td.expect(b64("alice"), "334 UGFzc3dvcmQ6")
	td.expect(b64("s3cret pass"), "235 2.7.0 Authentication successful")
	if r := td.expect("EHLO c.example", "250-"); strings.Contains(r, "AUTH") {
		t.Errorf("EHLO after AUTH offers it again: %q", r)
	}
	td.expect("MAIL FROM:<alice@c.example>", "250 ")
	td.expect("RCPT TO:<b@d.example>", "250 ")
	td.expect("DATA", "354")
	td.expect("Subject: x\r\n\r\nhi\r\n.", "250 2.0.0 OK queued as Q1")
	td.expect("QUIT", "221")
	if err := td.end(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c := td.d.committed()
	if len(c) != 1 || c[0].env.AuthUser != "alice" {
		t.Fatalf("committed %d, AuthUser %q", len(c), c[0].env.AuthUser)
	}
	if got := c[0].buf.String(); !strings.Contains(got, " with ESMTPSA id Q1;") {
		t.Errorf("trace header:\n%s", got)
	}
}

// TestTraceProtocol holds the WITH clause of RFC 3848 for each
// combination.
func TestTraceProtocol(t *testing.T) {
	for _, tc := range []struct {
		env  Envelope
		want string
	}{
		{Envelope{Protocol: "SMTP"}, "SMTP"},
		{Envelope{Protocol: "ESMTP"}, "ESMTP"},
		{Envelope{Protocol: "ESMTP", AuthUser: "a"}, "ESMTPA"},
		{Envelope{Protocol: "ESMTP", TLSVersion: "TLSv1.3"}, "ESMTPS"},
		{Envelope{Protocol: "ESMTP", TLSVersion: "TLSv1.3", AuthUser: "a"}, "ESMTPSA"},
		{Envelope{Protocol: "ESMTP", SMTPUTF8: true, TLSVersion: "TLSv1.3", AuthUser: "a"}, "UTF8SMTPSA"},
	} {
		if got := traceProtocol(&tc.env); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.env, got, tc.want)
		}
	}
}

// TestAuthBruteForce: each failure waits AuthFailureDelay, the same for
// an unknown user as for a wrong password; each counts toward
// MaxErrors, and the session ends with 421 once past it; the log names
// the user and never the password.
func TestAuthBruteForce(t *testing.T) {
	const delay = 150 * time.Millisecond
	cfg := testConfig()
	cfg.AuthFailureDelay, cfg.MaxErrors = delay, 2
	var logBuf bytes.Buffer
	cfg.Auth = newFakeAuth()
	in := "EHLO c\r\n" +
		"AUTH PLAIN " + b64("\x00alice\x00guess-one") + "\r\n" +
		"AUTH PLAIN " + b64("\x00nobody\x00guess-two") + "\r\n" +
		"AUTH PLAIN " + b64("\x00alice\x00guess-three") + "\r\n" +
		"AUTH PLAIN " + b64("\x00alice\x00s3cret pass") + "\r\n"
	var out strings.Builder
	start := time.Now()
	err := NewSession(cfg, Client{Local: true}, &relayPolicy{}, &fakeDelivery{}, slog.New(slog.NewTextHandler(&logBuf, nil))).
		Serve(bufio.NewReader(strings.NewReader(in)), &out, nil)
	took := time.Since(start)
	got := lastLines(out.String())
	want := []string{"220 ", "250 ", "535 5.7.8 ", "535 5.7.8 ", "535 5.7.8 ", "421 4.7.0 "}
	if len(got) != len(want) {
		t.Fatalf("replies %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("reply %d %q, want %q", i, got[i], want[i])
		}
	}
	if !errors.Is(err, ErrTooManyErrors) {
		t.Errorf("Serve = %v, want ErrTooManyErrors", err)
	}
	if took < 3*delay {
		t.Errorf("three failures took %v, want at least %v", took, 3*delay)
	}
	log := logBuf.String()
	for _, s := range []string{"guess", "s3cret"} {
		if strings.Contains(log, s) {
			t.Errorf("log holds the password %q:\n%s", s, log)
		}
	}
	if !strings.Contains(log, "user=nobody") || strings.Count(log, `msg="auth failed"`) != 3 {
		t.Errorf("log does not name each failure and its user:\n%s", log)
	}
}

// TestAuthDelaySameForUnknownUser: the reply to an unknown user comes
// no sooner than the one to a wrong password.
func TestAuthDelaySameForUnknownUser(t *testing.T) {
	const delay = 200 * time.Millisecond
	for _, user := range []string{"alice", "nobody"} {
		cfg := testConfig()
		cfg.AuthFailureDelay = delay
		start := time.Now()
		out, _, _ := authSession(t, cfg, Client{Local: true}, "EHLO c\r\nAUTH PLAIN "+b64("\x00"+user+"\x00wrong")+"\r\n")
		if took := time.Since(start); took < delay || !strings.HasSuffix(out, "535 5.7.8 Authentication credentials invalid\r\n") {
			t.Errorf("%s: %v\n%s", user, took, out)
		}
	}
}

func TestDecodeXtext(t *testing.T) {
	for in, want := range map[string]string{
		"<>": "<>", "a@b": "a@b", "a+2Bb@c": "a+b@c", "+3D": "=", "+41+42": "AB",
	} {
		if got, ok := decodeXtext(in); !ok || got != want {
			t.Errorf("decodeXtext(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"a=b", "a+", "a+4", "a+4g", "a+4a", "a b", "\x7f", "é"} {
		if got, ok := decodeXtext(in); ok {
			t.Errorf("decodeXtext(%q) = %q, want refused", in, got)
		}
	}
}

// encodeXtext is the fuzz oracle's xtext encoder (RFC 3461 section 4),
// written apart from the decoder: "+", "=" and bytes outside "!" to "~"
// as "+" and two upper-case hex digits.
func encodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteString("+" + strings.ToUpper(hex2(c)))
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func hex2(c byte) string { const d = "0123456789abcdef"; return string([]byte{d[c>>4], d[c&15]}) }

// FuzzXtext holds the AUTH= decoder against the oracle: every string
// survives encoding and decoding; what the decoder accepts holds only
// "!" to "~" but "=", each "+" stands for one byte (so "+21" is a
// decoder's "!" too), and its result re-encodes to something that
// decodes to it.
func FuzzXtext(f *testing.F) {
	for _, s := range []string{"<>", "a+2Bb@c", "+3D", "a=b", "+4a", "é", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, ok := decodeXtext(encodeXtext(s)); !ok || got != s {
			t.Fatalf("decode(encode(%q)) = %q, %v", s, got, ok)
		}
		got, ok := decodeXtext(s)
		if !ok {
			return
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '!' || s[i] > '~' || s[i] == '=' {
				t.Fatalf("decode(%q) accepted byte %q", s, s[i])
			}
		}
		if len(got) != len(s)-2*strings.Count(s, "+") {
			t.Fatalf("decode(%q) = %q: wrong length", s, got)
		}
		if again, ok := decodeXtext(encodeXtext(got)); !ok || again != got {
			t.Fatalf("decode(%q) = %q, which does not survive encoding", s, got)
		}
	})
}
