// Package queue owns smtp-send's private state beside the spool: the
// delivery state of each message (state/), its journal, the run lock and
// the message locks, the listing of what is due, the messages set aside
// in failed/ and corrupt/, and the cleaning of tmp/. The message files
// themselves, and their format, belong to package spool.
//
// A run opens each message it works on as an Item, which knows its own
// files and offers the steps that change them: RecordAccepted, Bounce,
// Delay, Settle, SetCorrupt. Their order of writes is what makes a run killed at
// any instant lose nothing; it is written down, with why, in item.go, the
// one file that writes, renames or removes the queue's files (but for
// CleanTmp, which removes what killed processes left in tmp/).
//
// The package knows nothing of SMTP: package send decides what happened to
// each recipient and what a notification says; the queue makes it durable.
package queue

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Areas of a spool root that belong to the sender (smtp-send). The
// receiver never reads or writes them.
const (
	// StateDir holds the per-message delivery state, state/<id>@<next>
	// (see StateName), and journals, state/<id>@journal (see
	// JournalName). A message with no state file was never tried. The
	// run lock is a flock on this directory.
	StateDir = "state"
	// FailedDir holds messages that left the queue with at least one
	// failed recipient, failed/<id>, beside their final state,
	// failed/<id>@state, for inspection. Nothing reads them again.
	FailedDir = "failed"
	// CorruptDir holds message files that did not parse, and their state
	// files, moved there unchanged. They are never bounced or deleted.
	CorruptDir = "corrupt"
)

// Queue is the sender's view of one spool. Set the optional fields before
// the first Item is opened; they are not changed afterwards.
type Queue struct {
	sp *spool.Spool

	// Notify writes the body of a delivery status notification (RFC
	// 3464) for the failed recipients n.Rcpts; the queue spools it, from
	// the null sender to the original sender (see Item.Bounce). Nil
	// makes every bounce fail with an error.
	Notify func(w io.Writer, n *Notice) error
	// Hostname is our name, the HELO recorded in the envelope of the
	// notifications the queue spools.
	Hostname string
	// Hook is called after each step of the crash ordering (see Step),
	// for tests that kill the process there; nil skips it.
	Hook func(step Step, id string)
	// Log receives the queue's own events (a torn journal, a
	// notification spooled); nil discards them.
	Log *slog.Logger
}

// Open returns the queue of sp. It creates the sender's directories
// state/, failed/ and corrupt/ (mode 0700) when they are missing, and
// checks each as spool.New checks the root. It returns an error wrapping
// spool.ErrUnsafe for an unsafe directory, or the wrapped error of stat or
// mkdir.
func Open(sp *spool.Spool) (*Queue, error) {
	if err := sp.MakeDirs(StateDir, FailedDir, CorruptDir); err != nil {
		return nil, err
	}
	return &Queue{sp: sp}, nil
}

// Spool returns the spool the queue belongs to.
func (q *Queue) Spool() *spool.Spool { return q.sp }

func (q *Queue) log() *slog.Logger {
	if q.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return q.Log
}

// ErrLocked is wrapped by the errors of LockRun, LockMessage and Open when
// another process holds the lock. Locks are flock(2) locks on open files:
// the kernel drops them when the holder exits or is killed, so no lock
// ever outlives its process and there is no stale lock file to clean up.
var ErrLocked = errors.New("queue: locked by another process")

// RunLock is the sender's exclusive lock on a spool: at most one delivery
// run per spool at a time. It is a flock on the state/ directory itself,
// so there is no lock file at all.
type RunLock struct {
	f *os.File
}

