package main

// End-to-end tests: they build the real binary and drive it as users do,
// over a pipe with raw bytes, with swaks --pipe, and over TCP through
// ucspi-tcp's tcpserver and systemd-socket-activate with Python's smtplib,
// swaks and Go's net/smtp. Every test checks replies and the spool.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "smtp-stdio-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if binary, err = testutil.Build(dir, "."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newSpool returns a fresh spool root with mode 0700.
func newSpool(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// baseEnv is the environment of every test session: a clean one, so the
// developer's own SMTP_* settings cannot leak in.
func baseEnv(spoolDir string, extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"SMTP_SPOOL_DIR=" + spoolDir,
		"SMTP_HOSTNAME=mx.test.example",
		"SMTP_LOCAL_DOMAINS=example.org",
		"SMTP_LOG=stderr",
	}
	return append(env, extra...)
}

// pipeSession runs the binary with input on a pipe and returns what it
// wrote to stdout and stderr.
func pipeSession(t *testing.T, spoolDir, input string, extraEnv ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = baseEnv(spoolDir, extraEnv...)
	cmd.Stdin = strings.NewReader(input)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("session did not end; stdout so far:\n%s", o.String())
	}
	return o.String(), e.String()
}

// codes returns the reply codes of the final line of each reply.
func codes(out string) []string {
	var cs []string
	for _, l := range strings.Split(out, "\r\n") {
		if len(l) >= 4 && l[3] == ' ' {
			cs = append(cs, l[:3])
		}
	}
	return cs
}

func wantCodes(t *testing.T, out string, want ...string) {
	t.Helper()
	if got := strings.Join(codes(out), " "); got != strings.Join(want, " ") {
		t.Fatalf("reply codes %q, want %q; transcript:\n%s", got, strings.Join(want, " "), out)
	}
}

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
	sort.Strings(names)
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
	s := string(b)
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

const helloBody = "From: a@example.net\r\nSubject: t\r\n\r\nhello\r\n"

func TestTestdataSession(t *testing.T) {
	sd := newSpool(t)
	in, err := os.ReadFile("../../testdata/session.smtp")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := pipeSession(t, sd, string(in))
	wantCodes(t, out, "220", "250", "250", "250", "250", "354", "250", "221")
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages spooled, want 1", len(ms))
	}
	m := ms[0]
	if m.From != "alice@example.net" || strings.Join(m.To, ",") != "bob@example.org,carol@example.org" ||
		m.Body != "8BITMIME" || m.Protocol != "ESMTP" || m.Helo != "client.example.net" || m.Client != "" {
		t.Errorf("envelope %+v", m.Envelope)
	}
	if !strings.Contains(out, "queued as "+m.QueueID) {
		t.Errorf("250 does not name queue id %s:\n%s", m.QueueID, out)
	}
	rcv, rest := content(t, m)
	data := string(in)
	data = data[strings.Index(data, "DATA\r\n")+6 : strings.Index(data, "\r\n.\r\n")+2]
	want := strings.Replace(data, "\r\n..this", "\r\n.this", 1)
	if rest != want {
		t.Errorf("spooled bytes differ:\n got %q\nwant %q", rest, want)
	}
	for _, s := range []string{"from client.example.net", "by mx.test.example", "with ESMTP", "id " + m.QueueID} {
		if !strings.Contains(rcv, s) {
			t.Errorf("Received: header lacks %q: %q", s, rcv)
		}
	}
	if strings.Contains(rcv, "bob@") || strings.Contains(rcv, "for <") {
		t.Errorf("Received: header leaks recipients: %q", rcv)
	}
	fi, _ := os.Stat(filepath.Join(sd, spool.QueueDir, m.QueueID))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("spool file mode %v, want 0600", fi.Mode().Perm())
	}
	noTempFiles(t, sd)
}

func TestPipeliningAndTwoMessages(t *testing.T) {
	sd := newSpool(t)
	tx := "MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n" + helloBody + ".\r\n"
	out, _ := pipeSession(t, sd, "EHLO c.example\r\n"+tx+tx+"QUIT\r\n")
	wantCodes(t, out, "220", "250", "250", "250", "250", "354", "250", "250", "250", "250", "354", "250", "221")
	ms := spooled(t, sd)
	if len(ms) != 2 || ms[0].QueueID == ms[1].QueueID {
		t.Fatalf("want two distinct spool files, got %d", len(ms))
	}
	for _, m := range ms {
		if _, rest := content(t, m); rest != helloBody {
			t.Errorf("body %q", rest)
		}
	}
}

