package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	queuepkg "github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// runStdin runs smtp-send with stdin as its standard input.
func runStdin(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := command(t, env, args...)
	cmd.Stdin = strings.NewReader(stdin)
	r := testutil.Run(t, cmd, 2*time.Minute)
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr}
}

// names returns the names in dir/sub.
func names(t *testing.T, dir, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// hasPrefix reports whether a name in names starts with p.
func hasPrefix(names []string, p string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// Queue administration through the binary, on messages a run deferred
// (their next attempt minutes away): --show prints the entry, the
// envelope and the content; --delete removes a message and its state
// and logs it, 66 for an id not queued; --deliver sends one message now
// and leaves the others waiting; --expire returns one to its sender
// with a 5.4.7 notice and moves it to failed/, sending nothing; "-"
// reads ids from standard input; bad ids and mixed modes are 64.
func TestQueueAdmin(t *testing.T) {
	var accept atomic.Bool
	srv := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
		if !accept.Load() {
			return smtptest.Reply(451, "4.3.0", "try later")
		}
		return nil
	}}})
	dir := t.TempDir()
	env := sendEnv(dir, srv.Addr)
	m1, m2, m3 := queue(t, dir, "a@x.test"), queue(t, dir, "b@x.test"), queue(t, dir, "c@x.test")
	m4, m5 := queue(t, dir, "d@x.test"), queue(t, dir, "e@x.test")
	if r := runBinary(t, env); r.code != 0 || !strings.Contains(r.stderr, "deferred=5") {
		t.Fatalf("first run exit %d:\n%s", r.code, r.stderr)
	}

	s := runBinary(t, env, "--show", m1)
	for _, want := range []string{m1 + "  deferred  age ", "from <s@example.org>  attempts 1  next ",
		"pending  <a@x.test>  rcpt: 451 4.3.0 try later", "received: ", " (helo c.test) with ESMTP\n\nSubject: test\r\n\r\nbody\r\n"} {
		if !strings.Contains(s.stdout, want) {
			t.Errorf("--show lacks %q: exit %d\n%s%s", want, s.code, s.stdout, s.stderr)
		}
	}
	if s.code != 0 {
		t.Errorf("--show exit %d", s.code)
	}
	if r := runBinary(t, env, "--show", "20990101T000000.0000000000000000"); r.code != 66 || !strings.Contains(r.stderr, "no such message") {
		t.Errorf("--show of an unknown id: exit %d\n%s", r.code, r.stderr)
	}
	// More ids than walkEach: one walk of the whole queue, the same
	// output in the order given.
	many := strings.Repeat(m1+"\n"+m4+"\n", 5) + "20990101T000000.0000000000000000\n"
	if r := runStdin(t, env, many, "--show", "-"); r.code != 66 || strings.Count(r.stdout, m1+"  deferred") != 5 ||
		strings.Count(r.stdout, m4+"  deferred") != 5 || strings.Index(r.stdout, m1) > strings.Index(r.stdout, m4) {
		t.Errorf("--show of 11 ids: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	d := runBinary(t, env, "--delete", m2)
	if d.code != 0 || !strings.Contains(d.stderr, `msg="message deleted by the administrator (smtp-send --delete); its sender is not told" id=`+m2+" from=s@example.org nrcpt=1 pending=1 to=b@x.test") {
		t.Errorf("--delete exit %d:\n%s", d.code, d.stderr)
	}
	if hasPrefix(names(t, dir, spool.QueueDir), m2) || hasPrefix(names(t, dir, queuepkg.StateDir), m2) {
		t.Errorf("%s left: queue/ %v state/ %v", m2, names(t, dir, spool.QueueDir), names(t, dir, queuepkg.StateDir))
	}
	if r := runBinary(t, env, "--delete", m2); r.code != 66 {
		t.Errorf("second --delete: exit %d\n%s", r.code, r.stderr)
	}

	accept.Store(true)
	if r := runBinary(t, env, "--deliver", m1); r.code != 0 || srv.RcptCount()["a@x.test"] != 1 || srv.RcptCount()["c@x.test"] != 0 {
		t.Errorf("--deliver exit %d, counts %v:\n%s", r.code, srv.RcptCount(), r.stderr)
	}
	if hasPrefix(names(t, dir, spool.QueueDir), m1) || !hasPrefix(names(t, dir, spool.QueueDir), m3) {
		t.Errorf("after --deliver: queue/ %v", names(t, dir, spool.QueueDir))
	}
	// An id not queued: logged by the run, 66; the others are done.
	for _, mode := range []string{"--deliver", "--expire"} {
		r := runBinary(t, env, mode, "20990101T000000.0000000000000000")
		if r.code != 66 || !strings.Contains(r.stderr, `msg="no such message in queue/" id=20990101T000000.0000000000000000`) {
			t.Errorf("%s of an unknown id: exit %d\n%s", mode, r.code, r.stderr)
		}
	}
	// A plain run now delivers nothing: the others wait for their time.
	if r := runBinary(t, env); r.code != 0 || srv.RcptCount()["c@x.test"] != 0 {
		t.Errorf("plain run exit %d, counts %v", r.code, srv.RcptCount())
	}

	e := runBinary(t, env, "--expire", m3)
	if e.code != 0 || srv.RcptCount()["c@x.test"] != 0 ||
		!strings.Contains(e.stderr, "rcpt=c@x.test status=failed relay=\"\" stage=local code=0 enhanced=5.4.7") {
		t.Errorf("--expire exit %d, counts %v:\n%s", e.code, srv.RcptCount(), e.stderr)
	}
	if !hasPrefix(names(t, dir, queuepkg.FailedDir), m3) || hasPrefix(names(t, dir, spool.QueueDir), m3) {
		t.Errorf("after --expire: queue/ %v failed/ %v", names(t, dir, spool.QueueDir), names(t, dir, queuepkg.FailedDir))
	}
	var notice string
	for _, n := range names(t, dir, spool.QueueDir) {
		if n == m4 || n == m5 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, spool.QueueDir, n))
		if err != nil {
			t.Fatal(err)
		}
		notice = string(b)
	}
	for _, want := range []string{"Final-Recipient: rfc822; c@x.test", "Status: 5.4.7", "smtp-send --expire"} {
		if !strings.Contains(notice, want) {
			t.Errorf("notice lacks %q:\n%s", want, notice)
		}
	}

	if r := runStdin(t, env, m4+"\n\n"+m5+"\n", "--delete", "-"); r.code != 0 || strings.Count(r.stderr, "message deleted by the administrator") != 2 {
		t.Errorf("--delete - exit %d:\n%s", r.code, r.stderr)
	}
	if q := names(t, dir, spool.QueueDir); hasPrefix(q, m4) || hasPrefix(q, m5) {
		t.Errorf("after --delete -: queue/ %v", q)
	}

	for _, args := range [][]string{{"--delete"}, {"--delete", "../x"}, {"--delete", "a@b"}, {"--deliver", m3, "--all"},
		{"--show", m3, "--delete"}, {"--list", "--expire", m3}, {"--delete", "-"}} {
		if r := runStdin(t, env, "", args...); r.code != 64 {
			t.Errorf("%v: exit %d, want 64\n%s", args, r.code, r.stderr)
		}
	}
}