// LockRun takes the run lock without waiting. It returns an error wrapping
// ErrLocked when another run holds it, or the error of opening state/.
func (q *Queue) LockRun() (*RunLock, error) {
	f, err := spool.OpenDir(q.sp.Path(StateDir))
	if err != nil {
		return nil, fmt.Errorf("queue: run lock: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("queue: run lock: %w", err)
	}
	return &RunLock{f: f}, nil
}

// Unlock releases the run lock, returning the error of close(2). Exiting
// releases it too.
func (l *RunLock) Unlock() error {
	return l.f.Close()
}

// LockMessage takes a non-blocking flock on an open message file (see
// spool.Message.File): exclusive for a run that delivers or moves the
// message, shared for a reader such as List. It returns an error wrapping
// ErrLocked when a conflicting lock is held. The lock is released when
// the file is closed.
func LockMessage(f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := flock(f, how); err != nil {
		return fmt.Errorf("queue: lock %s: %w", f.Name(), err)
	}
	return nil
}

// UnlockMessage releases a lock taken by LockMessage before the file is
// closed. It returns the error of flock(2).
func UnlockMessage(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrLocked
		default:
			return err
		}
	}
}

// Entry is one message file in queue/ as Scan found it, with the names of
// its files in state/.
type Entry struct {
	// ID is the file name in queue/, normally the queue id.
	ID string
	// States are its state file names (normally none or one).
	States []string
	// Next is the earliest next attempt among States; zero when there is
	// no state file (the message was never tried and is due now).
	Next time.Time
	// Journal is true when state/<id>@journal exists.
	Journal bool
	// Held is true when state/<id>@hold exists: the administrator held
	// the message (Queue.Hold); runs leave it alone until Release.
	Held bool
}

// Scan is one listing of queue/ and state/.
type Scan struct {
	// Entries has one element per file in queue/, in directory order.
	Entries []Entry
	// Orphans are names in state/ whose message is no longer in queue/:
	// left by a crash after the message was removed or moved.
	Orphans []string
}

// Scan lists queue/ and state/ without opening any file: two directory
// reads, whatever the queue's length. queue/ is read first, so a message
// arriving meanwhile has no state and is never mistaken for an orphan's
// owner. Names starting with '.' are ignored. It returns the wrapped error
// of reading queue/ or state/.
func (q *Queue) Scan() (*Scan, error) {
	qnames, err := readNames(q.sp.Path(spool.QueueDir))
	if err != nil {
		return nil, err
	}
	snames, err := readNames(q.sp.Path(StateDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	sc := &Scan{Entries: make([]Entry, 0, len(qnames))}
	idx := make(map[string]int, len(qnames))
	for _, n := range qnames {
		idx[n] = len(sc.Entries)
		sc.Entries = append(sc.Entries, Entry{ID: n})
	}
	for _, n := range snames {
		id, next, kind, ok := parseStateName(n)
		if !ok {
			continue
		}
		i, ok := idx[id]
		if !ok {
			sc.Orphans = append(sc.Orphans, n)
			continue
		}
		e := &sc.Entries[i]
		switch kind {
		case kindJournal:
			e.Journal = true
			continue
		case kindHold:
			e.Held = true
			continue
		}
		e.States = append(e.States, n)
		if len(e.States) == 1 || next.Before(e.Next) {
			e.Next = next
		}
	}
	return sc, nil
}

// Area returns the names in area (FailedDir or CorruptDir) that are
// message files, not state files or journals. It returns the wrapped
// error of reading the directory.
func (q *Queue) Area(area string) ([]string, error) {
	names, err := readNames(q.sp.Path(area))
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if !strings.Contains(n, nameSep) {
			out = append(out, n)
		}
	}
	return out, nil
}

// CleanTmp removes regular files in tmp/ last modified more than maxAge
// before now and returns their names. tmp/ holds files being written (a
// receiver's message, a sender's state); one older than any session's
// deadline was left by a killed process. This is the one place where the
// sender looks at a file's mtime: a temporary file has no other clock.
// Errors on single files are returned joined, after the other files were
// handled.
func (q *Queue) CleanTmp(maxAge time.Duration, now time.Time) ([]string, error) {
	dir := q.sp.Path(spool.TmpDir)
	d, err := spool.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // renamed into place meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if now.Sub(fi.ModTime()) <= maxAge {
			continue
		}
		if err := os.Remove(q.sp.Path(spool.TmpDir, e.Name())); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("queue: %w", err))
			}
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// readNames returns the names in dir, skipping those that start with '.'.
func readNames(dir string) ([]string, error) {
	names, err := readAll(dir)
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out, nil
}
