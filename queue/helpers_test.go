package queue

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// newQueue returns the queue of a new spool in a temporary directory.
func newQueue(t *testing.T) *Queue {
	t.Helper()
	sp, err := spool.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	q, err := Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// testEnvelope is a message from a@example.org to two recipients, with a
// new queue id.
func testEnvelope(t *testing.T) *spool.Envelope {
	t.Helper()
	now := time.Date(2026, 11, 21, 11, 18, 25, 123, time.UTC)
	id, err := spool.NewQueueID(now)
	if err != nil {
		t.Fatal(err)
	}
	return &spool.Envelope{
		QueueID: id, Received: now, Client: "127.0.0.1:4242", Helo: "client.example",
		Protocol: "ESMTP", From: "a@example.org", To: []string{"b@example.net", "c@example.com"},
	}
}

// commit spools a message for env.
func commit(t *testing.T, q *Queue, env *spool.Envelope, body string) {
	t.Helper()
	w, err := q.sp.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// openItem opens and loads the item of e.
func openItem(t *testing.T, q *Queue, e *Entry) *Item {
	t.Helper()
	it, err := q.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := it.Load(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)); err != nil {
		it.Close()
		t.Fatal(err)
	}
	return it
}

// nonRegular makes, at path, each kind of name that is not a regular file
// and that a queue reader could meet; the symbolic link points to a
// regular file, which a reader that follows links would take.
func nonRegular(t *testing.T) map[string]func(path string) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(target, []byte(`{"version":1}`), 0o600))
	kinds := map[string]func(string){
		"fifo":      func(p string) { must(t, syscall.Mkfifo(p, 0o600)) },
		"symlink":   func(p string) { must(t, os.Symlink(target, p)) },
		"directory": func(p string) { must(t, os.Mkdir(p, 0o700)) },
		"socket": func(p string) {
			l, err := net.Listen("unix", p)
			must(t, err)
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { l.Close() })
		},
	}
	if os.Geteuid() == 0 {
		// A copy of /dev/zero: a reader that opened it would read for ever.
		kinds["device"] = func(p string) { must(t, unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 5)))) }
	}
	return kinds
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// within fails the test if f has not returned after a few seconds: a reader
// that opens a FIFO blocks in open(2) for ever.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5s", what)
	}
}