func TestEHLOAdvertisesExtensions(t *testing.T) {
	out, _ := pipeSession(t, newSpool(t), "EHLO c.example\r\nQUIT\r\n", "SMTP_MAX_MESSAGE_SIZE=12345")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SIZE 12345", "ENHANCEDSTATUSCODES", "SMTPUTF8"} {
		if !regexp.MustCompile(`(?m)^250[- ]` + ext + `\r$`).MatchString(out) {
			t.Errorf("EHLO reply lacks %s:\n%s", ext, out)
		}
	}
	if !strings.HasPrefix(out, "220 mx.test.example ") {
		t.Errorf("greeting %q", out)
	}
}

func TestSequenceErrors(t *testing.T) {
	out, _ := pipeSession(t, newSpool(t),
		"MAIL FROM:<a@example.net>\r\nHELO c.example\r\nRCPT TO:<x@example.org>\r\nDATA\r\n"+
			"MAIL FROM:<a@example.net>\r\nMAIL FROM:<a@example.net>\r\nDATA\r\nRSET\r\nRCPT TO:<x@example.org>\r\nQUIT\r\n")
	wantCodes(t, out, "220", "503", "250", "503", "503", "250", "503", "503", "250", "503", "221")
	if !strings.Contains(out, "503 5.5.1 ") {
		t.Errorf("503 without 5.5.1:\n%s", out)
	}
}

func TestSmugglingRejected(t *testing.T) {
	smuggled := "MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n"
	for _, v := range []string{"\n.\n", "\r.\r", "\r\n.\r", "\n.\r\n", "\r.\r\n", "\r\n.\n"} {
		t.Run(fmt.Sprintf("%q", v), func(t *testing.T) {
			sd := newSpool(t)
			in := "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n" +
				"Subject: s\r\n\r\nbody" + v + smuggled + ".\r\nQUIT\r\n"
			out, _ := pipeSession(t, sd, in)
			wantCodes(t, out, "220", "250", "250", "250", "354", "550", "221")
			if !strings.Contains(out, "550 5.5.2 ") {
				t.Errorf("want 550 5.5.2:\n%s", out)
			}
			if ms := spooled(t, sd); len(ms) != 0 {
				t.Errorf("%d messages spooled", len(ms))
			}
			noTempFiles(t, sd)
		})
	}
}

func TestSmugglingNormalized(t *testing.T) {
	sd := newSpool(t)
	smuggled := "MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n"
	in := "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n" +
		"Subject: s\r\n\r\nbody\n.\n" + smuggled + ".\r\nQUIT\r\n"
	out, _ := pipeSession(t, sd, in, "SMTP_BARE_LINE_ENDINGS=normalize")
	wantCodes(t, out, "220", "250", "250", "250", "354", "250", "221")
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages, want 1", len(ms))
	}
	_, rest := content(t, ms[0])
	if strings.ContainsAny(strings.ReplaceAll(rest, "\r\n", ""), "\r\n") {
		t.Errorf("bare CR or LF reached the spool: %q", rest)
	}
	if !strings.Contains(rest, "MAIL FROM:<evil@example.net>\r\n") || strings.Join(ms[0].To, ",") != "x@example.org" {
		t.Errorf("smuggled transaction not kept as content: %q", rest)
	}
}

func TestSizeLimit(t *testing.T) {
	sd := newSpool(t)
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 100)
	out, _ := pipeSession(t, sd, "EHLO c\r\nMAIL FROM:<a@example.net> SIZE=999999\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n"+
		big+".\r\nNOOP\r\nQUIT\r\n", "SMTP_MAX_MESSAGE_SIZE=4096")
	wantCodes(t, out, "220", "250", "552", "250", "250", "354", "552", "250", "221")
	if ms := spooled(t, sd); len(ms) != 0 {
		t.Errorf("over-size message spooled")
	}
	noTempFiles(t, sd)
}

func TestRelayControl(t *testing.T) {
	sd := newSpool(t)
	// A remote client named by tcpserver's variables, outside the relay
	// networks: local domain yes, others no.
	in := "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nRCPT TO:<y@elsewhere.example>\r\nQUIT\r\n"
	out, _ := pipeSession(t, sd, in, "TCPREMOTEIP=198.51.100.7", "TCPREMOTEPORT=4000")
	wantCodes(t, out, "220", "250", "250", "250", "550", "221")
	if !strings.Contains(out, "550 5.7.1 ") {
		t.Errorf("want 550 5.7.1:\n%s", out)
	}
	// The same client inside SMTP_RELAY_CLIENTS may relay.
	out, _ = pipeSession(t, sd, in, "TCPREMOTEIP=198.51.100.7", "SMTP_RELAY_CLIENTS=198.51.100.0/24")
	wantCodes(t, out, "220", "250", "250", "250", "250", "221")
	// A local pipe session may relay.
	out, _ = pipeSession(t, sd, in)
	wantCodes(t, out, "220", "250", "250", "250", "250", "221")
}

