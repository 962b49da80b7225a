package main

// End-to-end tests: they build the real binary (once, testutil.Program)
// and drive it as users do: dialog transcripts (testdata/*.txt, and ones
// the tests build) over a pipe or a loopback socket through package
// transcript, swaks --pipe, and over TCP through ucspi-tcp's tcpserver and
// systemd-socket-activate with Python's smtplib, swaks and Go's net/smtp.
// Every test checks replies and the spool.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// binary returns the smtp-stdio built for this run of the tests.
func binary(t testing.TB) string { return testutil.Program(t, "cmd/smtp-stdio") }

// testEnv is the environment of every test session: a clean one, so the
// developer's own SMTP_* settings cannot leak in.
var testEnv = []string{
	"PATH=" + os.Getenv("PATH"),
	"SMTP_HOSTNAME=mx.test.example",
	"SMTP_LOCAL_DOMAINS=example.org",
	"SMTP_LOG=stderr",
}

// stdio runs sessions of the binary in testEnv: transcripts, and sessions
// a test drives step by step.
var stdio = transcript.Binary{Env: testEnv}

// newSpool returns a fresh spool root with mode 0700.
var newSpool = transcript.NewSpool

// baseEnv is testEnv with spoolDir as the spool, for a launcher that
// starts the binary itself.
func baseEnv(spoolDir string, extra ...string) []string {
	return slices.Concat(testEnv, []string{"SMTP_SPOOL_DIR=" + spoolDir}, extra)
}

// script parses a transcript that a test builds, named by the test.
func script(t *testing.T, text string) *transcript.Script {
	t.Helper()
	return transcript.MustParse(t, t.Name(), text)
}

// ehlo is the reply to EHLO name, as transcript lines.
func ehlo(name string) string {
	return "S: 250-mx.test.example greets " + name + `
S: 250-PIPELINING
S: 250-8BITMIME
S: 250-SIZE 26214400
S: 250-ENHANCEDSTATUSCODES
S: 250-DSN
S: 250-CHUNKING
S: 250 SMTPUTF8
`
}

// refused is a session that a bad setting or an unsafe spool refuses:
// one 421 4.3.0 before anything is read, exit 78 (EX_CONFIG), nothing
// spooled.
const refused = `C: EHLO c.example
C: MAIL FROM:<a@example.net>
C: RCPT TO:<x@example.org>
C: DATA
C: Subject: t
C:
C: hello
C: .
C: QUIT
S: 421 4.3.0 Service not available, closing transmission channel
= exit 78
`

// spooled opens every message file in the spool's queue, oldest first.
func spooled(t *testing.T, spoolDir string) []*spool.Message {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(spoolDir, spool.QueueDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	var ms []*spool.Message
	for _, n := range names {
		m, err := spool.Open(filepath.Join(spoolDir, spool.QueueDir, n))
		if err != nil {
			t.Fatalf("spool file %s: %v", n, err)
		}
		t.Cleanup(func() { m.Close() })
		ms = append(ms, m)
	}
	return ms
}

// content returns a message's bytes after the Received: header the
// receiver prepends, and that header.
func content(t *testing.T, m *spool.Message) (received, rest string) {
	t.Helper()
	b, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	return splitReceived(t, string(b))
}

// splitReceived splits a spooled message after its Received: header.
func splitReceived(t *testing.T, s string) (received, rest string) {
	t.Helper()
	if !strings.HasPrefix(s, "Received: ") {
		t.Fatalf("message does not start with a Received: header: %q", s[:min(len(s), 80)])
	}
	// The trace header ends at the first line that is not a continuation.
	i := 0
	for {
		j := strings.Index(s[i:], "\r\n")
		if j < 0 {
			t.Fatalf("unterminated header in %q", s)
		}
		i += j + 2
		if i >= len(s) || (s[i] != ' ' && s[i] != '\t') {
			break
		}
	}
	return s[:i], s[i:]
}

func noTempFiles(t *testing.T, spoolDir string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(spoolDir, spool.TmpDir))
	if len(ents) != 0 {
		t.Errorf("temp files left behind: %v", ents)
	}
}

// helloBody is a small message, as the client means it.
const helloBody = "From: a@example.net\r\nSubject: t\r\n\r\nhello\r\n"

// lines returns text (CRLF line endings) as transcript lines of kind: "C"
// for a client's message text (dot-stuffed), "M" for a spooled message.
func lines(kind, text string) string {
	var b strings.Builder
	for l := range strings.Lines(text) {
		l = strings.TrimSuffix(l, "\r\n")
		if kind == "C" && strings.HasPrefix(l, ".") {
			l = "." + l
		}
		b.WriteString(kind + ": " + l + "\n")
	}
	return b.String()
}

