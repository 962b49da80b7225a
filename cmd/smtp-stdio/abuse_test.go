package main

// End-to-end tests of abuse handling (early talkers, improper pipelining,
// slow senders) and message checks. The timing checks apply only to a
// client on a socket, so these tests run the binary as inetd does: its
// standard input and output are the server end of a loopback TCP
// connection the test holds the other end of. That lets a test put bytes
// on the wire before the process even starts.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// sockSession is the binary serving one loopback TCP connection.
type sockSession struct {
	conn   net.Conn // the client's end
	r      *bufio.Reader
	cmd    *exec.Cmd
	stderr bytes.Buffer  // read it only after wait
	done   chan struct{} // closed when the process has exited
}

// newSockSession connects a client to a server socket that the binary
// will serve on standard input and output, with early (if not empty)
// already sent on the wire before the process starts.
func newSockSession(t *testing.T, spoolDir, early string, extraEnv ...string) *sockSession {
	t.Helper()
	return startSockSession(t, spoolDir, early, false, extraEnv...)
}

// startSockSession is newSockSession; with stderrOnSocket, standard error
// is the connection too, as inetd and xinetd start a server.
func startSockSession(t *testing.T, spoolDir, early string, stderrOnSocket bool, extraEnv ...string) *sockSession {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	srv, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := srv.(*net.TCPConn).File()
	srv.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if early != "" {
		if _, err := io.WriteString(conn, early); err != nil {
			t.Fatal(err)
		}
	}
	s := &sockSession{conn: conn, r: bufio.NewReader(conn), done: make(chan struct{})}
	s.cmd = exec.Command(binary)
	s.cmd.Env = baseEnv(spoolDir, extraEnv...)
	s.cmd.Stdin, s.cmd.Stdout, s.cmd.Stderr = f, f, &s.stderr
	if stderrOnSocket {
		s.cmd.Stderr = f
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return s
}

// reply reads one whole reply and returns its lines.
func (s *sockSession) reply(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for {
		l, err := s.r.ReadString('\n')
		b.WriteString(l)
		if err != nil {
			t.Fatalf("reading reply: %v; got %q", err, b.String())
		}
		if len(l) >= 4 && l[3] == ' ' {
			return b.String()
		}
	}
}

// send writes raw client bytes.
func (s *sockSession) send(t *testing.T, p string) {
	t.Helper()
	if _, err := io.WriteString(s.conn, p); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its exit code, the
// rest of what it wrote to the client, and its standard error.
func (s *sockSession) wait(t *testing.T) (code int, rest, stderr string) {
	t.Helper()
	b, _ := io.ReadAll(s.r) // to the end of the connection
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the session did not end")
	}
	return s.cmd.ProcessState.ExitCode(), string(b), s.stderr.String()
}

// TestEarlyTalker: a client whose EHLO is on the wire before the greeting
// gets 554 5.5.0 in place of the 220 and the connection ends, with the
// default SMTP_GREET_PAUSE of 0; one line says so in the log.
func TestEarlyTalker(t *testing.T) {
	sd := newSpool(t)
	s := newSockSession(t, sd, "EHLO early.example\r\n")
	if got := s.reply(t); got != "554 5.5.0 Protocol error: client sent data before the greeting\r\n" {
		t.Errorf("reply %q", got)
	}
	code, rest, stderr := s.wait(t)
	if rest != "" || code != 1 {
		t.Errorf("after the 554: %q, exit %d", rest, code)
	}
	if n := strings.Count(stderr, "early talker"); n != 1 || !strings.Contains(stderr, "client=127.0.0.1:") {
		t.Errorf("log:\n%s", stderr)
	}
	if ms := spooled(t, sd); len(ms) != 0 {
		t.Errorf("%d messages spooled", len(ms))
	}
}

// TestEarlyTalkerDuringPause: with SMTP_GREET_PAUSE, bytes that arrive
// during the pause are caught at once; the pause does not run out first.
func TestEarlyTalkerDuringPause(t *testing.T) {
	s := newSockSession(t, newSpool(t), "", "SMTP_GREET_PAUSE=20s")
	start := time.Now()
	time.Sleep(200 * time.Millisecond)
	s.send(t, "EHLO impatient.example\r\n")
	if got := s.reply(t); !strings.HasPrefix(got, "554 5.5.0 ") {
		t.Errorf("reply %q", got)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("refused after %v: the pause ran out", took)
	}
}

// TestGreetPauseWellBehaved: a client that waits for the greeting gets
// it after SMTP_GREET_PAUSE, and its mail goes through (Go's net/smtp).
func TestGreetPauseWellBehaved(t *testing.T) {
	sd := newSpool(t)
	start := time.Now()
	s := newSockSession(t, sd, "", "SMTP_GREET_PAUSE=500ms")
	c, err := smtp.NewClient(s.conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("greeting after %v, before the pause ended", took)
	}
	sendWith(t, c, helloBody)
	if code, _, _ := s.wait(t); code != 0 {
		t.Errorf("exit %d", code)
	}
	if ms := spooled(t, sd); len(ms) != 1 {
		t.Errorf("%d messages spooled, want 1", len(ms))
	}
}

// sendWith sends body from a@example.net to x@example.org and quits.
func sendWith(t *testing.T, c *smtp.Client, body string) {
	t.Helper()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("x@example.org"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// TestEarlyTalkerAllowed: SMTP_REJECT_EARLY_TALKERS=false serves the
// early talker as any other client.
func TestEarlyTalkerAllowed(t *testing.T) {
	s := newSockSession(t, newSpool(t), "EHLO early.example\r\n", "SMTP_REJECT_EARLY_TALKERS=false")
	if got := s.reply(t); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting %q", got)
	}
	if got := s.reply(t); !strings.HasPrefix(got, "250-mx.test.example greets early.example") {
		t.Fatalf("EHLO reply %q", got)
	}
	s.send(t, "QUIT\r\n")
	if got := s.reply(t); !strings.HasPrefix(got, "221 ") {
		t.Errorf("QUIT reply %q", got)
	}
}

// TestImproperPipelining: on a socket, a command sent before the reply
// to EHLO, or message text sent with DATA before the 354, gets 554 5.5.0
// and the session ends with nothing spooled; with the setting off the
// same bytes are served. MAIL, RCPT and DATA in one group are proper
// (TestTCPServerSwaks sends them with --pipeline through tcpserver).
func TestImproperPipelining(t *testing.T) {
	const improper = "554 5.5.0 Improper use of SMTP command pipelining\r\n"
	for _, c := range []struct {
		name, before, group string
	}{
		{"after EHLO", "", "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\n"},
		{"after HELO", "", "HELO c.example\r\nNOOP\r\n"},
		{"MAIL and RCPT after HELO", "HELO c.example\r\n", "MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\n"},
		{"text with DATA", "EHLO c.example\r\n", "MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n" + helloBody + ".\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sd := newSpool(t)
			s := newSockSession(t, sd, "")
			s.reply(t) // 220
			if c.before != "" {
				s.send(t, c.before)
				s.reply(t)
			}
			s.send(t, c.group)
			var got string
			for !strings.HasPrefix(got, "554 ") {
				got = s.reply(t)
			}
			if got != improper {
				t.Errorf("reply %q", got)
			}
			code, rest, stderr := s.wait(t)
			if rest != "" || code != 1 || !strings.Contains(stderr, `msg="improper pipelining"`) {
				t.Errorf("after the 554: %q, exit %d, log:\n%s", rest, code, stderr)
			}
			if ms := spooled(t, sd); len(ms) != 0 {
				t.Errorf("%d messages spooled", len(ms))
			}
			noTempFiles(t, sd)

			// Off, the same bytes get their replies.
			s = newSockSession(t, sd, "", "SMTP_FORBID_IMPROPER_PIPELINING=false")
			s.reply(t)
			if c.before != "" {
				s.send(t, c.before)
				s.reply(t)
			}
			s.send(t, c.group+"QUIT\r\n")
			for !strings.HasPrefix(got, "221 ") {
				got = s.reply(t)
				if strings.HasPrefix(got, "554 ") {
					t.Fatalf("setting off: %q", got)
				}
			}
		})
	}
}

// TestNonSMTPCommand: an HTTP request from Go's net/http, aimed at the
// mail port with SMTP commands in its body (the cross-protocol attack),
// gets 221 2.7.0 and the connection ends at the request line, whether or
// not improper pipelining is forbidden; the body is never read as
// commands, so nothing is spooled.
func TestNonSMTPCommand(t *testing.T) {
	const body = "EHLO attacker.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n" + helloBody + ".\r\nQUIT\r\n"
	for _, c := range []struct{ name, method, env string }{
		{"POST", http.MethodPost, ""},
		{"GET", http.MethodGet, "SMTP_FORBID_IMPROPER_PIPELINING=false"},
		{"CONNECT", http.MethodConnect, "SMTP_FORBID_IMPROPER_PIPELINING=false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sd := newSpool(t)
			var env []string
			if c.env != "" {
				env = append(env, c.env)
			}
			s := newSockSession(t, sd, "", env...)
			s.reply(t) // 220
			req, err := http.NewRequest(c.method, "http://127.0.0.1:25/", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if err := req.Write(s.conn); err != nil {
				t.Fatal(err)
			}
			if got := s.reply(t); !strings.HasPrefix(got, "221 2.7.0 ") || !strings.Contains(got, "non-SMTP command") {
				t.Errorf("reply %q", got)
			}
			code, rest, stderr := s.wait(t)
			if rest != "" || code != 1 || !strings.Contains(stderr, `msg="non-SMTP command"`) || !strings.Contains(stderr, `line="`+c.method+" / HTTP/1.1\"") {
				t.Errorf("after the 221: %q, exit %d, log:\n%s", rest, code, stderr)
			}
			if ms := spooled(t, sd); len(ms) != 0 {
				t.Errorf("%d messages spooled", len(ms))
			}
		})
	}
}

// TestProperPipeliningOnSocket: a group of MAIL, RCPT, DATA and, after
// the 354, the message, its end and QUIT in one write: all proper.
func TestProperPipeliningOnSocket(t *testing.T) {
	sd := newSpool(t)
	s := newSockSession(t, sd, "")
	s.reply(t)
	s.send(t, "EHLO c.example\r\n")
	s.reply(t)
	s.send(t, "MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n")
	for _, want := range []string{"250 2.1.0", "250 2.1.5", "250 2.1.5", "354 "} {
		if got := s.reply(t); !strings.HasPrefix(got, want) {
			t.Fatalf("reply %q, want %s", got, want)
		}
	}
	s.send(t, helloBody+".\r\nQUIT\r\n")
	for _, want := range []string{"250 2.0.0 OK queued", "221 "} {
		if got := s.reply(t); !strings.HasPrefix(got, want) {
			t.Fatalf("reply %q, want %s", got, want)
		}
	}
	if ms := spooled(t, sd); len(ms) != 1 {
		t.Errorf("%d messages spooled, want 1", len(ms))
	}
}

// TestMinDataRate: a client that trickles message text (a byte every 50
// ms, 20 bytes a second) never lets SMTP_DATA_TIMEOUT pass, but falls
// below SMTP_MIN_DATA_RATE: once the first SMTP_DATA_TIMEOUT is over,
// 421 4.4.2 and the end, long before SMTP_SESSION_TIMEOUT, nothing
// spooled. A pipe supports deadlines as a socket does.
func TestMinDataRate(t *testing.T) {
	sd := newSpool(t)
	cmd := exec.Command(binary)
	cmd.Env = baseEnv(sd, "SMTP_DATA_TIMEOUT=1s", "SMTP_MIN_DATA_RATE=1000", "SMTP_SESSION_TIMEOUT=1m")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		defer stdin.Close()
		io.WriteString(stdin, "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nSubject: slow\r\n\r\n")
		for tick := time.NewTicker(50 * time.Millisecond); ; {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := io.WriteString(stdin, "x"); err != nil {
					return
				}
			}
		}
	}()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("session still running after 20s:\n%s", out.String())
	}
	close(stop)
	took := time.Since(start)
	wantCodes(t, out.String(), "220", "250", "250", "250", "354", "421")
	if !strings.Contains(out.String(), "\r\n421 4.4.2 mx.test.example Data arriving too slowly, closing connection\r\n") || took > 10*time.Second {
		t.Errorf("after %v:\n%s", took, out.String())
	}
	if !strings.Contains(errOut.String(), `reason="data rate below minimum" min_rate=1000`) {
		t.Errorf("log:\n%s", errOut.String())
	}
	if ms := spooled(t, sd); len(ms) != 0 {
		t.Errorf("%d messages spooled", len(ms))
	}
	noTempFiles(t, sd)

	// A client that sends at once is not affected by the same settings.
	out2, _ := pipeSession(t, sd, "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n"+helloBody+".\r\nQUIT\r\n",
		"SMTP_DATA_TIMEOUT=1s", "SMTP_MIN_DATA_RATE=1000")
	wantCodes(t, out2, "220", "250", "250", "250", "354", "250", "221")
}

