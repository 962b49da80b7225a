package main

// Fault injection against the built binaries (issue 5). Each test breaks
// something for real — SIGKILL at a chosen point of a session, a full
// disk, a spool the process may not write to, a client that misbehaves —
// and checks the one promise: a message that got 250 is in queue/ and
// complete, nothing else is visible there, smtp-send's documented cleanup
// leaves tmp/ empty, and the session either goes on in step or ends by
// itself. docs/reliability.md lists each fault and what happened.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/transcript"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// newCmd prepares the binary for one session with a clean environment,
// for a test that must kill it.
func newCmd(t *testing.T, spoolDir string, env ...string) *exec.Cmd {
	cmd := exec.Command(binary(t))
	cmd.Env = baseEnv(spoolDir, env...)
	return cmd
}

// transaction is one message for x@example.org, dot-stuffed, as a client
// sends it after EHLO.
func transaction(body string) string {
	return "MAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n" +
		strings.ReplaceAll(body, "\r\n.", "\r\n..") + ".\r\n"
}

// msgBody is a message of about size bytes whose Subject is tag, with a
// line that needs dot-stuffing.
func msgBody(tag string, size int) string {
	var b strings.Builder
	b.WriteString("Subject: " + tag + "\r\n\r\n.a line that starts with a dot\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%s line %06d: the quick brown fox jumps over the lazy dog\r\n", tag, i)
	}
	return b.String()
}

func dirEntries(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ents
}

// waitFor polls cond until it holds; after 10 seconds the test fails.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// live is the binary serving one session that the test drives step by
// step: stdin is a pipe the test writes to, stdout a one-page pipe the
// test reads and, to hold a reply back, fills.
type live struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *os.File // read end of stdout
	outW   *os.File // the test's copy of its write end
	unread []byte
}

func startLive(t *testing.T, spoolDir string) *live {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// One page (F_SETPIPE_SZ, Linux): holdReplies fills it with 4 KiB.
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Logf("F_SETPIPE_SZ: %v; the pipe keeps its size", err)
	}
	cmd := newCmd(t, spoolDir)
	cmd.Stdout = w
	stderr := &testutil.LockedBuffer{}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Registered before testutil.Start's, so that it runs after the
	// process is gone.
	t.Cleanup(func() {
		in.Close()
		r.Close()
		w.Close()
		if t.Failed() {
			t.Logf("smtp-stdio stderr:\n%s", stderr)
		}
	})
	testutil.Start(t, cmd)
	return &live{t: t, cmd: cmd, in: in, out: r, outW: w}
}

func (l *live) send(s string) {
	l.t.Helper()
	if _, err := io.WriteString(l.in, s); err != nil {
		l.t.Fatalf("writing to the session: %v", err)
	}
}

// expect reads the next reply and fails unless its code is code; it
// returns the reply's last line.
func (l *live) expect(code string) string {
	l.t.Helper()
	l.out.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		for {
			i := bytes.Index(l.unread, []byte("\r\n"))
			if i < 0 {
				break
			}
			line := string(l.unread[:i])
			l.unread = l.unread[i+2:]
			if len(line) >= 4 && line[3] == ' ' {
				if line[:3] != code {
					l.t.Fatalf("reply %q, want %s", line, code)
				}
				return line
			}
		}
		p := make([]byte, 4096)
		n, err := l.out.Read(p)
		l.unread = append(l.unread, p[:n]...)
		if err != nil {
			l.t.Fatalf("waiting for %s: %v (unread %q)", code, err, l.unread)
		}
	}
}

// transaction sends one message and returns the queue id its 250 names.
func (l *live) transaction(body string) string {
	l.t.Helper()
	l.send(transaction(body))
	l.expect("250")
	l.expect("250")
	l.expect("354")
	_, id, _ := strings.Cut(l.expect("250"), " queued as ")
	return id
}

// holdReplies fills the stdout pipe (whose replies were all read), so
// that the binary's next reply blocks in write(2) before any byte of it
// goes out.
func (l *live) holdReplies() {
	l.t.Helper()
	fd := int(l.outW.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		l.t.Fatal(err)
	}
	// Whole pages first, then single bytes for room left in the last one.
	for _, size := range []int{4096, 1} {
		chunk := bytes.Repeat([]byte{'#'}, size)
		for {
			_, err := unix.Write(fd, chunk)
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				l.t.Fatal(err)
			}
		}
	}
}

