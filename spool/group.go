package spool

import "sync"

// Group commit: in a process that serves many sessions, messages that
// are committed at the same time share the fsync of the queue
// directory. Each file is still fsync'd on its own (renameio, before its
// rename, concurrently: the file system's journal merges them); the
// directory fsync that makes the renames durable is run once for every
// commit waiting for it, and each commit returns only after a directory
// fsync that began after its rename. No 250 can be sent before the sync
// that covers its message.

// DirSyncer shares fsyncs of one directory between concurrent callers.
// The zero value is ready; use one per directory.
type DirSyncer struct {
	// syncDir is SyncDir, or a stand-in in tests.
	syncDir func(dir string) error

	mu      sync.Mutex
	busy    bool          // a leader is syncing
	waiting []*syncWaiter // arrived while it was
}

type syncWaiter struct {
	err error
	// ch gets one value: false when a sync that covers this waiter is
	// done (err set), true when this waiter is to lead the next one.
	ch chan bool
}

// Sync fsyncs dir, or waits for a sync of it that begins after this
// call: the first caller syncs at once; callers that arrive meanwhile
// wait and are all covered by one further sync, run by the first of
// them. It returns the error of the sync that covered the call
// (SyncDir's).
func (g *DirSyncer) Sync(dir string) error {
	me := &syncWaiter{ch: make(chan bool, 1)}
	g.mu.Lock()
	if g.busy {
		g.waiting = append(g.waiting, me)
		g.mu.Unlock()
		if lead := <-me.ch; !lead {
			return me.err
		}
		g.mu.Lock() // the previous leader handed over; still busy
	}
	g.busy = true
	batch := g.waiting
	g.waiting = nil
	g.mu.Unlock()

	do := g.syncDir
	if do == nil {
		do = SyncDir
	}
	err := do(dir)
	for _, w := range batch {
		if w != me {
			w.err = err
			w.ch <- false
		}
	}

	g.mu.Lock()
	if len(g.waiting) > 0 {
		next := g.waiting[0]
		g.mu.Unlock()
		next.ch <- true
	} else {
		g.busy = false
		g.mu.Unlock()
	}
	return err
}

// ShareDirSyncs makes the Writers that s creates from now on share the
// fsyncs of the queue directory through one DirSyncer (group commit),
// for a process that commits several messages at once. It must be
// called before they are created.
func (s *Spool) ShareDirSyncs() { s.dirSync = &DirSyncer{} }
