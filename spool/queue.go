package spool

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Areas of a spool root that belong to the sender (smtp-send). The
// receiver never reads or writes them.
const (
	// StateDir holds the per-message delivery state, state/<id>@<next>
	// (see StateName), and journals, state/<id>@journal (see
	// AppendJournal). A message with no state file was never tried. The
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

// InitQueue creates the sender's directories state/, failed/ and corrupt/
// (mode 0700) when they are missing, and checks each as New checks the
// root. It returns an error wrapping ErrUnsafe for an unsafe directory, or
// the wrapped error of stat or mkdir.
func (s *Spool) InitQueue() error {
	for _, sub := range []string{StateDir, FailedDir, CorruptDir} {
		if err := ensureDir(s.Path(sub)); err != nil {
			return err
		}
	}
	return nil
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
// owner. Names starting with '.' are ignored.
func (s *Spool) Scan() (*Scan, error) {
	qnames, err := readNames(s.Path(QueueDir))
	if err != nil {
		return nil, err
	}
	snames, err := readNames(s.Path(StateDir))
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
		id, next, journal, ok := parseStateName(n)
		if !ok {
			continue
		}
		i, ok := idx[id]
		if !ok {
			sc.Orphans = append(sc.Orphans, n)
			continue
		}
		e := &sc.Entries[i]
		if journal {
			e.Journal = true
			continue
		}
		e.States = append(e.States, n)
		if len(e.States) == 1 || next.Before(e.Next) {
			e.Next = next
		}
	}
	return sc, nil
}

// RemoveOrphan removes state/<name> found by Scan as an orphan.
func (s *Spool) RemoveOrphan(name string) error {
	if err := os.Remove(s.Path(StateDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// OpenMessage opens queue/<id> (see Open).
func (s *Spool) OpenMessage(id string) (*Message, error) {
	return Open(s.Path(QueueDir, id))
}

// Remove deletes a message whose recipients are all done: first queue/<id>,
// made durable by an fsync of queue/ (from then on the message is
// finished, whatever else a crash leaves), then its state files and
// journal, which a later Scan would otherwise report as orphans.
func (s *Spool) Remove(id string, states []string) error {
	if err := os.Remove(s.Path(QueueDir, id)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := SyncDir(s.Path(QueueDir)); err != nil {
		return err
	}
	return s.removeStates(id, states)
}

// MoveFailed moves a finished message with failed recipients out of the
// queue: its final state, bounded as by WriteState, is written to
// failed/<id>@state, then queue/<id>
// is renamed to failed/<id> and both directories are fsync'd; its state
// files and journal are removed last.
func (s *Spool) MoveFailed(id string, st *State, states []string) error {
	b, err := st.encode()
	if err != nil {
		return err
	}
	if err := s.writeFile(s.Path(FailedDir, id+failedSuffix), b); err != nil {
		return err
	}
	if err := os.Rename(s.Path(QueueDir, id), s.Path(FailedDir, id)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := SyncDir(s.Path(FailedDir)); err != nil {
		return err
	}
	if err := SyncDir(s.Path(QueueDir)); err != nil {
		return err
	}
	return s.removeStates(id, states)
}

// ReadFailedState reads failed/<id>@state.
func (s *Spool) ReadFailedState(id string) (*State, error) {
	return readState(s.Path(FailedDir, id+failedSuffix))
}

// MoveCorrupt moves queue/<id> to corrupt/<id> unchanged, then its state
// files and journal beside it, and fsyncs the directories. The message file
// moves first: a crash in between must not leave a message without its
// state in queue/, where it would look new and be sent again to every
// recipient.
func (s *Spool) MoveCorrupt(id string, states []string) error {
	if err := os.Rename(s.Path(QueueDir, id), s.Path(CorruptDir, id)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := SyncDir(s.Path(QueueDir)); err != nil {
		return err
	}
	for _, n := range append(states[:len(states):len(states)], JournalName(id)) {
		err := os.Rename(s.Path(StateDir, n), s.Path(CorruptDir, n))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: %w", err)
		}
	}
	if err := SyncDir(s.Path(CorruptDir)); err != nil {
		return err
	}
	return SyncDir(s.Path(StateDir))
}

// List returns the names in area (FailedDir or CorruptDir) that are
// message files, not state files or journals.
func (s *Spool) List(area string) ([]string, error) {
	names, err := readNames(s.Path(area))
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

func (s *Spool) removeStates(id string, states []string) error {
	var first error
	for _, n := range append(states[:len(states):len(states)], JournalName(id)) {
		if err := os.Remove(s.Path(StateDir, n)); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = fmt.Errorf("spool: %w", err)
		}
	}
	return first
}

// readNames returns the names in dir, skipping those that start with '.'.
func readNames(dir string) ([]string, error) {
	d, err := openDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", dir, err)
	}
	out := names[:0]
	for _, n := range names {
		if !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out, nil
}
