package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	queuepkg "github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// A spool that other users could change (issue 8 item 2) makes smtp-send
// exit 78 before it reads or sends anything, for a run and for --list,
// naming the directory; the message planted in it is not relayed.
func TestUnsafeSpoolExits78(t *testing.T) {
	for _, c := range testutil.UnsafeSpools(spool.QueueDir, spool.TmpDir) {
		t.Run(c.Name, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{})
			dir := t.TempDir()
			queue(t, dir, "planted@x.test")
			path := c.Make(t, dir)
			for _, args := range [][]string{{"--all"}, {"--list"}} {
				r := runWithin(t, time.Minute, sendEnv(dir, srv.Addr), args...)
				if r.code != exConfig || !strings.Contains(r.stderr, path+" ") || r.stdout != "" {
					t.Errorf("%v: exit %d, want %d naming %s\n%s%s", args, r.code, exConfig, path, r.stdout, r.stderr)
				}
			}
			if n := srv.RcptCount()["planted@x.test"]; n != 0 {
				t.Errorf("the planted message was relayed %d times", n)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, spool.TmpDir)); len(ents) != 0 {
				t.Errorf("files written in tmp/: %v", ents)
			}
		})
	}
}

// Names in the spool that are not regular files (issue 8 item 3): a FIFO
// in queue/, a FIFO as a message's state file, and in queue/ a symbolic
// link to a valid message elsewhere. --list and a run finish within a
// bounded time, exit 0, list them as unreadable and set them aside in
// corrupt/; the regular message is delivered, the linked one never; the
// run lock is free afterwards.
func TestNonRegularFilesNeverBlock(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	dir := t.TempDir()
	good := queue(t, dir, "good@x.test")

	fifo := "20261121T100000.00000000000000f1"
	if err := syscall.Mkfifo(filepath.Join(dir, spool.QueueDir, fifo), 0o600); err != nil {
		t.Fatal(err)
	}
	withFifoState := queue(t, dir, "state@x.test")
	os.Mkdir(filepath.Join(dir, queuepkg.StateDir), 0o700)
	fifoState := queuepkg.StateName(withFifoState, time.Time{})
	if err := syscall.Mkfifo(filepath.Join(dir, queuepkg.StateDir, fifoState), 0o600); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	linked := queue(t, elsewhere, "linked@x.test")
	if err := os.Symlink(filepath.Join(elsewhere, spool.QueueDir, linked), filepath.Join(dir, spool.QueueDir, linked)); err != nil {
		t.Fatal(err)
	}
	env := sendEnv(dir, srv.Addr)

	l := runWithin(t, 30*time.Second, env, "--list")
	if l.code != exOK {
		t.Errorf("--list exit %d\n%s", l.code, l.stderr)
	}
	for _, id := range []string{fifo, withFifoState, linked} {
		if !strings.Contains(l.stdout, id+"  unreadable") {
			t.Errorf("--list does not show %s as unreadable:\n%s", id, l.stdout)
		}
	}
	if !strings.Contains(l.stdout, good+"  new") {
		t.Errorf("--list lacks the good message:\n%s", l.stdout)
	}

	r := runWithin(t, 30*time.Second, env, "--all")
	got := srv.RcptCount()
	if r.code != exOK || got["good@x.test"] != 1 {
		t.Fatalf("run exit %d, delivered %d\n%s", r.code, got["good@x.test"], r.stderr)
	}
	if n := got["linked@x.test"] + got["state@x.test"]; n != 0 {
		t.Errorf("%d deliveries of set-aside messages", n)
	}
	if n := strings.Count(r.stderr, "not a regular file"); n != 3 {
		t.Errorf("%d log lines name a file that is not regular, want 3\n%s", n, r.stderr)
	}
	corrupt, _ := os.ReadDir(filepath.Join(dir, queuepkg.CorruptDir))
	var names []string
	for _, e := range corrupt {
		names = append(names, e.Name())
	}
	for _, want := range []string{fifo, withFifoState, fifoState, linked} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("corrupt/ lacks %s: %v", want, names)
		}
	}
	if q, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir)); len(q) != 0 {
		t.Errorf("queue/ %v", q)
	}

	// The lock is free: the next run does not find it held, and --list
	// --all reads corrupt/, FIFOs and all, without blocking.
	again := runWithin(t, 30*time.Second, env)
	if again.code != exOK || strings.Contains(again.stderr, "another smtp-send run holds the spool") {
		t.Errorf("next run exit %d\n%s", again.code, again.stderr)
	}
	if la := runWithin(t, 30*time.Second, env, "--list", "--all"); la.code != exOK || !strings.Contains(la.stdout, fifo) {
		t.Errorf("--list --all exit %d\n%s%s", la.code, la.stdout, la.stderr)
	}
	sp, err := spool.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queuepkg.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	lock, err := q.LockRun()
	if err != nil {
		t.Fatalf("run lock after the runs: %v", err)
	}
	lock.Unlock()
}
