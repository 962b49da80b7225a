package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/smtp-stdio/smtp-stdio/internal/sender"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	queuepkg "github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// result is one finished run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// command prepares smtp-send, built once for these tests, with a clean
// SMTP_* environment plus env.
func command(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(testutil.Program(t, "cmd/smtp-send"), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SMTP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// runBinary runs smtp-send to its end, within runWithin's limit of two
// minutes.
func runBinary(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runWithin(t, 2*time.Minute, env, args...)
}

// runWithin runs smtp-send, but kills it and fails the test if it has
// not exited after limit: a run that hangs must not hang the test.
func runWithin(t *testing.T, limit time.Duration, env []string, args ...string) result {
	t.Helper()
	r := testutil.Run(t, command(t, env, args...), limit)
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr}
}

// --help prints every setting with its default on stderr, nothing on
// stdout, and exits 0.
func TestHelp(t *testing.T) {
	r := runBinary(t, nil, "--help")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	var keys bytes.Buffer
	envconfig.Usagef("smtp", &sender.Config{}, &keys, "{{range .}}{{usage_key .}} {{usage_default .}}\n{{end}}")
	for _, line := range strings.Split(strings.TrimSpace(keys.String()), "\n") {
		key, def, _ := strings.Cut(line, " ")
		if !strings.Contains(r.stderr, key) || def != "" && !strings.Contains(r.stderr, " "+def+" ") {
			t.Errorf("--help lacks %s (default %q)", key, def)
		}
	}
}

// Bad usage exits 64; configuration errors exit 78, before any delivery.
func TestExitCodes(t *testing.T) {
	spoolDir := t.TempDir()
	ok := []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_SMARTHOST=127.0.0.1:1", "SMTP_SMARTHOST_TLS=none"}
	garbage := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	badRoutes := filepath.Join(t.TempDir(), "routes")
	os.WriteFile(badRoutes, []byte("* smtp:\nexample.org lmtp:x\n"), 0o600)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
	}{
		{"unknown flag", ok, []string{"--bogus"}, exUsage},
		{"json without list", ok, []string{"--json"}, exUsage},
		{"argument", ok, []string{"extra"}, exUsage},
		{"typo", append(ok, "SMTP_SEND_CONECTIONS=2"), nil, exConfig},
		{"tls mode", append(ok, "SMTP_SMARTHOST_TLS=maybe"), nil, exConfig},
		{"duration", append(ok, "SMTP_SEND_RUN_TIME=soon"), nil, exConfig},
		// Without a smarthost or routes, every recipient goes to its MX hosts
		// (issue 11): no longer a configuration error.
		{"no smarthost: direct MX", ok[:1], nil, exOK},
		{"bad route table", append(ok, "SMTP_SEND_ROUTES="+badRoutes), nil, exConfig},
		{"missing route table", append(ok, "SMTP_SEND_ROUTES=/nonexistent/routes"), nil, exConfig},
		{"bad DNS server", append(ok, "SMTP_SEND_DNS=127.0.0.1"), nil, exConfig},
		{"bad MX port", append(ok, "SMTP_SEND_MX_PORT=0"), nil, exConfig},
		{"no spool", []string{"SMTP_SPOOL_DIR=/nonexistent", "SMTP_SMARTHOST=x"}, nil, exConfig},
		{"two passwords", append(ok, "SMTP_SMARTHOST_USERNAME=u", "SMTP_SMARTHOST_PASSWORD=p",
			"SMTP_SMARTHOST_PASSWORD_FILE=/etc/hostname"), nil, exConfig},
		{"bad CA", append(ok, "SMTP_SMARTHOST_CA_FILE="+garbage), nil, exConfig},
		{"empty queue", ok, nil, exOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := runBinary(t, tc.env, tc.args...); r.code != tc.code {
				t.Errorf("exit %d, want %d\n%s", r.code, tc.code, r.stderr)
			}
		})
	}
}

// TestUnknownSettingWarned: an SMTP_* variable that neither smtp-send nor
// smtp-stdio reads is named in a warning and the run goes on; smtp-stdio's
// own variables in the same environment are not reported.
func TestUnknownSettingWarned(t *testing.T) {
	spoolDir := t.TempDir()
	env := []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_SMARTHOST=127.0.0.1:1", "SMTP_SMARTHOST_TLS=none",
		"SMTP_SPOOLDIR=/elsewhere", "SMTP_LOCAL_DOMAINS=example.org", "SMTP_MAX_RECIPIENTS=5"}
	r := runBinary(t, env)
	if r.code != exOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if n := strings.Count(r.stderr, `msg="unknown setting ignored"`); n != 1 || !strings.Contains(r.stderr, "name=SMTP_SPOOLDIR") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// stallingServer is a smarthost that holds each message it has received
// to its end without a reply, so that the client waits after the dot,
// until release is called; then it answers 451 4.0.0 to those and takes
// the next ones. entered receives a value for each message received.
func stallingServer(t *testing.T) (srv *smtptest.Server, entered <-chan struct{}, release func()) {
	in := make(chan struct{}, 100)
	stall := make(chan struct{})
	var released atomic.Bool
	srv = smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Data: func(*smtptest.Conn, []byte) *protocol.Reply {
		in <- struct{}{}
		if !released.Load() {
			<-stall
			return smtptest.Reply(451, "4.0.0", "too late")
		}
		return nil
	}}})
	release = sync.OnceFunc(func() {
		released.Store(true)
		close(stall)
	})
	t.Cleanup(release) // before the server's cleanup waits for its sessions
	return srv, in, release
}