// While a run holds a message (waiting for the next hop's reply after
// the dot), --delete of it exits 75 and leaves it, and --deliver, which
// needs the spool's run lock, exits 75 too.
func TestQueueAdminWhileRunning(t *testing.T) {
	srv, entered, release := stallingServer(t)
	dir := t.TempDir()
	id := queue(t, dir, "a@x.test")
	env := sendEnv(dir, srv.Addr)
	first := command(t, env)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	<-entered
	if r := runBinary(t, env, "--delete", id); r.code != 75 || !strings.Contains(r.stderr, "message held by a delivery run") {
		t.Errorf("--delete during a run: exit %d\n%s", r.code, r.stderr)
	}
	if r := runBinary(t, env, "--deliver", id); r.code != 75 || !strings.Contains(r.stderr, "another smtp-send run holds the spool; nothing done") {
		t.Errorf("--deliver during a run: exit %d\n%s", r.code, r.stderr)
	}
	release()
	if err := first.Wait(); err != nil {
		t.Errorf("first run: %v", err)
	}
	if !hasPrefix(names(t, dir, spool.QueueDir), id) {
		t.Errorf("message gone: %v", names(t, dir, spool.QueueDir))
	}
}

// --hold keeps every run from the message (--all and --deliver too: 66),
// --list shows it held, the metrics file counts it; --expire may still
// return another held one; --release lets the next run deliver it.
// Holding twice and releasing what is not held are logged and exit 0;
// an id not queued is 66.
func TestQueueHold(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	dir := t.TempDir()
	metrics := filepath.Join(t.TempDir(), "smtp_send.prom")
	env := append(sendEnv(dir, srv.Addr), "SMTP_SEND_METRICS_FILE="+metrics)
	id, other := queue(t, dir, "h@x.test"), queue(t, dir, "o@x.test")
	for _, args := range [][]string{{"--hold", id, other}, {"--hold", id}} {
		if r := runBinary(t, env, args...); r.code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	if r := runBinary(t, env, "--hold", "20261121T000000.0000000000000000"); r.code != 66 {
		t.Errorf("--hold of an unknown id: exit %d", r.code)
	}
	r := runBinary(t, env, "--all")
	if r.code != 0 || len(srv.Transactions()) != 0 || !strings.Contains(r.stderr, "held=2") {
		t.Fatalf("run --all on held messages: exit %d, %d sent\n%s", r.code, len(srv.Transactions()), r.stderr)
	}
	if b, err := os.ReadFile(metrics); err != nil || !strings.Contains(string(b), "\nsmtp_send_queue_held_messages 2\n") {
		t.Errorf("metrics: %v\n%s", err, b)
	}
	if l := runBinary(t, env, "--list"); !strings.Contains(l.stdout, id+"  held  ") || !strings.Contains(l.stdout, "-- 2 messages: 2 held") {
		t.Errorf("--list:\n%s", l.stdout)
	}
	if r := runBinary(t, env, "--deliver", id); r.code != 66 || len(srv.Transactions()) != 0 || !strings.Contains(r.stderr, "release it first") {
		t.Errorf("--deliver of a held message: exit %d, %d sent\n%s", r.code, len(srv.Transactions()), r.stderr)
	}
	if r := runBinary(t, env, "--expire", other); r.code != 0 || !hasPrefix(names(t, dir, queuepkg.FailedDir), other) {
		t.Errorf("--expire of a held message: exit %d, failed/ %v\n%s", r.code, names(t, dir, queuepkg.FailedDir), r.stderr)
	}
	if hasPrefix(names(t, dir, queuepkg.StateDir), other) {
		t.Errorf("state/ keeps the expired message's marker: %v", names(t, dir, queuepkg.StateDir))
	}
	for range 2 {
		if r := runBinary(t, env, "--release", id); r.code != 0 {
			t.Errorf("--release: exit %d\n%s", r.code, r.stderr)
		}
	}
	if r := runBinary(t, env); r.code != 0 || srv.RcptCount()["h@x.test"] != 1 {
		t.Errorf("run after --release: exit %d, counts %v\n%s", r.code, srv.RcptCount(), r.stderr)
	}
}
