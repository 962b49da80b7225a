package queue

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Delete takes a deferred message out of queue/ with its state file,
// message first (rule 3), and returns its envelope and state; a message
// another process holds is ErrLocked and stays; one with a journal left
// by a crash is ErrJournal and stays, journal and all; one gone is
// fs.ErrNotExist.
func TestDelete(t *testing.T) {
	q := newQueue(t)
	var steps []string
	q.Hook = func(s Step, id string) {
		steps = append(steps, s.String())
		if s == StepFinished {
			if _, err := os.Stat(q.sp.Path(spool.QueueDir, id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("message still in queue/ at %s: %v", s, err)
			}
		}
	}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	env := testEnvelope(t)
	commit(t, q, env, "x\r\n")
	it := openItem(t, q, &Entry{ID: env.QueueID})
	it.State.Rcpts[0] = Rcpt{Addr: env.To[0], Status: Done, Code: 250}
	it.State.Next = now.Add(time.Hour)
	if left, err := it.Settle(); err != nil || left != Stayed {
		t.Fatalf("Settle: %q %v", left, err)
	}
	it.Close()
	steps = nil

	entry := func(id string) *Entry {
		sc, err := q.Scan()
		must(t, err)
		for i := range sc.Entries {
			if sc.Entries[i].ID == id {
				return &sc.Entries[i]
			}
		}
		t.Fatalf("%s not in queue/", id)
		return nil
	}
	e := entry(env.QueueID)
	if len(e.States) != 1 {
		t.Fatalf("states %v", e.States)
	}

	// Held by another process (a run delivering it).
	held, err := q.Open(e)
	must(t, err)
	if _, _, err := q.Delete(e, now); !errors.Is(err, ErrLocked) {
		t.Errorf("Delete of a held message: %v", err)
	}
	held.Close()

	got, st, err := q.Delete(e, now)
	if err != nil || got.QueueID != env.QueueID || got.From != env.From || len(st.Pending()) != 1 {
		t.Fatalf("Delete: %+v %+v %v", got, st, err)
	}
	if ents, _ := os.ReadDir(q.sp.Path(spool.QueueDir)); len(ents) != 0 {
		t.Errorf("queue/ %v", ents)
	}
	if ents, _ := os.ReadDir(q.sp.Path(StateDir)); len(ents) != 0 {
		t.Errorf("state/ %v", ents)
	}
	if !slices.Equal(steps, []string{"finished"}) {
		t.Errorf("steps %v", steps)
	}
	if _, _, err := q.Delete(e, now); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second Delete: %v", err)
	}

	// A journal left by a crash, seen by the Scan or appearing after it.
	env2 := testEnvelope(t)
	commit(t, q, env2, "y\r\n")
	it = openItem(t, q, &Entry{ID: env2.QueueID})
	must(t, it.RecordAccepted(now, []Update{{Index: 0, Rcpt: Rcpt{Addr: env2.To[0], Status: Done, Code: 250}}}))
	it.Close()
	e2 := entry(env2.QueueID)
	if _, _, err := q.Delete(e2, now); !errors.Is(err, ErrJournal) {
		t.Errorf("Delete with a journal: %v", err)
	}
	stale := &Entry{ID: env2.QueueID}
	if _, _, err := q.Delete(stale, now); !errors.Is(err, ErrJournal) {
		t.Errorf("Delete with a journal the Scan missed: %v", err)
	}
	if _, err := os.Stat(q.sp.Path(spool.QueueDir, env2.QueueID)); err != nil {
		t.Errorf("message with a journal gone: %v", err)
	}
	if _, err := os.Stat(q.sp.Path(StateDir, JournalName(env2.QueueID))); err != nil {
		t.Errorf("journal gone: %v", err)
	}
}

// Hold makes state/<id>@hold, which Scan and Walk report (Held, status
// held) and which leaves the state alone; holding twice is ErrHeld, and
// a message not in queue/ fs.ErrNotExist. Release removes the marker
// (twice: fs.ErrNotExist). A message that leaves the queue takes its
// marker with it; a marker left alone is an orphan to Scan.
func TestHold(t *testing.T) {
	q := newQueue(t)
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	env := testEnvelope(t)
	commit(t, q, env, "x\r\n")
	id := env.QueueID
	if err := q.Hold("20261121T000000.0000000000000000"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Hold of a message not queued: %v", err)
	}
	must(t, q.Hold(id))
	if err := q.Hold(id); !errors.Is(err, ErrHeld) {
		t.Errorf("second Hold: %v", err)
	}
	sc, err := q.Scan()
	must(t, err)
	if len(sc.Entries) != 1 || !sc.Entries[0].Held || len(sc.Entries[0].States) != 0 || sc.Entries[0].Journal || len(sc.Orphans) != 0 {
		t.Fatalf("Scan: %+v", sc)
	}
	list, err := q.List(now, false)
	must(t, err)
	if len(list) != 1 || list[0].Status != ListHeld {
		t.Errorf("List: %+v", list)
	}
	must(t, q.Release(id))
	if err := q.Release(id); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second Release: %v", err)
	}
	sc, err = q.Scan()
	must(t, err)
	if sc.Entries[0].Held {
		t.Errorf("still held after Release")
	}

	// Deleted while held: the marker goes too.
	must(t, q.Hold(id))
	sc, err = q.Scan()
	must(t, err)
	if _, _, err := q.Delete(&sc.Entries[0], now); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(q.sp.Path(StateDir)); len(ents) != 0 {
		t.Errorf("state/ after Delete of a held message: %v", ents)
	}

	// A marker whose message is gone is an orphan.
	must(t, os.WriteFile(q.sp.Path(StateDir, HoldName(id)), nil, 0o600))
	sc, err = q.Scan()
	must(t, err)
	if !slices.Equal(sc.Orphans, []string{HoldName(id)}) {
		t.Errorf("orphans %v", sc.Orphans)
	}
}
