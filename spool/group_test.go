package spool

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// TestDirSyncerCovers: 64 concurrent callers share far fewer syncs than
// 64, and every caller returns only after a sync that began after its
// call and ended before its return, with that sync's error.
func TestDirSyncerCovers(t *testing.T) {
	type span struct{ start, end time.Time }
	var mu sync.Mutex
	var syncs []span
	fail := errors.New("disk on fire")
	n := 0
	g := &DirSyncer{syncDir: func(string) error {
		s := span{start: time.Now()}
		time.Sleep(3 * time.Millisecond)
		s.end = time.Now()
		mu.Lock()
		syncs = append(syncs, s)
		n++
		err := error(nil)
		if n == 2 {
			err = fail
		}
		mu.Unlock()
		return err
	}}
	const callers = 64
	calls := make([]span, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			calls[i].start = time.Now()
			errs[i] = g.Sync("queue")
			calls[i].end = time.Now()
		}()
	}
	wg.Wait()
	if len(syncs) >= callers/2 {
		t.Errorf("%d syncs for %d callers: not shared", len(syncs), callers)
	}
	failed := 0
	for i, c := range calls {
		covered := false
		for _, s := range syncs {
			if !s.start.Before(c.start) && !s.end.After(c.end) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("caller %d (%v to %v) returned without a sync of its own time", i, c.start, c.end)
		}
		if errors.Is(errs[i], fail) {
			failed++
		}
	}
	if failed == 0 {
		t.Errorf("the failed sync's error reached no caller")
	}
}

// TestShareDirSyncs: messages committed concurrently through a spool
// that shares its directory syncs are all there, whole.
func TestShareDirSyncs(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.ShareDirSyncs()
	var wg sync.WaitGroup
	ids := make([]string, 32)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := testEnvelope(t)
			ids[i] = env.QueueID
			w, err := s.Create(env)
			if err != nil {
				t.Error(err)
				return
			}
			w.Write([]byte("Subject: group\r\n\r\nbody\r\n"))
			if err := w.Commit(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		m, err := Open(s.Path(QueueDir, id))
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		m.Close()
	}
}