func TestReceivedHeaderClientAddress(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"TCPREMOTEIP=192.0.2.10", "([192.0.2.10])"},
		{"TCPREMOTEIP=2001:db8::25", "([IPv6:2001:db8::25])"},
		{"REMOTE_ADDR=192.0.2.11", "([192.0.2.11])"},
		{"REMOTE_HOST=192.0.2.12", "([192.0.2.12])"},
	} {
		sd := newSpool(t)
		out, _ := pipeSession(t, sd, "HELO evil)(\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n"+helloBody+".\r\nQUIT\r\n", c.env)
		wantCodes(t, out, "220", "250", "250", "250", "354", "250", "221")
		ms := spooled(t, sd)
		rcv, _ := content(t, ms[0])
		if !strings.Contains(rcv, c.want) || !strings.Contains(rcv, "with SMTP") {
			t.Errorf("%s: Received: %q lacks %s", c.env, rcv, c.want)
		}
		if strings.Contains(rcv, "evil)(") {
			t.Errorf("HELO not sanitised: %q", rcv)
		}
	}
}

func TestHelpGoesToStderr(t *testing.T) {
	cmd := exec.Command(binary, "--help")
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

func TestStdoutCarriesOnlyReplies(t *testing.T) {
	out, errOut := pipeSession(t, newSpool(t), "EHLO c\r\nBOGUS\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n"+helloBody+".\r\nQUIT\r\n",
		"SMTP_LOG_LEVEL=debug")
	for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if !regexp.MustCompile(`^[2-5][0-9][0-9][ -]`).MatchString(l) {
			t.Errorf("stdout line is not a reply: %q", l)
		}
	}
	if !strings.Contains(errOut, "sid=") || !strings.Contains(errOut, "queue_id=") {
		t.Errorf("log lacks session or queue id:\n%s", errOut)
	}
}

// A spool that fails during the session (tmp/ replaced by a file once the
// session has started: at the start, the spool check would refuse it)
// gives 451 at DATA, and the session goes on.
func TestSpoolFailureKeepsSessionUsable(t *testing.T) {
	sd := newSpool(t)
	cmd := exec.Command(binary)
	cmd.Env = baseEnv(sd)
	cmd.WaitDelay = 5 * time.Second
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	testutil.Start(t, cmd)
	watchdog := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	io.WriteString(stdin, "EHLO c\r\n")
	var out []byte
	buf := make([]byte, 4096)
	for !regexp.MustCompile(`(^|\n)250 `).Match(out) {
		n, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (%q)", err, out)
		}
		out = append(out, buf[:n]...)
	}
	// Make tmp/ unusable: a file where the directory should be.
	if err := os.Remove(filepath.Join(sd, spool.TmpDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sd, spool.TmpDir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nNOOP\r\nQUIT\r\n")
	stdin.Close()
	rest, _ := io.ReadAll(stdout)
	cmd.Wait()
	wantCodes(t, string(out)+string(rest), "220", "250", "250", "250", "451", "250", "221")
	if ms := spooled(t, sd); len(ms) != 0 {
		t.Errorf("message visible after spool failure")
	}
}

func TestUnsafeSpoolRefused(t *testing.T) {
	sd := newSpool(t)
	os.Chmod(sd, 0o777)
	out, errOut := pipeSession(t, sd, "EHLO c\r\nQUIT\r\n")
	wantCodes(t, out, "421")
	if !strings.Contains(errOut, "world-writable") {
		t.Errorf("stderr does not explain: %q", errOut)
	}
}

func TestKilledMidDataLeavesNothing(t *testing.T) {
	sd := newSpool(t)
	cmd := exec.Command(binary)
	cmd.Env = baseEnv(sd)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	io.WriteString(stdin, "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nSubject: half\r\n\r\n")
	buf := make([]byte, 4096)
	var got string
	for !strings.Contains(got, "354 ") {
		n, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (%q)", err, got)
		}
		got += string(buf[:n])
	}
	io.WriteString(stdin, strings.Repeat("partial line\r\n", 1000))
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if ms := spooled(t, sd); len(ms) != 0 {
		t.Errorf("interrupted message visible")
	}
	noTempFiles(t, sd)
}

func TestSwaksPipe(t *testing.T) {
	swaks := testutil.Need(t, "swaks")
	sd := newSpool(t)
	// swaks runs the server itself through --pipe; the environment is
	// the test's, so pass ours explicitly through env(1).
	pipe := "env -i " + strings.Join(baseEnv(sd), " ") + " " + binary
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