// headerSession sends one message with the given text over a pipe and
// returns the replies and the spooled message bytes after the trace
// header ("" when nothing was spooled). The session goes on after the
// message: a NOOP is answered.
func headerSession(t *testing.T, text string, env ...string) (out, spooledText string) {
	t.Helper()
	sd := newSpool(t)
	out, _ = pipeSession(t, sd, "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n"+
		text+".\r\nNOOP\r\nQUIT\r\n", env...)
	ms := spooled(t, sd)
	noTempFiles(t, sd)
	switch len(ms) {
	case 0:
		wantCodes(t, out, "220", "250", "250", "250", "354", "550", "250", "221")
		return out, ""
	case 1:
		wantCodes(t, out, "220", "250", "250", "250", "354", "250", "250", "221")
		_, rest := content(t, ms[0])
		return out, rest
	}
	t.Fatalf("%d messages spooled", len(ms))
	return
}

// The header sections of the header check tests.
const (
	fullHeader   = "From: Alice <a@example.net>\r\nTo: x@example.org\r\nDate: Sat, 21 Nov 2026 11:18:25 +0000\r\nMessage-ID: <1@example.net>\r\nSubject: t\r\n\r\nbody\r\n"
	noDateHeader = "From: Alice <a@example.net>\r\nSubject: t\r\n\r\nbody\r\n"
)

