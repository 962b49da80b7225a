package main

// End-to-end tests of abuse handling (early talkers, improper pipelining,
// slow senders) and message checks. The timing checks apply only to a
// client on a socket, so these tests run the binary as inetd does
// (transcript.Setup.Socket): its standard input and output are the server
// end of a loopback TCP connection the test holds the other end of. That
// lets a test put bytes on the wire before the process even starts. The
// dialogs that need nothing but their bytes are transcripts in testdata/:
// early_talker*.txt, improper_pipelining*.txt, proper_pipelining.txt.

import (
	"bytes"
	"debug/elf"
	"io"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
)

// TestEarlyTalkerDuringPause: with SMTP_GREET_PAUSE, bytes that arrive
// during the pause are caught at once; the pause does not run out first.
func TestEarlyTalkerDuringPause(t *testing.T) {
	s := stdio.Start(t, transcript.Setup{Socket: true, Env: []string{"SMTP_GREET_PAUSE=20s"}})
	start := time.Now()
	time.Sleep(200 * time.Millisecond)
	s.Send("EHLO impatient.example\r\n")
	s.Expect("the reply", "554 5.5.0 …")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("refused after %v: the pause ran out", took)
	}
}

// TestGreetPauseWellBehaved: a client that waits for the greeting gets
// it after SMTP_GREET_PAUSE, and its mail goes through (Go's net/smtp).
func TestGreetPauseWellBehaved(t *testing.T) {
	sd := newSpool(t)
	start := time.Now()
	s := stdio.Start(t, transcript.Setup{Spool: sd, Socket: true, Env: []string{"SMTP_GREET_PAUSE=500ms"}})
	c, err := smtp.NewClient(s.Conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("greeting after %v, before the pause ended", took)
	}
	sendWith(t, c, helloBody)
	if r := s.Wait(); r.Exit != 0 {
		t.Errorf("exit %d", r.Exit)
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
			s := stdio.Start(t, transcript.Setup{Spool: sd, Socket: true, Env: env})
			s.Expect("greeting", "220 mx.test.example ESMTP ready")
			req, err := http.NewRequest(c.method, "http://127.0.0.1:25/", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if err := req.Write(s.Conn); err != nil {
				t.Fatal(err)
			}
			s.Expect("the request line", "221 2.7.0 …non-SMTP command…")
			r := s.Wait()
			if len(r.Rest) != 0 || r.Exit != 1 || !strings.Contains(r.Stderr, `msg="non-SMTP command"`) || !strings.Contains(r.Stderr, `line="`+c.method+" / HTTP/1.1\"") {
				t.Errorf("after the 221: %q, exit %d, log:\n%s", r.Rest, r.Exit, r.Stderr)
			}
			if ms := spooled(t, sd); len(ms) != 0 {
				t.Errorf("%d messages spooled", len(ms))
			}
		})
	}
}

// TestMinDataRate: a client that trickles message text (a byte every 50
// ms, 20 bytes a second) never lets SMTP_DATA_TIMEOUT pass, but falls
// below SMTP_MIN_DATA_RATE: once the first SMTP_DATA_TIMEOUT is over,
// 421 4.4.2 and the end, long before SMTP_SESSION_TIMEOUT, nothing
// spooled. A pipe supports deadlines as a socket does.
func TestMinDataRate(t *testing.T) {
	sd := newSpool(t)
	slow := stalled(t, "Subject: slow\r\n\r\n", "421 4.4.2 mx.test.example Data arriving too slowly, closing connection")
	s := stdio.Start(t, transcript.Setup{Spool: sd,
		Env: []string{"SMTP_DATA_TIMEOUT=1s", "SMTP_MIN_DATA_RATE=1000", "SMTP_SESSION_TIMEOUT=1m"}})
	s.Play(slow, slow.Steps[:1])
	stop := trickle(s)
	s.Play(slow, slow.Steps[1:])
	stop()
	r := s.Finish(slow)
	if r.Took > 10*time.Second {
		t.Errorf("421 after %v", r.Took)
	}
	if !strings.Contains(r.Stderr, `reason="data rate below minimum" min_rate=1000`) {
		t.Errorf("log:\n%s", r.Stderr)
	}

	// A client that sends at once is not affected by the same settings.
	stdio.RunWith(t, script(t, "C: EHLO c\n"+txLines(helloBody)+"C: QUIT\n"+greeting+ehlo("c")+txReplies+queued+closing+"= exit 0\n\n"+
		receivedLocal("c")+lines("M", helloBody)),
		transcript.Setup{Spool: sd, Env: []string{"SMTP_DATA_TIMEOUT=1s", "SMTP_MIN_DATA_RATE=1000"}})
}

