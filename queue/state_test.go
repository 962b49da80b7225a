package queue

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// The state file's name carries the next attempt; a second write replaces
// the first name; of two names left by a crash, the higher Seq wins.
func TestStateWriteAndLoad(t *testing.T) {
	q := newQueue(t)
	env := testEnvelope(t)
	st := NewState(env)
	next := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	st.Next = next
	st.Rcpts[0].Status = Done
	n1, err := q.writeState(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n1 != env.QueueID+"@"+"1795262400" {
		t.Errorf("name %s", n1)
	}
	oldBytes, _ := os.ReadFile(q.sp.Path(StateDir, n1))
	st.Next = next.Add(time.Hour)
	st.Attempts = 2
	n2, err := q.writeState(st, []string{n1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q.sp.Path(StateDir, n1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old name %s still there", n1)
	}
	// A crash between the new name and the removal of the old one: put
	// an older copy back.
	if err := os.WriteFile(q.sp.Path(StateDir, n1), oldBytes, spool.FileMode); err != nil {
		t.Fatal(err)
	}
	got, err := q.LoadState([]string{n1, n2})
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 2 || got.Seq != 2 || !got.Next.Equal(next.Add(time.Hour)) || got.Rcpts[0].Status != Done {
		t.Errorf("loaded %+v", got)
	}
	if err := got.Check(env); err != nil {
		t.Error(err)
	}
	other := *env
	other.To = []string{"x@y.z", env.To[1]}
	if err := got.Check(&other); !errors.Is(err, spool.ErrCorrupt) {
		t.Errorf("check against other envelope: %v", err)
	}
	os.WriteFile(q.sp.Path(StateDir, n2), []byte(`{"version":2,"id":"x"}`), spool.FileMode)
	if _, err := q.ReadState(n2); !errors.Is(err, spool.ErrCorrupt) {
		t.Errorf("unknown version: %v", err)
	}
	if ents, _ := os.ReadDir(q.sp.Path(spool.TmpDir)); len(ents) != 0 {
		t.Errorf("temp files left: %v", ents)
	}
}

// A journal's torn last record is dropped; folding is idempotent; Done and
// Failed are final; a notification is reported only while not yet final.
func TestJournal(t *testing.T) {
	q := newQueue(t)
	env := testEnvelope(t)
	id := env.QueueID
	done := JournalEntry{Set: []Update{{Index: 0, Rcpt: Rcpt{Addr: env.To[0], Status: Done, Code: 250}}}}
	failed := JournalEntry{Set: []Update{{Index: 1, Rcpt: Rcpt{Addr: env.To[1], Status: Failed, Code: 550, DSN: "dsn1"}}}}
	for _, e := range []JournalEntry{done, failed} {
		if err := q.appendJournal(id, e); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(q.sp.Path(StateDir, JournalName(id)), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`0000abcd {"set":[{"i":0`)
	f.Close()
	entries, torn, err := q.ReadJournal(id)
	if err != nil || !torn || len(entries) != 2 {
		t.Fatalf("entries %d torn %v err %v", len(entries), torn, err)
	}
	st := NewState(env)
	dsns, err := st.Apply(entries)
	if err != nil || !slices.Equal(dsns, []string{"dsn1"}) {
		t.Fatalf("dsns %v err %v", dsns, err)
	}
	if st.Rcpts[0].Status != Done || st.Rcpts[1].Status != Failed {
		t.Errorf("state %+v", st.Rcpts)
	}
	dsns, err = st.Apply(append(entries, JournalEntry{Set: []Update{{Index: 0, Rcpt: Rcpt{Addr: env.To[0]}}}}))
	if err != nil || len(dsns) != 0 || st.Rcpts[0].Status != Done {
		t.Errorf("second fold: dsns %v err %v state %+v", dsns, err, st.Rcpts)
	}
	bad := []JournalEntry{{Set: []Update{{Index: 5, Rcpt: Rcpt{Addr: "x"}}}}}
	if _, err := NewState(env).Apply(bad); !errors.Is(err, spool.ErrCorrupt) {
		t.Errorf("out of range: %v", err)
	}
	if err := q.removeJournal(id); err != nil {
		t.Fatal(err)
	}
	if entries, torn, err := q.ReadJournal(id); len(entries) != 0 || torn || err != nil {
		t.Errorf("after removal: %v %v %v", entries, torn, err)
	}
}

// Scan pairs queue/ with state/ from two directory reads: next attempt
// from the name, journals, orphans; foreign and dot names are ignored.
func TestScan(t *testing.T) {
	q := newQueue(t)
	a, b := testEnvelope(t), testEnvelope(t)
	commit(t, q, a, "x\r\n")
	commit(t, q, b, "y\r\n")
	next := time.Unix(1795262400, 0).UTC()
	for _, n := range []string{StateName(a.QueueID, next), JournalName(b.QueueID),
		StateName("20261121T000000.0000000000000000", next), ".tmp123", "README"} {
		os.WriteFile(q.sp.Path(StateDir, n), nil, spool.FileMode)
	}
	sc, err := q.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Entries) != 2 {
		t.Fatalf("entries %+v", sc.Entries)
	}
	for _, e := range sc.Entries {
		switch e.ID {
		case a.QueueID:
			if len(e.States) != 1 || !e.Next.Equal(next) || e.Journal {
				t.Errorf("a: %+v", e)
			}
		case b.QueueID:
			if len(e.States) != 0 || !e.Next.IsZero() || !e.Journal {
				t.Errorf("b: %+v", e)
			}
		}
	}
	if !slices.Equal(sc.Orphans, []string{StateName("20261121T000000.0000000000000000", next)}) {
		t.Errorf("orphans %v", sc.Orphans)
	}
}

// Settle (all done, or a recipient failed) and MoveCorrupt take the
// message and its state files out of queue/ and state/.
func TestLeaveQueue(t *testing.T) {
	q := newQueue(t)
	for _, how := range []string{"remove", "failed", "corrupt"} {
		env := testEnvelope(t)
		commit(t, q, env, "x\r\n")
		st := NewState(env)
		name, _ := q.writeState(st, nil)
		q.appendJournal(env.QueueID, JournalEntry{})
		e := Entry{ID: env.QueueID, States: []string{name}, Journal: true}
		var err error
		switch how {
		case "remove", "failed":
			it := openItem(t, q, &e)
			st := it.State
			st.Rcpts[0].Status, st.Rcpts[1].Status = Done, Done
			if how == "failed" {
				st.Rcpts[1].Status = Failed
			}
			_, err = it.Settle()
			it.Close()
		case "corrupt":
			err = q.MoveCorrupt(e)
		}
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		if ents, _ := os.ReadDir(q.sp.Path(spool.QueueDir)); len(ents) != 0 {
			t.Errorf("%s: queue/ %v", how, ents)
		}
		if ents, _ := os.ReadDir(q.sp.Path(StateDir)); len(ents) != 0 {
			t.Errorf("%s: state/ %v", how, ents)
		}
	}
	failed, _ := q.Area(FailedDir)
	corrupt, _ := os.ReadDir(q.sp.Path(CorruptDir))
	if len(failed) != 1 || len(corrupt) != 3 {
		t.Errorf("failed/ %v, corrupt/ %v", failed, corrupt)
	}
	if _, err := q.ReadFailedState(failed[0]); err != nil {
		t.Error(err)
	}
	for _, e := range corrupt {
		if n := e.Name(); !strings.Contains(n, "@") {
			if _, err := spool.Open(q.sp.Path(CorruptDir, n)); err != nil {
				t.Errorf("corrupt/%s altered: %v", n, err)
			}
		}
	}
}

// The run lock excludes a second run, and is gone with its holder; message
// locks: shared with shared, exclusive with nothing.
func TestLocks(t *testing.T) {
	q := newQueue(t)
	l, err := q.LockRun()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.LockRun(); !errors.Is(err, ErrLocked) {
		t.Errorf("second run lock: %v", err)
	}
	l.Unlock()
	l2, err := q.LockRun()
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	l2.Unlock()

	env := testEnvelope(t)
	commit(t, q, env, "x\r\n")
	open := func() *os.File {
		f, err := os.Open(q.sp.Path(spool.QueueDir, env.QueueID))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b, c := open(), open(), open()
	if err := LockMessage(a, false); err != nil {
		t.Fatal(err)
	}
	if err := LockMessage(b, false); err != nil {
		t.Errorf("shared with shared: %v", err)
	}
	if err := LockMessage(c, true); !errors.Is(err, ErrLocked) {
		t.Errorf("exclusive with shared: %v", err)
	}
	UnlockMessage(a)
	b.Close()
	if err := LockMessage(c, true); err != nil {
		t.Errorf("exclusive once free: %v", err)
	}
}

// CleanTmp removes only files older than the limit.
func TestCleanTmp(t *testing.T) {
	q := newQueue(t)
	now := time.Now()
	for name, age := range map[string]time.Duration{"old": 48 * time.Hour, "new": time.Minute} {
		p := q.sp.Path(spool.TmpDir, name)
		os.WriteFile(p, nil, spool.FileMode)
		os.Chtimes(p, now.Add(-age), now.Add(-age))
	}
	removed, err := q.CleanTmp(24*time.Hour, now)
	if err != nil || !slices.Equal(removed, []string{"old"}) {
		t.Errorf("removed %v, %v", removed, err)
	}
}

// Apply reports a delay notice's id from a pending update (its intent),
// never from a final update that still carries it: a recipient given a
// delay notice long ago, then accepted, must not have that notice spooled
// again (ordering rule 8).
func TestApplyDelayed(t *testing.T) {
	env := testEnvelope(t)
	intent := JournalEntry{Set: []Update{{Index: 0, Rcpt: Rcpt{Addr: env.To[0], Code: 451, Delayed: "delay1"}}}}
	st := NewState(env)
	dsns, err := st.Apply([]JournalEntry{intent})
	if err != nil || !slices.Equal(dsns, []string{"delay1"}) || st.Rcpts[0].Status != Pending || st.Rcpts[0].Delayed != "delay1" {
		t.Fatalf("intent: dsns %v err %v state %+v", dsns, err, st.Rcpts[0])
	}
	done := JournalEntry{Set: []Update{{Index: 0, Rcpt: Rcpt{Addr: env.To[0], Status: Done, Code: 250, Delayed: "delay1",
		Action: "relayed", DSN: "ok1"}}}}
	dsns, err = st.Apply([]JournalEntry{done})
	if err != nil || !slices.Equal(dsns, []string{"ok1"}) {
		t.Errorf("done: dsns %v err %v", dsns, err)
	}
}
