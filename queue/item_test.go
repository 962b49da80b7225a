package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Every reader and writer of state/ refuses a name that is not a regular
// file with spool.ErrNotRegular, without blocking and without following a
// symbolic link: state files, journals (read and appended to); MoveCorrupt
// sets them aside as they are.
func TestNonRegularNeverOpened(t *testing.T) {
	for name, mk := range nonRegular(t) {
		t.Run(name, func(t *testing.T) {
			q := newQueue(t)
			env := testEnvelope(t)
			id := env.QueueID
			mk(q.sp.Path(spool.QueueDir, id))
			state := StateName(id, time.Time{})
			mk(q.sp.Path(StateDir, state))
			testutil.Within(t, "ReadState", func() {
				if _, err := q.LoadState([]string{state}); !errors.Is(err, spool.ErrNotRegular) {
					t.Errorf("LoadState: %v", err)
				}
			})
			mk(q.sp.Path(StateDir, JournalName(id)))
			testutil.Within(t, "ReadJournal", func() {
				if _, _, err := q.ReadJournal(id); !errors.Is(err, spool.ErrNotRegular) {
					t.Errorf("ReadJournal: %v", err)
				}
			})
			testutil.Within(t, "appendJournal", func() {
				e := JournalEntry{Set: []Update{{Index: 0, Rcpt: Rcpt{Addr: env.To[0], Status: Done}}}}
				if err := q.appendJournal(id, e); !errors.Is(err, spool.ErrNotRegular) {
					t.Errorf("appendJournal: %v", err)
				}
			})
			if err := q.MoveCorrupt(Entry{ID: id, States: []string{state}}); err != nil {
				t.Fatalf("MoveCorrupt: %v", err)
			}
			for _, n := range []string{id, state, JournalName(id)} {
				if fi, err := os.Lstat(q.sp.Path(CorruptDir, n)); err != nil || fi.Mode().IsRegular() {
					t.Errorf("corrupt/%s: %v", n, err)
				}
			}
		})
	}
}

// Open refuses a state/, failed/ or corrupt/ that other users could change
// (spool.ErrUnsafe), naming it, and creates missing ones with mode 0700.
func TestOpenChecksDirectories(t *testing.T) {
	for _, sub := range []string{StateDir, FailedDir, CorruptDir} {
		root := t.TempDir()
		sp, err := spool.New(root)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, sub)
		must(t, os.Mkdir(p, 0o700))
		must(t, os.Chmod(p, 0o777))
		if _, err := Open(sp); !errors.Is(err, spool.ErrUnsafe) || !strings.Contains(err.Error(), p+" ") {
			t.Errorf("%s world-writable: %v", sub, err)
		}
	}
	q := newQueue(t)
	for _, sub := range []string{StateDir, FailedDir, CorruptDir} {
		if fi, err := os.Stat(q.sp.Path(sub)); err != nil || fi.Mode().Perm() != spool.DirMode {
			t.Errorf("%s: %v", sub, err)
		}
	}
}