// TestHeaderCorrupt: by default (lenient) a header section with a line
// that is neither a field nor a continuation is refused with 550 5.6.0
// naming the defect, after the data; nothing is spooled and the session
// goes on. The same message passes with SMTP_HEADER_CHECKS=off.
func TestHeaderCorrupt(t *testing.T) {
	corrupt := "From: a@example.net\r\nthis line has no colon\r\n\r\nbody\r\n"
	out, got := headerSession(t, corrupt)
	if got != "" || !strings.Contains(out, "\r\n550 5.6.0 Header line 2 has no colon (RFC 5322 section 2.2)\r\n250 2.0.0 OK\r\n") {
		t.Errorf("replies:\n%s", out)
	}
	if _, got = headerSession(t, corrupt, "SMTP_HEADER_CHECKS=off"); got != corrupt {
		t.Errorf("off: spooled %q", got)
	}
	// A header section over SMTP_MAX_HEADER_SIZE.
	long := "From: a@example.net\r\n" + strings.Repeat("X-Filler: 0123456789012345678901234567890123456789\r\n", 40) + "\r\nbody\r\n"
	out, got = headerSession(t, long, "SMTP_MAX_HEADER_SIZE=1000")
	if got != "" || !strings.Contains(out, "\r\n550 5.6.0 Header section longer than 1000 bytes\r\n") {
		t.Errorf("long header, replies:\n%s", out)
	}
}