// Pieces of the transcripts that tests build: the greeting and the reply
// to QUIT; a message from a@example.net to x@example.org up to its text,
// the replies to that, and the reply that accepts it.
const (
	greeting  = "S: 220 mx.test.example ESMTP ready\n"
	closing   = "S: 221 2.0.0 mx.test.example closing connection\n"
	txStart   = "C: MAIL FROM:<a@example.net>\nC: RCPT TO:<x@example.org>\nC: DATA\n"
	txReplies = "S: 250 2.1.0 Sender OK\nS: 250 2.1.5 Recipient OK\nS: 354 Start mail input; end with <CRLF>.<CRLF>\n"
	queued    = "S: 250 2.0.0 OK queued as …\n"
)

// txLines is the message with body, to its final dot, as a client sends
// it (transaction, as transcript lines).
func txLines(body string) string { return txStart + lines("C", body) + "C: .\n" }

// receivedLocal is the Received: header of a pipe session (a local client)
// that said EHLO helo, as M: lines.
func receivedLocal(helo string) string {
	return "M: Received: from " + helo + "\nM: \tby mx.test.example (smtp-stdio, local) with ESMTP id …;\nM: \t…\n"
}

// TestSmugglingRejected: a bare CR or LF around a dot in the message text
// (the ways SMTP smuggling hides a second message) gets 550 5.5.2 after
// the data; nothing is spooled and the session goes on.
func TestSmugglingRejected(t *testing.T) {
	for _, v := range []string{"\n.\n", "\r.\r", "\r\n.\r", "\n.\r\n", "\r.\r\n", "\r\n.\n"} {
		t.Run(fmt.Sprintf("%q", v), func(t *testing.T) {
			stdio.Run(t, script(t, "C: EHLO c.example\n"+txStart+`C: Subject: s
C:
R: `+strconv.Quote("body"+v)+`
C: MAIL FROM:<evil@example.net>
C: RCPT TO:<victim@example.org>
C: DATA
C: smuggled
C: .
C: QUIT
`+greeting+ehlo("c.example")+txReplies+`S: 550 5.5.2 Message contains bare CR or LF, rejected (RFC 5321 section 2.3.8)
`+closing+"= exit 0\n"))
		})
	}
}

// TestReceivedHeaderClientAddress: the Received: header names the client
// that the launcher's variables give, an IPv6 one as an address literal,
// and a sanitised HELO name.
func TestReceivedHeaderClientAddress(t *testing.T) {
	for _, c := range []struct{ env, literal string }{
		{"TCPREMOTEIP=192.0.2.10", "[192.0.2.10]"},
		{"TCPREMOTEIP=2001:db8::25", "[IPv6:2001:db8::25]"},
		{"REMOTE_ADDR=192.0.2.11", "[192.0.2.11]"},
		{"REMOTE_HOST=192.0.2.12", "[192.0.2.12]"},
	} {
		stdio.Run(t, script(t, "C: HELO evil)(\n"+txLines(helloBody)+"C: QUIT\n"+
			greeting+"S: 250 mx.test.example greets evil\n"+txReplies+queued+closing+`= exit 0

M: Received: from evil (`+c.literal+`)
M: 	by mx.test.example (smtp-stdio) with SMTP id …;
M: 	…
`+lines("M", helloBody)), c.env)
	}
}

func TestHelpGoesToStderr(t *testing.T) {
	cmd := exec.Command(binary(t), "--help")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if o.Len() != 0 {
		t.Errorf("--help wrote to stdout: %q", o.String())
	}
	for _, k := range []string{"SMTP_SPOOL_DIR", "SMTP_HOSTNAME", "SMTP_LOCAL_DOMAINS", "SMTP_RELAY_CLIENTS",
		"SMTP_MAX_MESSAGE_SIZE", "SMTP_MAX_RECIPIENTS", "SMTP_COMMAND_TIMEOUT", "SMTP_BARE_LINE_ENDINGS", "127.0.0.0/8,::1/128"} {
		if !strings.Contains(e.String(), k) {
			t.Errorf("--help lacks %s", k)
		}
	}
}