// The steps of an item: a 250 that leaves a recipient pending is a
// journal line; the last one removes the message (no journal, no state).
// Each step calls the hook in order.
func TestRecordAccepted(t *testing.T) {
	q := newQueue(t)
	var steps []string
	q.Hook = func(s Step, _ string) { steps = append(steps, s.String()) }
	env := testEnvelope(t)
	commit(t, q, env, "x\r\n")
	it := openItem(t, q, &Entry{ID: env.QueueID})
	defer it.Close()
	done := func(i int) []Update {
		return []Update{{Index: i, Rcpt: Rcpt{Addr: env.To[i], Status: Done, Code: 250, Stage: "dot"}}}
	}
	if err := it.RecordAccepted(time.Now(), done(0)); err != nil {
		t.Fatal(err)
	}
	entries, torn, err := q.ReadJournal(env.QueueID)
	if err != nil || torn || len(entries) != 1 || entries[0].Set[0].Status != Done || it.Gone() {
		t.Fatalf("journal %+v %v %v, gone %v", entries, torn, err, it.Gone())
	}
	if err := it.RecordAccepted(time.Now(), done(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q.sp.Path(spool.QueueDir, env.QueueID)); !errors.Is(err, os.ErrNotExist) || !it.Gone() {
		t.Errorf("message still queued: %v", err)
	}
	if ents, _ := os.ReadDir(q.sp.Path(StateDir)); len(ents) != 0 {
		t.Errorf("state/ %v", ents)
	}
	if want := []string{"accepted", "recorded", "accepted", "recorded"}; !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
}

// noticeText is a Notify for tests: one line per recipient it reports.
func noticeText(w io.Writer, n *Notice) error {
	for _, r := range n.Rcpts {
		fmt.Fprintf(w, "%s failed: %s\r\n", r.Addr, r.Text)
	}
	return nil
}

// Bounce journals the intent, then spools the notification from <> to the
// sender; the original leaves the queue only at Settle, after it. A crash
// between intent and spooling (simulated: the notification removed) is
// completed by Load, once; a message from <> is never bounced.
func TestBounceOrdering(t *testing.T) {
	q := newQueue(t)
	q.Notify, q.Hostname = noticeText, "mx.test"
	var steps []string
	q.Hook = func(s Step, id string) {
		steps = append(steps, s.String())
		if s == StepBounceSpooled {
			if _, err := os.Stat(q.sp.Path(spool.QueueDir, id)); err != nil {
				t.Errorf("original gone before its notification was spooled: %v", err)
			}
		}
	}
	env := testEnvelope(t)
	commit(t, q, env, "Subject: x\r\n\r\nbody\r\n")
	it := openItem(t, q, &Entry{ID: env.QueueID})
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	it.State.Rcpts[0] = Rcpt{Addr: env.To[0], Status: Failed, Code: 550, Text: "no such user"}
	dsn, err := it.Bounce(now, []int{0})
	if err != nil || dsn == "" || it.State.Rcpts[0].DSN != dsn {
		t.Fatalf("Bounce: %q %v, state %+v", dsn, err, it.State.Rcpts[0])
	}
	m, err := q.sp.OpenMessage(dsn)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(m.Content())
	if m.From != "" || !slices.Equal(m.To, []string{env.From}) || m.Helo != "mx.test" ||
		string(b) != env.To[0]+" failed: no such user\r\n" {
		t.Errorf("notification from <%s> to %v helo %s:\n%s", m.From, m.To, m.Helo, b)
	}
	m.Close()
	if left, err := it.Settle(); err != nil || left != Stayed {
		t.Fatalf("Settle: %q %v", left, err)
	}
	it.Close()
	if want := []string{"bounce-intent", "bounce-spooled", "state-written"}; !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}

	// A crash after the intent: the journal names a notification that
	// is not in queue/. Load spools it again, under the same id, once.
	sc, _ := q.Scan()
	e := sc.Entries[slices.IndexFunc(sc.Entries, func(e Entry) bool { return e.ID == env.QueueID })]
	it = openItem(t, q, &e)
	it.State.Rcpts[1] = Rcpt{Addr: env.To[1], Status: Failed, Code: 550, Text: "gone"}
	dsn2, err := it.Bounce(now, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	it.Close() // killed before Settle
	must(t, os.Remove(q.sp.Path(spool.QueueDir, dsn2)))
	sc, _ = q.Scan()
	e = sc.Entries[slices.IndexFunc(sc.Entries, func(e Entry) bool { return e.ID == env.QueueID })]
	if !e.Journal {
		t.Fatalf("no journal: %+v", e)
	}
	for range 2 {
		it = openItem(t, q, &e)
		it.Close()
	}
	if _, err := os.Stat(q.sp.Path(spool.QueueDir, dsn2)); err != nil {
		t.Errorf("notification not spooled again: %v", err)
	}
	it = openItem(t, q, &e)
	if left, err := it.Settle(); err != nil || left != MovedFailed {
		t.Errorf("Settle: %q %v", left, err)
	}
	it.Close()
	if fs, err := q.ReadFailedState(env.QueueID); err != nil || fs.Rcpts[0].DSN != dsn || fs.Rcpts[1].DSN != dsn2 {
		t.Errorf("failed state %+v %v", fs, err)
	}

	// From <>: no notification.
	null := testEnvelope(t)
	null.From = ""
	commit(t, q, null, "x\r\n")
	it = openItem(t, q, &Entry{ID: null.QueueID})
	defer it.Close()
	it.State.Rcpts[0].Status = Failed
	if id, err := it.Bounce(now, []int{0}); id != "" || err != nil {
		t.Errorf("bounce of a message from <>: %q %v", id, err)
	}
}

// A step that failed breaks the item: the steps after it return its
// error and write nothing.
func TestBrokenItemStops(t *testing.T) {
	q := newQueue(t) // no Notify: a bounce fails
	env := testEnvelope(t)
	commit(t, q, env, "x\r\n")
	it := openItem(t, q, &Entry{ID: env.QueueID})
	defer it.Close()
	it.State.Rcpts[0].Status = Failed
	_, err := it.Bounce(time.Now(), []int{0})
	if err == nil {
		t.Fatal("Bounce without Notify succeeded")
	}
	if _, err2 := it.Settle(); err2 != err {
		t.Errorf("Settle after a failed Bounce: %v", err2)
	}
	if err2 := it.RecordAccepted(time.Now(), nil); err2 != err {
		t.Errorf("RecordAccepted after a failed Bounce: %v", err2)
	}
	if ents, _ := os.ReadDir(q.sp.Path(StateDir)); len(ents) != 1 { // the intent alone
		t.Errorf("state/ %v", ents)
	}
	if n, _ := os.ReadDir(q.sp.Path(spool.QueueDir)); len(n) != 1 {
		t.Errorf("queue/ %v", n)
	}
}

// Open keeps its Entry current: a run that folds a journal (Load, Settle)
// and opens the message again to deliver it finds the state it wrote, not
// the names its Scan saw.
func TestEntryKeptCurrent(t *testing.T) {
	q := newQueue(t)
	env := testEnvelope(t)
	commit(t, q, env, "x\r\n")
	e := &Entry{ID: env.QueueID}
	it := openItem(t, q, e)
	if err := it.RecordAccepted(time.Now(), []Update{{Index: 0, Rcpt: Rcpt{Addr: env.To[0], Status: Done}}}); err != nil {
		t.Fatal(err)
	}
	it.Close()
	sc, _ := q.Scan()
	e = &sc.Entries[0]
	it = openItem(t, q, e) // the next run folds the journal
	if _, err := it.Settle(); err != nil {
		t.Fatal(err)
	}
	it.Close()
	if e.Journal || len(e.States) != 1 {
		t.Fatalf("entry %+v after Settle", e)
	}
	it = openItem(t, q, e) // and delivers
	defer it.Close()
	if it.State.Rcpts[0].Status != Done || it.State.Rcpts[1].Status != Pending {
		t.Errorf("reopened state %+v", it.State.Rcpts)
	}
}

// TestMoveCorruptKeepsWhatIsThere: a message set aside under a name that
// corrupt/ already holds (a file, or a directory, which a rename cannot
// replace) takes a free name; nothing there is replaced and the move does
// not fail.
func TestMoveCorruptKeepsWhatIsThere(t *testing.T) {
	q := newQueue(t)
	id := testEnvelope(t).QueueID
	old := q.sp.Path(CorruptDir, id)
	if err := os.WriteFile(old, []byte("set aside before"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(old+".1", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(q.sp.Path(spool.QueueDir, id), []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := q.MoveCorrupt(Entry{ID: id}); err != nil {
		t.Fatalf("MoveCorrupt: %v", err)
	}
	if b, err := os.ReadFile(old); err != nil || string(b) != "set aside before" {
		t.Errorf("corrupt/%s: %q %v", id, b, err)
	}
	if b, err := os.ReadFile(old + ".2"); err != nil || string(b) != "damaged" {
		t.Errorf("corrupt/%s.2: %q %v", id, b, err)
	}
	if _, err := os.Lstat(q.sp.Path(spool.QueueDir, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("queue/%s still there: %v", id, err)
	}
}