// headerDialog is one message with text (CRLF line endings) over a pipe
// whose data gets the reply end; the session goes on after the message: a
// NOOP is answered.
func headerDialog(text, end string) string {
	return "C: EHLO c.example\n" + txLines(text) + "C: NOOP\nC: QUIT\n" +
		greeting + ehlo("c.example") + txReplies + "S: " + end + "\nS: 250 2.0.0 OK\n" + closing + "= exit 0\n"
}

// headerRefused sends text as a message and checks that it gets reply
// after its data and that nothing is spooled.
func headerRefused(t *testing.T, text, reply string, env ...string) {
	t.Helper()
	stdio.Run(t, script(t, headerDialog(text, reply)), env...)
}

// headerAccepted sends text as a message and checks that it is spooled as
// want says, after the Received: header (CRLF line endings, with "…" as
// in transcripts). It returns what was spooled after that header.
func headerAccepted(t *testing.T, text, want string, env ...string) string {
	t.Helper()
	r := stdio.Run(t, script(t, headerDialog(text, "250 2.0.0 OK queued as …")+`
M: Received: from c.example…
M: 	by mx.test.example (smtp-stdio…) with ESMTP id …;
M: 	…
`+lines("M", want)), env...)
	ms := transcript.Spooled(t, r.Spool)
	if len(ms) != 1 {
		t.FailNow() // Run has said why
	}
	_, rest := splitReceived(t, string(ms[0].Content))
	return rest
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
	headerRefused(t, corrupt, "550 5.6.0 Header line 2 has no colon (RFC 5322 section 2.2)")
	headerAccepted(t, corrupt, corrupt, "SMTP_HEADER_CHECKS=off")
	// A header section over SMTP_MAX_HEADER_SIZE.
	long := "From: a@example.net\r\n" + strings.Repeat("X-Filler: 0123456789012345678901234567890123456789\r\n", 40) + "\r\nbody\r\n"
	headerRefused(t, long, "550 5.6.0 Header section longer than 1000 bytes", "SMTP_MAX_HEADER_SIZE=1000")
}

// TestHeaderEightBitLenient: raw 8-bit bytes in the header pass the
// default checks, byte for byte; strict mode refuses them without
// SMTPUTF8.
func TestHeaderEightBitLenient(t *testing.T) {
	msg := "From: Ren\xc3\xa9 <a@example.net>\r\nDate: Sat, 21 Nov 2026 11:18:25 +0000\r\nSubject: caf\xe9 latin-1\r\n\r\nbody\r\n"
	headerAccepted(t, msg, msg)
	headerRefused(t, msg, "550 5.6.0 Header line 1 holds 8-bit bytes without SMTPUTF8 (RFC 6532)", "SMTP_HEADER_CHECKS=strict")
}

// TestHeaderStrict: strict mode refuses a message without Date: and
// accepts one with all of RFC 5322 section 3.6's required fields.
func TestHeaderStrict(t *testing.T) {
	const strict = "SMTP_HEADER_CHECKS=strict"
	headerRefused(t, noDateHeader, "550 5.6.0 Message has no Date: field (RFC 5322 section 3.6)", strict)
	headerAccepted(t, fullHeader, fullHeader, strict)
	headerAccepted(t, noDateHeader, noDateHeader)
	badDate := "Date: tomorrow at noon\r\n" + noDateHeader
	headerRefused(t, badDate, "550 5.6.0 Date: field is not a valid date-time (RFC 5322 section 3.3)", strict)
	headerAccepted(t, badDate, badDate)
}

