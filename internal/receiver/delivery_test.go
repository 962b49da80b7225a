package receiver

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

func replyOf(t *testing.T, err error) *protocol.Reply {
	t.Helper()
	var r *protocol.Reply
	if !errors.As(err, &r) {
		t.Fatalf("error %v carries no reply", err)
	}
	return r
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		code int
		enh  string
	}{
		{fmt.Errorf("spool: write: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), 452, "4.3.1"},
		{fmt.Errorf("spool: write: %w", syscall.EDQUOT), 452, "4.3.1"},
		{fmt.Errorf("spool: create: %w", syscall.EACCES), 451, "4.3.0"},
		{errors.New("anything"), 451, "4.3.0"},
	}
	for _, c := range cases {
		r := replyOf(t, classify(c.err))
		if r.Code != c.code || r.Enhanced != c.enh {
			t.Errorf("%v: got %d %s, want %d %s", c.err, r.Code, r.Enhanced, c.code, c.enh)
		}
		if !errors.Is(classify(c.err), c.err) {
			t.Errorf("%v: cause not kept", c.err)
		}
	}
}

// TestDiskFull spools into a 256 KiB tmpfs: a message that does not fit
// gets 452 4.3.1 at commit, leaves nothing in queue/ or tmp/, and the next
// small message is accepted. Needs mount(2) (root); elsewhere TestClassify
// covers the mapping.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" && os.Geteuid() == 0 {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	sp, err := spool.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := &spoolDelivery{sp: sp, now: time.Now, log: slog.New(slog.DiscardHandler)}
	env := &protocol.Envelope{From: "a@example.net", To: []string{"b@example.org"}, Protocol: "ESMTP"}
	m, err := d.Begin(env)
	if err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("x", 1022) + "\r\n")
	for i := 0; i < 1024; i++ { // 1 MiB into 256 KiB
		if _, err := m.Write(chunk); err != nil {
			t.Fatalf("Write returned %v; errors must wait for Commit", err)
		}
	}
	r := replyOf(t, m.Commit())
	if r.Code != 452 || r.Enhanced != "4.3.1" {
		t.Fatalf("got %v, want 452 4.3.1", r)
	}
	for _, sub := range []string{spool.QueueDir, spool.TmpDir} {
		if ents, _ := os.ReadDir(filepath.Join(dir, sub)); len(ents) != 0 {
			t.Errorf("%s not empty after failure: %v", sub, ents)
		}
	}
	m, err = d.Begin(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(m, "Subject: small\r\n\r\nfits\r\n")
	if err := m.Commit(); err != nil {
		t.Fatalf("small message after disk full: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir)); len(ents) != 1 {
		t.Errorf("queue has %d files, want 1", len(ents))
	}
}