// TestHeaderEightBitLenient: raw 8-bit bytes in the header pass the
// default checks, byte for byte; strict mode refuses them without
// SMTPUTF8.
func TestHeaderEightBitLenient(t *testing.T) {
	msg := "From: Ren\xc3\xa9 <a@example.net>\r\nDate: Sat, 21 Nov 2026 11:18:25 +0000\r\nSubject: caf\xe9 latin-1\r\n\r\nbody\r\n"
	if _, got := headerSession(t, msg); got != msg {
		t.Errorf("spooled %q, want %q", got, msg)
	}
	out, got := headerSession(t, msg, "SMTP_HEADER_CHECKS=strict")
	if got != "" || !strings.Contains(out, "\r\n550 5.6.0 Header line 1 holds 8-bit bytes without SMTPUTF8 (RFC 6532)\r\n") {
		t.Errorf("strict, replies:\n%s", out)
	}
}

// TestHeaderStrict: strict mode refuses a message without Date: and
// accepts one with all of RFC 5322 section 3.6's required fields.
func TestHeaderStrict(t *testing.T) {
	out, got := headerSession(t, noDateHeader, "SMTP_HEADER_CHECKS=strict")
	if got != "" || !strings.Contains(out, "\r\n550 5.6.0 Message has no Date: field (RFC 5322 section 3.6)\r\n") {
		t.Errorf("replies:\n%s", out)
	}
	if _, got := headerSession(t, fullHeader, "SMTP_HEADER_CHECKS=strict"); got != fullHeader {
		t.Errorf("spooled %q", got)
	}
	if _, got := headerSession(t, noDateHeader); got != noDateHeader {
		t.Errorf("lenient: spooled %q", got)
	}
	badDate := "Date: tomorrow at noon\r\n" + noDateHeader
	out, got = headerSession(t, badDate, "SMTP_HEADER_CHECKS=strict")
	if got != "" || !strings.Contains(out, "\r\n550 5.6.0 Date: field is not a valid date-time (RFC 5322 section 3.3)\r\n") {
		t.Errorf("bad Date: replies:\n%s", out)
	}
	if _, got := headerSession(t, badDate); got != badDate {
		t.Errorf("bad Date, lenient: spooled %q", got)
	}
}

