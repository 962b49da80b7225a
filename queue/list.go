package queue

import (
	"cmp"
	"errors"
	"io/fs"
	"slices"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Message statuses shown by List.
const (
	ListNew        = "new"        // never tried: due now
	ListDeferred   = "deferred"   // tried; waits for its next attempt
	ListActive     = "active"     // locked by a delivery run right now
	ListUnreadable = "unreadable" // could not be opened (skipped by runs), or not a regular file (set aside by the next run)
	ListCorrupt    = "corrupt"    // does not parse (in queue/ until the next run moves it)
	ListFailed     = "failed"     // in failed/ (shown with all)
)

// ListEntry is one message as smtp-send --list shows it (and --list
// --json, one object per line).
type ListEntry struct {
	ID       string    `json:"id"`
	Area     string    `json:"area"`
	Status   string    `json:"status"`
	Arrival  time.Time `json:"arrival,omitzero"`
	Age      string    `json:"age,omitempty"`
	Size     int64     `json:"size"`
	From     string    `json:"from"`
	Attempts int       `json:"attempts"`
	Next     time.Time `json:"next_attempt,omitzero"`
	Error    string    `json:"error,omitempty"`
	Rcpts    []Rcpt    `json:"recipients"`
}

// List reads the queue without the run lock (a run may be going on):
// every message in queue/, with its state, ordered by arrival; with all,
// also failed/ and corrupt/. It takes each message's lock shared and at
// once lets it go, only to tell whether a run is delivering it. A message
// that cannot be read is listed with its error; List itself returns only
// the error of reading a directory.
func (q *Queue) List(now time.Time, all bool) ([]ListEntry, error) {
	sc, err := q.Scan()
	if err != nil {
		return nil, err
	}
	out := make([]ListEntry, 0, len(sc.Entries))
	for i := range sc.Entries {
		out = append(out, q.listQueued(&sc.Entries[i], now))
	}
	if all {
		for _, area := range []string{FailedDir, CorruptDir} {
			names, err := q.Area(area)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			for _, n := range names {
				out = append(out, q.listArea(area, n, now))
			}
		}
	}
	slices.SortFunc(out, func(a, b ListEntry) int {
		return cmp.Or(a.Arrival.Compare(b.Arrival), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (q *Queue) listQueued(e *Entry, now time.Time) ListEntry {
	le := ListEntry{ID: e.ID, Area: spool.QueueDir, Status: ListNew}
	m, err := q.sp.OpenMessage(e.ID)
	if err != nil {
		le.Status, le.Error = ListUnreadable, err.Error()
		if errors.Is(err, spool.ErrCorrupt) {
			le.Status = ListCorrupt
		}
		return le
	}
	defer m.Close()
	fill(&le, m, now)
	if err := LockMessage(m.File(), false); err != nil {
		le.Status = ListActive
	} else {
		UnlockMessage(m.File())
	}
	if len(e.States) == 0 && !e.Journal {
		return le
	}
	st := NewState(&m.Envelope)
	if len(e.States) > 0 {
		if st, err = q.LoadState(e.States); err != nil {
			// Replaced by a run meanwhile, or damaged, or not a
			// regular file (the next run sets the message aside).
			le.Error = err.Error()
			if errors.Is(err, spool.ErrNotRegular) {
				le.Status = ListUnreadable
			}
			return le
		}
		if le.Status == ListNew {
			le.Status = ListDeferred
		}
	}
	if e.Journal {
		// Outcomes a killed run recorded; the next run folds them in.
		if entries, _, err := q.ReadJournal(e.ID); err == nil {
			st.Apply(entries)
		}
	}
	le.Attempts, le.Next, le.Rcpts = st.Attempts, st.Next, st.Rcpts
	return le
}

func (q *Queue) listArea(area, name string, now time.Time) ListEntry {
	le := ListEntry{ID: name, Area: area, Status: area}
	m, err := spool.Open(q.sp.Path(area, name))
	if err != nil {
		le.Error = err.Error()
		return le
	}
	defer m.Close()
	fill(&le, m, now)
	if area == FailedDir {
		if st, err := q.ReadFailedState(name); err == nil {
			le.Attempts, le.Rcpts = st.Attempts, st.Rcpts
		}
	}
	return le
}

func fill(le *ListEntry, m *spool.Message, now time.Time) {
	le.Arrival, le.Size, le.From = m.Received, m.Size, m.From
	le.Age = now.Sub(m.Received).Truncate(time.Second).String()
	le.Rcpts = NewState(&m.Envelope).Rcpts
}

// ArrivalSecond returns the arrival time, to the second, that a queue id
// made by spool.NewQueueID begins with ("20261121T111825.…"), and false
// for a name that does not begin so.
func ArrivalSecond(id string) (time.Time, bool) {
	if len(id) < len(idTimeLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(idTimeLayout, id[:len(idTimeLayout)])
	return t, err == nil
}

// idTimeLayout is the arrival second at the start of a queue id.
const idTimeLayout = "20060102T150405"