// queue spools a message for rcpts and returns its id.
func queue(t *testing.T, dir string, rcpts ...string) string {
	t.Helper()
	sp, err := spool.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := spool.NewQueueID(time.Now())
	w, err := sp.Create(&spool.Envelope{QueueID: id, Received: time.Now(), Helo: "c.test", Protocol: "ESMTP",
		From: "s@example.org", To: rcpts})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "Subject: test\r\n\r\nbody\r\n")
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return id
}

func sendEnv(dir, addr string) []string {
	return []string{"SMTP_SPOOL_DIR=" + dir, "SMTP_SMARTHOST=" + addr, "SMTP_SMARTHOST_TLS=none",
		"SMTP_HOSTNAME=client.test", "SMTP_SEND_CONNECTIONS=1"}
}

// A run delivers, defers and logs one line per recipient; --list and
// --list --json then show the deferred one with its reply.
func TestRunAndList(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
		if to == "later@x.test" {
			return smtptest.Reply(451, "4.3.0", "try later")
		}
		return nil
	}}})
	dir := t.TempDir()
	id := queue(t, dir, "now@x.test", "later@x.test")
	r := runBinary(t, sendEnv(dir, srv.Addr))
	if n := srv.RcptCount()["now@x.test"]; r.code != 0 || n != 1 {
		t.Fatalf("exit %d, delivered %d\n%s", r.code, n, r.stderr)
	}
	for _, want := range []string{
		"msg=delivery id=" + id + " rcpt=now@x.test status=sent relay=" + srv.Addr + " stage=dot code=250 enhanced=2.0.0",
		"msg=delivery id=" + id + " rcpt=later@x.test status=deferred relay=" + srv.Addr + " stage=rcpt code=451 enhanced=4.3.0 reply=\"try later\"",
		" next=", "msg=\"run finished\"",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("log lacks %q:\n%s", want, r.stderr)
		}
	}
	l := runBinary(t, sendEnv(dir, srv.Addr), "--list")
	if l.code != 0 || !strings.Contains(l.stdout, id+"  deferred") ||
		!strings.Contains(l.stdout, "pending  <later@x.test>  rcpt: 451 4.3.0 try later") ||
		!strings.Contains(l.stdout, "done     <now@x.test>") {
		t.Errorf("--list exit %d:\n%s%s", l.code, l.stdout, l.stderr)
	}
	j := runBinary(t, sendEnv(dir, srv.Addr), "--list", "--json")
	var e struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
		Rcpts    []struct {
			Addr   string `json:"addr"`
			Status string `json:"status"`
			Code   int    `json:"code"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(j.stdout), &e); err != nil || e.ID != id || e.Attempts != 1 ||
		e.Rcpts[1].Status != "pending" || e.Rcpts[1].Code != 451 {
		t.Errorf("--list --json: %v %+v\n%s", err, e, j.stdout)
	}
}

// SIGKILL while waiting for the final reply after the dot: the message stays
// queued with its recipients pending (the duplicate window), no lock
// survives, and the next run delivers it.
func TestKill9AwaitingFinalReply(t *testing.T) {
	srv, entered, release := stallingServer(t)
	dir := t.TempDir()
	id := queue(t, dir, "a@x.test")
	cmd := command(t, sendEnv(dir, srv.Addr))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	<-entered // the data is in; the client waits for the reply
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("not killed: %v", err)
	}
	release()
	if _, err := os.Stat(filepath.Join(dir, spool.QueueDir, id)); err != nil {
		t.Fatalf("message lost: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, queuepkg.StateDir)); len(ents) != 0 {
		t.Errorf("state/ after the kill: %v", ents)
	}
	r := runBinary(t, sendEnv(dir, srv.Addr))
	if n := srv.RcptCount()["a@x.test"]; r.code != 0 || n != 1 {
		t.Fatalf("second run exit %d, delivered %d\n%s", r.code, n, r.stderr)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir)); len(ents) != 0 {
		t.Errorf("queue/ %v", ents)
	}
}

// A run started while another holds the spool exits 0 at once with a log
// line and sends nothing.
func TestOverlappingRunExitsZero(t *testing.T) {
	srv, entered, release := stallingServer(t)
	dir := t.TempDir()
	queue(t, dir, "a@x.test")
	first := command(t, sendEnv(dir, srv.Addr))
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	<-entered
	r := runBinary(t, sendEnv(dir, srv.Addr), "--all")
	if r.code != 0 || !strings.Contains(r.stderr, "another smtp-send run holds the spool") {
		t.Errorf("second run exit %d:\n%s", r.code, r.stderr)
	}
	release()
	if err := first.Wait(); err != nil {
		t.Errorf("first run: %v", err)
	}
	if len(entered) != 0 {
		t.Errorf("the second run sent data")
	}
}

// scripts/smtp-send.cron is a valid /etc/cron.d line (five times, a user,
// a command) whose command the shell parses, and it runs smtp-send.
func TestCronFile(t *testing.T) {
	b, err := os.ReadFile("../../scripts/smtp-send.cron")
	if err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") || strings.Contains(strings.Fields(line)[0], "=") {
			continue
		}
		jobs = append(jobs, line)
	}
	if len(jobs) != 1 {
		t.Fatalf("jobs %q", jobs)
	}
	f := strings.Fields(jobs[0])
	if len(f) < 7 || f[0] != "*/5" || f[5] != "smtp-stdio" {
		t.Fatalf("job %q", jobs[0])
	}
	cmd := strings.Join(f[6:], " ")
	if out, err := exec.Command("sh", "-n", "-c", cmd).CombinedOutput(); err != nil || !strings.Contains(cmd, "smtp-send") {
		t.Errorf("sh -n: %v %s", err, out)
	}
}