// kill sends SIGKILL, checks that it was the signal that ended the
// process (so it was still running at the kill point), and returns what
// the process wrote that was not read yet.
func (l *live) kill() string {
	l.t.Helper()
	l.cmd.Process.Signal(syscall.SIGKILL)
	l.cmd.Wait()
	if ws := l.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		l.t.Fatalf("the process had ended before the kill: %v", l.cmd.ProcessState)
	}
	l.outW.Close() // the process is gone: after its output comes EOF
	l.out.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(l.out)
	if err != nil {
		l.t.Fatal(err)
	}
	return string(l.unread) + string(rest)
}

// TestKillAtEachPoint kills a session with SIGKILL at each point of its
// second message, after a first one was acknowledged. Every message that
// got a 250 is in queue/ and complete; nothing partial is visible there;
// the message committed but not yet acknowledged is complete (the client
// will send it again: the duplicate RFC 5321 section 6.1 allows); and
// smtp-send's cleanup removes the temporary file a kill leaves behind.
func TestKillAtEachPoint(t *testing.T) {
	bodyA := msgBody("A", 10<<10)
	// Larger than the spool writer's 64 KiB buffer, so that half of it
	// reaches the temporary file.
	bodyB := msgBody("B", 300<<10)
	for _, point := range []string{"before DATA", "after 354", "mid-DATA", "committed, 250 held back", "after 250"} {
		t.Run(point, func(t *testing.T) {
			sd := newSpool(t)
			l := startLive(t, sd)
			l.expect("220")
			l.send("EHLO c.example\r\n")
			l.expect("250")
			idA := l.transaction(bodyA)
			l.send("MAIL FROM:<b@example.net>\r\nRCPT TO:<y@example.org>\r\n")
			l.expect("250")
			l.expect("250")
			stuffedB := strings.ReplaceAll(bodyB, "\r\n.", "\r\n..")
			wantB, wantTmp := false, 0
			switch point {
			case "after 354":
				l.send("DATA\r\n")
				l.expect("354")
				// No temporary file yet: it is made once the message
				// outgrows the spool writer's 64 KiB buffer, or at commit.
			case "mid-DATA":
				l.send("DATA\r\n")
				l.expect("354")
				l.send(stuffedB[:len(stuffedB)/2])
				waitFor(t, "part of the message in tmp/", func() bool {
					ents := dirEntries(t, filepath.Join(sd, spool.TmpDir))
					if len(ents) != 1 {
						return false
					}
					fi, err := ents[0].Info()
					return err == nil && fi.Size() >= 64<<10
				})
				wantTmp = 1
			case "committed, 250 held back":
				l.send("DATA\r\n")
				l.expect("354")
				l.holdReplies()
				l.send(stuffedB + ".\r\n")
				waitFor(t, "the message in queue/", func() bool { return len(dirEntries(t, filepath.Join(sd, spool.QueueDir))) == 2 })
				wantB = true
			case "after 250":
				l.send("DATA\r\n")
				l.expect("354")
				l.send(stuffedB + ".\r\n")
				l.expect("250")
				wantB = true
			}
			rest := l.kill()
			if strings.Trim(rest, "#") != "" {
				t.Errorf("unexpected output before the kill: %q", strings.Trim(rest, "#"))
			}

			ms := spooled(t, sd)
			if n := 1 + btoi(wantB); len(ms) != n {
				t.Fatalf("%d messages in queue/, want %d", len(ms), n)
			}
			for _, m := range ms {
				want := bodyA
				if m.QueueID != idA {
					want = bodyB
				}
				if _, got := content(t, m); got != want {
					t.Errorf("%s: content differs from what was sent (%d bytes, want %d)", m.QueueID, len(got), len(want))
				}
			}
			if n := len(dirEntries(t, filepath.Join(sd, spool.TmpDir))); n != wantTmp {
				t.Errorf("%d files in tmp/ after the kill, want %d", n, wantTmp)
			}
			sendLog := sweep(t, sd)
			if n := strings.Count(sendLog, `msg="removed stale temporary file"`); n != wantTmp {
				t.Errorf("smtp-send removed %d temporary files, want %d:\n%s", n, wantTmp, sendLog)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestKillAnywhere kills sessions of several messages at random instants
// (FAULT_KILLS sessions, default 20; scripts/test --long runs 1000) into
// one spool, then checks the same promise over all of them.
func TestKillAnywhere(t *testing.T) {
	kills := 20
	if s := os.Getenv("FAULT_KILLS"); s != "" {
		var err error
		if kills, err = strconv.Atoi(s); err != nil {
			t.Fatalf("FAULT_KILLS=%q", s)
		}
	}
	sd := newSpool(t)
	var bodies []string
	session := "EHLO c.example\r\n"
	for i, size := range []int{1 << 10, 200 << 10, 3 << 10, 90 << 10, 20 << 10, 300 << 10} {
		bodies = append(bodies, msgBody("m"+strconv.Itoa(i), size))
		session += transaction(bodies[i])
	}
	session += "QUIT\r\n"
	bodyOf := func(rest string) string {
		subj, _, _ := strings.Cut(strings.TrimPrefix(rest, "Subject: m"), "\r\n")
		if i, err := strconv.Atoi(subj); err == nil && i < len(bodies) {
			return bodies[i]
		}
		return "(none)"
	}

	// A session run to its end says how long one lasts on this machine.
	s := stdio.Start(t, transcript.Setup{Spool: sd})
	s.Send(session)
	r := s.End()
	full, out := r.Took, strings.Join(r.Replies, "")
	if n := strings.Count(out, " queued as "); n != len(bodies) {
		t.Fatalf("%d of %d messages accepted:\n%s", n, len(bodies), out)
	}

	seen := map[string]bool{}
	for _, e := range dirEntries(t, filepath.Join(sd, spool.QueueDir)) {
		seen[e.Name()] = true
	}
	acked := regexp.MustCompile(`(?m)^250 2\.0\.0 OK queued as (\S+)\r$`)
	var killed, unacked int
	for i := 0; i < kills; i++ {
		cmd := newCmd(t, sd)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { io.WriteString(stdin, session); stdin.Close() }()
		outc := make(chan []byte)
		go func() { b, _ := io.ReadAll(stdout); outc <- b }()
		timer := time.AfterFunc(rand.N(full), func() { cmd.Process.Signal(syscall.SIGKILL) })
		out := <-outc
		cmd.Wait()
		timer.Stop()
		wasKilled := cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled()
		if wasKilled {
			killed++
		}
		want, fresh := map[string]bool{}, 0
		for _, m := range acked.FindAllStringSubmatch(string(out), -1) {
			want[m[1]] = true
		}
		for _, e := range dirEntries(t, filepath.Join(sd, spool.QueueDir)) {
			if seen[e.Name()] {
				continue
			}
			seen[e.Name()] = true
			if !want[e.Name()] {
				fresh++
			}
			delete(want, e.Name())
			m, err := spool.Open(filepath.Join(sd, spool.QueueDir, e.Name()))
			if err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
			_, rest := content(t, m)
			m.Close()
			if rest != bodyOf(rest) {
				t.Fatalf("session %d: %s differs from the message sent", i, e.Name())
			}
		}
		if len(want) != 0 {
			t.Fatalf("session %d: acknowledged but not in queue/: %v", i, want)
		}
		// Only the message in flight at the kill may lack its 250.
		if fresh > btoi(wasKilled) {
			t.Fatalf("session %d (killed: %v): %d messages in queue/ without a 250", i, wasKilled, fresh)
		}
		unacked += fresh
	}
	t.Logf("%d of %d sessions killed (each within %v); %d messages committed but not acknowledged",
		killed, kills, full.Round(time.Millisecond), unacked)
	sweep(t, sd)
}

var receivedID = regexp.MustCompile(`\(smtp-stdio[^)]*\) with [A-Z0-9]+ id (\S+);`)

// sweep runs smtp-send once over the spool, as cron would after a crash,
// with SMTP_SEND_TMP_MAX_AGE=1ns so that its documented cleanup takes
// every temporary file for a stale one. It checks that tmp/ is then empty
// and that exactly the messages in queue/ were delivered, each once and
// byte for byte, and returns smtp-send's log.
func sweep(t *testing.T, spoolDir string) string {
	t.Helper()
	bin := testutil.Program(t, "cmd/smtp-send")
	want := map[string][]byte{}
	for _, e := range dirEntries(t, filepath.Join(spoolDir, spool.QueueDir)) {
		m, err := spool.Open(filepath.Join(spoolDir, spool.QueueDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(m.Content())
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		want[m.QueueID] = b
	}
	h := smtptest.Start(t, smtptest.Options{})
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SMTP_SPOOL_DIR=" + spoolDir, "SMTP_SMARTHOST=" + h.Addr,
		"SMTP_SMARTHOST_TLS=none", "SMTP_HOSTNAME=sweep.test", "SMTP_SEND_TMP_MAX_AGE=1ns"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-send: %v\n%s", err, out)
	}
	if n := dirEntries(t, filepath.Join(spoolDir, spool.TmpDir)); len(n) != 0 {
		t.Errorf("tmp/ after smtp-send's cleanup: %v", n)
	}
	if n := dirEntries(t, filepath.Join(spoolDir, spool.QueueDir)); len(n) != 0 {
		t.Errorf("queue/ after smtp-send: %v", n)
	}
	got := map[string]int{}
	for _, tx := range h.Transactions() {
		b := tx.Data
		m := receivedID.FindSubmatch(b)
		if m == nil {
			t.Fatalf("delivered a message without our Received: header: %.200q", b)
		}
		id := string(m[1])
		if got[id]++; !bytes.Equal(b, want[id]) {
			t.Errorf("%s: delivered bytes differ from the spool file (%d bytes, want %d)", id, len(b), len(want[id]))
		}
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times, want once", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("delivered %d distinct messages, queue/ held %d", len(got), len(want))
	}
	return string(out)
}

// mountTmpfs mounts a tmpfs of size bytes on dir until the test ends.
// Where mount(2) is not permitted the test is skipped, except in CI as
// root, where it must work.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" && os.Geteuid() == 0 {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
}

// TestDiskFullSession spools into a 512 KiB tmpfs: a 1 MiB message gets
// 452 4.3.1 and leaves nothing behind, and the same session then spools
// a small one.
func TestDiskFullSession(t *testing.T) {
	sd := t.TempDir()
	mountTmpfs(t, sd, "512k")
	stdio.RunWith(t, script(t, "C: EHLO c.example\n"+txLines(msgBody("big", 1<<20))+txLines(helloBody)+"C: QUIT\n"+
		greeting+ehlo("c.example")+txReplies+"S: 452 4.3.1 …\n"+txReplies+queued+closing+"= exit 0\n\n"+
		receivedLocal("c.example")+lines("M", helloBody)), transcript.Setup{Spool: sd})
}

// TestSpoolMissing: a spool root that does not exist refuses the session
// with 421, says why on standard error, exits 78 and creates nothing.
func TestSpoolMissing(t *testing.T) {
	sd := filepath.Join(t.TempDir(), "missing")
	r := stdio.RunWith(t, script(t, refused), transcript.Setup{Spool: sd})
	if !strings.Contains(r.Stderr, sd) || !strings.Contains(r.Stderr, "no such file or directory") {
		t.Errorf("standard error does not say why: %q", r.Stderr)
	}
	if _, err := os.Stat(sd); err == nil {
		t.Error("the spool root was created")
	}
}

// TestQueueNotWritable runs the binary as an unprivileged user (nobody,
// when the test runs as root: for root, permission bits do not bind)
// with queue/ mode 0500: each message gets 451 4.3.0 after its data,
// nothing stays behind, and the session goes on.
func TestQueueNotWritable(t *testing.T) {
	base, err := os.MkdirTemp("", "smtp-stdio-perm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o711) // nobody must reach the binary and the spool
	bin := filepath.Join(base, "smtp-stdio")
	b, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sd := filepath.Join(base, "spool")
	dirs := []string{sd, filepath.Join(sd, spool.QueueDir), filepath.Join(sd, spool.TmpDir)}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var asNobody func(*exec.Cmd)
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("user nobody: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range dirs {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		asNobody = func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		}
	}
	if err := os.Chmod(dirs[1], 0o500); err != nil {
		t.Fatal(err)
	}
	tx := txLines(helloBody)
	// The runner checks that queue/ and tmp/ stay empty.
	r := transcript.Binary{Path: bin, Env: testEnv}.RunWith(t, script(t, "C: EHLO c.example\n"+tx+"C: NOOP\n"+tx+"C: QUIT\n"+
		greeting+ehlo("c.example")+txReplies+"S: 451 4.3.0 …\nS: 250 2.0.0 OK\n"+txReplies+"S: 451 4.3.0 …\n"+closing+"= exit 0\n"),
		transcript.Setup{Spool: sd, Prepare: asNobody})
	if !strings.Contains(r.Stderr, "permission denied") {
		t.Errorf("the log does not say why:\n%s", r.Stderr)
	}
}
