package queue

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// dropQueue returns a queue with a drop/ of mode 1730.
func dropQueue(t *testing.T) *Queue {
	t.Helper()
	q := newQueue(t)
	d := q.sp.Path(DropDir)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(d, 0o1730); err != nil {
		t.Fatal(err)
	}
	return q
}

// dropFile writes drop/name as the drop helper does: the drop stream
// through spool.CopyDrop.
func dropFile(t *testing.T, q *Queue, name string, env *spool.Envelope, body string) string {
	t.Helper()
	var b bytes.Buffer
	d, err := spool.NewDropWriter(&b, env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, body)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	p := q.sp.Path(DropDir, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := spool.CopyDrop(f, &b, 1<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

const dropBody = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"

func TestPickup(t *testing.T) {
	q := dropQueue(t)
	env := testEnvelope(t)
	dropFile(t, q, "good", env, dropBody)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	got, err := q.Pickup(1<<20, time.Hour, now, "mx.test")
	if err != nil || len(got) != 1 || got[0].Err != nil || got[0].ID == "" {
		t.Fatalf("Pickup: %+v, %v", got, err)
	}
	if got[0].Uid != os.Getuid() {
		t.Errorf("uid %d, want the file's owner %d", got[0].Uid, os.Getuid())
	}
	m, err := q.sp.OpenMessage(got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	want := "Received: by mx.test (smtp-stdio pickup, from userid " + strconv.Itoa(os.Getuid())
	if !strings.HasPrefix(string(b), want) || !strings.HasSuffix(string(b), "\r\n"+dropBody) {
		t.Errorf("queued message:\n%s", b)
	}
	if m.Client != "" || m.Helo != "" || m.Protocol != "local" || m.From != env.From || len(m.To) != 2 || !m.Received.Equal(now) {
		t.Errorf("envelope %+v", m.Envelope)
	}
	if names, _ := readAll(q.sp.Path(DropDir)); len(names) != 0 {
		t.Errorf("left in drop/: %v", names)
	}
}

// TestPickupSetsAside: every kind of bad file in drop/ goes to corrupt/
// as drop.<name>, never to queue/; a file being written (a '.' name) is
// left alone until it is old, then removed.
func TestPickupSetsAside(t *testing.T) {
	q := dropQueue(t)
	env := testEnvelope(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("smtp-spool 1\n"), 0o600)
	dropFile(t, q, "big", env, strings.Repeat("x", 5000))
	p := dropFile(t, q, "crc", env, dropBody)
	b, _ := os.ReadFile(p)
	b[len(b)-3] ^= 1 // one bit of the body: the CRC-32C no longer matches
	os.WriteFile(p, b, 0o644)
	os.WriteFile(q.sp.Path(DropDir, "garbage"), []byte("hello\n"), 0o644)
	os.Symlink(secret, q.sp.Path(DropDir, "link"))
	dropFile(t, q, "twolinks", env, dropBody)
	os.Link(q.sp.Path(DropDir, "twolinks"), filepath.Join(t.TempDir(), "other"))
	for kind, make := range testutil.NonRegular(t, secret) {
		make(q.sp.Path(DropDir, "nonregular-"+kind))
	}
	young := q.sp.Path(DropDir, ".young")
	old := q.sp.Path(DropDir, ".old")
	os.WriteFile(young, []byte("half"), 0o644)
	os.WriteFile(old, []byte("half"), 0o644)
	now := time.Now()
	os.Chtimes(old, now.Add(-2*time.Hour), now.Add(-2*time.Hour))

	var got []Picked
	testutil.Within(t, "Pickup", func() {
		var err error
		got, err = q.Pickup(2000, time.Hour, now, "mx.test")
		if err != nil {
			t.Fatal(err)
		}
	})
	for _, p := range got {
		if !p.SetAside || p.Err == nil || p.ID != "" {
			t.Errorf("%s: %+v, want set aside", p.Name, p)
		}
		if _, err := os.Lstat(q.sp.Path(CorruptDir, "drop."+p.Name)); err != nil {
			t.Errorf("%s: not in corrupt/: %v", p.Name, err)
		}
	}
	if len(got) < 6 {
		t.Errorf("picked %d names, want every bad one: %+v", len(got), got)
	}
	if names, _ := readNames(q.sp.Path(spool.QueueDir)); len(names) != 0 {
		t.Errorf("queued: %v", names)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a file being written was removed: %v", err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a stale temporary file was kept: %v", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "smtp-spool 1\n" {
		t.Error("the link's target was changed")
	}
}

// TestPickupUnsafeDrop: a drop/ without the sticky bit, writable by
// others, or a symbolic link, is refused and nothing in it is read; no
// drop/ at all is no error.
func TestPickupUnsafeDrop(t *testing.T) {
	q := newQueue(t)
	if got, err := q.Pickup(1<<20, time.Hour, time.Now(), "h"); err != nil || got != nil {
		t.Fatalf("no drop/: %v, %v", got, err)
	}
	d := q.sp.Path(DropDir)
	os.Mkdir(d, 0o700)
	for _, mode := range []uint32{0o730, 0o1733} {
		syscall.Chmod(d, mode)
		if _, err := q.Pickup(1<<20, time.Hour, time.Now(), "h"); !errors.Is(err, ErrDropUnsafe) {
			t.Errorf("mode %04o: %v, want ErrDropUnsafe", mode, err)
		}
	}
	os.Remove(d)
	other := t.TempDir()
	syscall.Chmod(other, 0o1730)
	os.Symlink(other, d)
	if _, err := q.Pickup(1<<20, time.Hour, time.Now(), "h"); !errors.Is(err, ErrDropUnsafe) {
		t.Errorf("symbolic link: %v, want ErrDropUnsafe", err)
	}
}