// TestAddMissingHeaders: with SMTP_ADD_MISSING_HEADERS a local pipe
// session's message gets Date: and Message-ID: at the end of its header
// section when they are missing, and strict mode then lets the missing
// Date: pass; a remote client's message, or the setting off, leaves the
// bytes as they came.
func TestAddMissingHeaders(t *testing.T) {
	on := "SMTP_ADD_MISSING_HEADERS=true"
	_, got := headerSession(t, noDateHeader, on)
	head, body, _ := strings.Cut(got, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	if len(lines) != 4 || lines[0] != "From: Alice <a@example.net>" || lines[1] != "Subject: t" ||
		!strings.HasPrefix(lines[2], "Date: ") || !strings.HasPrefix(lines[3], "Message-ID: <") ||
		!strings.HasSuffix(lines[3], "@mx.test.example>") || body != "body\r\n" {
		t.Errorf("spooled %q", got)
	}
	if d, err := time.Parse(time.RFC1123Z, strings.TrimPrefix(lines[2], "Date: ")); err != nil || time.Since(d) > time.Minute {
		t.Errorf("added Date: %v, %v", d, err)
	}
	// Present fields are not added again; a message with no empty line
	// gets them at its end.
	if _, got := headerSession(t, fullHeader, on); got != fullHeader {
		t.Errorf("complete header changed: %q", got)
	}
	if _, got := headerSession(t, "Subject: no body\r\n", on); !strings.HasPrefix(got, "Subject: no body\r\nDate: ") || strings.Count(got, "\r\n") != 3 {
		t.Errorf("header only: %q", got)
	}
	// Strict mode with the fields to be added.
	if _, got := headerSession(t, noDateHeader, on, "SMTP_HEADER_CHECKS=strict"); !strings.Contains(got, "\r\nDate: ") {
		t.Errorf("strict: %q", got)
	}
	// Off, or a remote client: unchanged.
	if _, got := headerSession(t, noDateHeader); got != noDateHeader {
		t.Errorf("setting off: %q", got)
	}
	if _, got := headerSession(t, noDateHeader, on, "TCPREMOTEIP=192.0.2.7"); got != noDateHeader {
		t.Errorf("remote client: %q", got)
	}
}

// TestAbuseSettingsChecked: a bad value refuses the session with 421 and
// names the variable; --help lists every new setting.
func TestAbuseSettingsChecked(t *testing.T) {
	for _, kv := range []string{"SMTP_HEADER_CHECKS=paranoid", "SMTP_GREET_PAUSE=10m", "SMTP_GREET_PAUSE=-1s",
		"SMTP_MIN_DATA_RATE=-5", "SMTP_MAX_HEADER_SIZE=100", "SMTP_FORBID_IMPROPER_PIPELINING=maybe"} {
		out, errOut := pipeSession(t, newSpool(t), "EHLO c\r\nQUIT\r\n", kv)
		name, _, _ := strings.Cut(kv, "=")
		if codes := codes(out); len(codes) != 1 || codes[0] != "421" || !strings.Contains(errOut, name) {
			t.Errorf("%s: replies %q, stderr %q", kv, out, errOut)
		}
	}
	cmd := exec.Command(binary, "--help")
	var e bytes.Buffer
	cmd.Stderr = &e
	cmd.Run()
	for _, k := range []string{"SMTP_REJECT_EARLY_TALKERS", "SMTP_GREET_PAUSE", "SMTP_FORBID_IMPROPER_PIPELINING",
		"SMTP_MIN_DATA_RATE", "SMTP_HEADER_CHECKS", "SMTP_MAX_HEADER_SIZE", "SMTP_ADD_MISSING_HEADERS"} {
		if !strings.Contains(e.String(), k) {
			t.Errorf("--help lacks %s", k)
		}
	}
}

// TestNoPackageNet: smtp-stdio stays free of package net, which would make
// it dynamically linked with cgo (see internal/syslog); the message checks
// must not bring it in through net/mail or go-message.
func TestNoPackageNet(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "net" || p == "net/mail" || p == "runtime/cgo" {
			t.Errorf("smtp-stdio depends on %s", p)
		}
	}
}

// TestRefusalSurvivesUnreadInput: a client that pipelines 256 KiB after
// EHLO gets its 554 and then end-of-file, not a connection reset that
// would destroy the reply: the server shuts down its side and reads the
// rest before it closes (lingerClose).
func TestRefusalSurvivesUnreadInput(t *testing.T) {
	s := newSockSession(t, newSpool(t), "")
	if got := s.reply(t); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting %q", got)
	}
	junk := strings.Repeat("NOOP pipelined junk to fill the socket buffers\r\n", 256<<10/48)
	go io.WriteString(s.conn, "EHLO c.example\r\n"+junk)
	// Give the server time to refuse and close while most of the junk
	// is still unread, before the test reads anything.
	time.Sleep(500 * time.Millisecond)
	if got := s.reply(t); !strings.HasPrefix(got, "554 5.5.0 ") {
		t.Fatalf("reply %q, want 554 5.5.0", got)
	}
	if _, err := io.ReadAll(s.r); err != nil {
		t.Errorf("after the 554: %v, want a clean end-of-file", err)
	}
}
