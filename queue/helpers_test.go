package queue

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
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
	return testutil.NonRegular(t, target)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