// TestAddMissingHeaders: with SMTP_ADD_MISSING_HEADERS a local pipe
// session's message gets Date: and Message-ID: at the end of its header
// section when they are missing, and strict mode then lets the missing
// Date: pass; a remote client's message, or the setting off, leaves the
// bytes as they came.
func TestAddMissingHeaders(t *testing.T) {
	on := "SMTP_ADD_MISSING_HEADERS=true"
	added := "From: Alice <a@example.net>\r\nSubject: t\r\nDate: …\r\nMessage-ID: <…@mx.test.example>\r\n\r\nbody\r\n"
	got := headerAccepted(t, noDateHeader, added, on)
	date, _, _ := strings.Cut(strings.TrimPrefix(got, "From: Alice <a@example.net>\r\nSubject: t\r\nDate: "), "\r\n")
	if d, err := time.Parse(time.RFC1123Z, date); err != nil || time.Since(d) > time.Minute {
		t.Errorf("added Date: %v, %v", d, err)
	}
	// Present fields are not added again; a message with no empty line
	// gets them at its end.
	headerAccepted(t, fullHeader, fullHeader, on)
	headerAccepted(t, "Subject: no body\r\n", "Subject: no body\r\nDate: …\r\nMessage-ID: <…@mx.test.example>\r\n", on)
	// Strict mode with the fields to be added.
	headerAccepted(t, noDateHeader, added, on, "SMTP_HEADER_CHECKS=strict")
	// Off, or a remote client: unchanged.
	headerAccepted(t, noDateHeader, noDateHeader)
	headerAccepted(t, noDateHeader, noDateHeader, on, "TCPREMOTEIP=192.0.2.7")
}

// TestAbuseSettingsChecked: a bad value refuses the session with 421 and
// names the variable; --help lists every new setting.
func TestAbuseSettingsChecked(t *testing.T) {
	for _, kv := range []string{"SMTP_HEADER_CHECKS=paranoid", "SMTP_GREET_PAUSE=10m", "SMTP_GREET_PAUSE=-1s",
		"SMTP_MIN_DATA_RATE=-5", "SMTP_MAX_HEADER_SIZE=100", "SMTP_FORBID_IMPROPER_PIPELINING=maybe"} {
		r := stdio.Run(t, script(t, refused), kv)
		if name, _, _ := strings.Cut(kv, "="); !strings.Contains(r.Stderr, name) {
			t.Errorf("%s: stderr %q", kv, r.Stderr)
		}
	}
	cmd := exec.Command(binary(t), "--help")
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

// TestStaticBinary: smtp-stdio, built as README.md says (CGO_ENABLED=0),
// is a static binary: no dynamic loader, whose start alone costs more
// CPU than a short SMTP session (see internal/syslog). crypto/tls (TLS,
// issue 10) imports package net, which with cgo enabled would link the C
// resolver; with CGO_ENABLED=0 it links none. The message checks must
// still not bring in net/mail or go-message.
func TestStaticBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "net/mail" {
			t.Errorf("smtp-stdio depends on %s", p)
		}
	}
	bin := filepath.Join(t.TempDir(), "smtp-stdio")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Skipf("not ELF: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("CGO_ENABLED=0 build has a dynamic loader (PT_INTERP)")
		}
	}
}

// TestRefusalSurvivesUnreadInput: a client that pipelines 256 KiB after
// EHLO gets its 554 and then end-of-file, not a connection reset that
// would destroy the reply: the server shuts down its side and reads the
// rest before it closes (lingerClose).
func TestRefusalSurvivesUnreadInput(t *testing.T) {
	s := stdio.Start(t, transcript.Setup{Socket: true})
	s.Expect("greeting", "220 mx.test.example ESMTP ready")
	junk := strings.Repeat("NOOP pipelined junk to fill the socket buffers\r\n", 256<<10/48)
	s.Send("EHLO c.example\r\n" + junk) // written while the test goes on
	// Give the server time to refuse and close while most of the junk
	// is still unread, before the test reads anything.
	time.Sleep(500 * time.Millisecond)
	s.Expect("the junk", "554 5.5.0 …")
	s.Rest()
	if err := s.Err(); err != nil {
		t.Errorf("after the 554: %v, want a clean end-of-file", err)
	}
}