// A spool that fails during the session (tmp/ replaced by a file once the
// session has started: at the start, the spool check would refuse it)
// gives 451 at the end of the data (the temporary file is made at commit
// for a message this short), and the session goes on.
func TestSpoolFailureKeepsSessionUsable(t *testing.T) {
	sd := newSpool(t)
	s := stdio.Start(t, transcript.Setup{Spool: sd})
	started := script(t, "C: EHLO c\n"+greeting+ehlo("c"))
	s.Play(started, started.Steps)
	// Make tmp/ unusable: a file where the directory should be.
	if err := os.Remove(filepath.Join(sd, spool.TmpDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sd, spool.TmpDir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rest := script(t, txLines("Subject: lost\r\n\r\nbody\r\n")+`C: NOOP
C: QUIT
`+txReplies+`S: 451 4.3.0 …
S: 250 2.0.0 OK
`+closing+"= exit 0\n")
	s.Play(rest, rest.Steps)
	s.Finish(rest)
}

func TestUnsafeSpoolRefused(t *testing.T) {
	sd := newSpool(t)
	os.Chmod(sd, 0o777)
	r := stdio.RunWith(t, script(t, refused), transcript.Setup{Spool: sd})
	if !strings.Contains(r.Stderr, "world-writable") {
		t.Errorf("stderr does not explain: %q", r.Stderr)
	}
}

func TestKilledMidDataLeavesNothing(t *testing.T) {
	sd := newSpool(t)
	s := stdio.Start(t, transcript.Setup{Spool: sd})
	s.Send("EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nSubject: half\r\n\r\n")
	for !strings.HasPrefix(s.Reply(), "354 ") {
	}
	s.Send(strings.Repeat("partial line\r\n", 20000)) // 280 KB: past the writer's buffer
	// The signal must find the temporary file made (and its handler
	// installed, spool.CreateSpill), or the test proves nothing.
	tmp := filepath.Join(sd, spool.TmpDir)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if ents, _ := os.ReadDir(tmp); len(ents) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no temporary file after 280 KB of the message")
		}
	}
	s.Cmd.Process.Signal(os.Interrupt)
	s.Wait() // standard input still open: only the signal ends the session
	if ms := spooled(t, sd); len(ms) != 0 {
		t.Errorf("interrupted message visible")
	}
	noTempFiles(t, sd)
}

// A signal while a short message is read finds no temporary file to
// remove: none is made before the commit. The session has no handler
// then, so a signal that the test (and so the binary) inherited ignored,
// as nohup ignores SIGHUP and a shell's background job SIGINT, stays
// ignored (the Go runtime's rule): those are not sent.
func TestKilledMidShortDataLeavesNothing(t *testing.T) {
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP} {
		if signal.Ignored(sig) {
			t.Logf("%v: ignored in this environment, not sent", sig)
			continue
		}
		sd := newSpool(t)
		s := stdio.Start(t, transcript.Setup{Spool: sd})
		s.Send("EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nSubject: half\r\n\r\n")
		for !strings.HasPrefix(s.Reply(), "354 ") {
		}
		s.Send(strings.Repeat("partial line\r\n", 1000))
		if ents, _ := os.ReadDir(filepath.Join(sd, spool.TmpDir)); len(ents) != 0 {
			t.Fatalf("%d temporary files for 14 KB of a message, want none", len(ents))
		}
		s.Cmd.Process.Signal(sig)
		s.Wait()
		if ms := spooled(t, sd); len(ms) != 0 {
			t.Errorf("%v: interrupted message visible", sig)
		}
		noTempFiles(t, sd)
	}
}

func TestSwaksPipe(t *testing.T) {
	swaks := testutil.Need(t, "swaks")
	sd := newSpool(t)
	// swaks runs the server itself through --pipe; the environment is
	// the test's, so pass ours explicitly through env(1).
	pipe := "env -i " + strings.Join(baseEnv(sd), " ") + " " + binary(t)
	out, err := exec.Command(swaks, "--pipe", pipe, "--from", "sender@example.net", "--to", "rcpt@example.org",
		"--helo", "swaks.example", "--header", "Subject: via swaks", "--body", "swaks body line\n.leading dot").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages, want 1; swaks said:\n%s", len(ms), out)
	}
	m := ms[0]
	_, rest := content(t, m)
	if m.From != "sender@example.net" || strings.Join(m.To, ",") != "rcpt@example.org" || m.Helo != "swaks.example" {
		t.Errorf("envelope %+v", m.Envelope)
	}
	if !strings.Contains(rest, "Subject: via swaks\r\n") || !strings.Contains(rest, "\r\nswaks body line\r\n.leading dot\r\n") {
		t.Errorf("body %q", rest)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something accepts connections on addr.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listening on %s", addr)
}
