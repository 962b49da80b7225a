package queue

import (
	"cmp"
	"errors"
	"io/fs"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smtp-stdio/smtp-stdio/ascii"
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
	// Ret and EnvID are the message's DSN parameters RET and ENVID (RFC
	// 3461 sections 4.3 and 4.4), and DSN its recipients' NOTIFY and
	// ORCPT, in Rcpts' order; empty when the sender gave none.
	Ret   string    `json:"ret,omitempty"`
	EnvID string    `json:"envid,omitempty"`
	DSN   []ListDSN `json:"dsn,omitempty"`
}

// ListDSN is one recipient's DSN parameters in a ListEntry (RFC 3461
// sections 4.1 and 4.2): NOTIFY, and ORCPT as "rfc822;addr".
type ListDSN struct {
	Notify string `json:"notify,omitempty"`
	ORcpt  string `json:"orcpt,omitempty"`
}

// ListFilter selects the messages Walk shows. Its zero value selects
// every message.
type ListFilter struct {
	// From selects messages whose sender contains it, in ASCII case
	// folding; "<>" selects the null sender only.
	From string
	// To selects messages with a recipient that contains it, as From.
	// The messages are shown with all their recipients.
	To string
	// OlderThan selects messages that arrived more than this long
	// before now.
	OlderThan time.Duration
}

// zero reports whether f selects every message.
func (f *ListFilter) zero() bool { return *f == ListFilter{} }

// tooYoung reports, from a file name alone, that the message cannot be
// older than f.OlderThan: a queue id begins with its arrival second, so
// the message arrived no earlier than that second. It spares opening
// the files a filter on age would drop.
func (f *ListFilter) tooYoung(name string, now time.Time) bool {
	t, ok := ArrivalSecond(name)
	return f.OlderThan > 0 && ok && now.Sub(t) <= f.OlderThan
}

// match reports whether f selects le.
func (f *ListFilter) match(le *ListEntry, now time.Time) bool {
	if f.OlderThan > 0 {
		arr := le.Arrival
		if arr.IsZero() {
			arr, _ = ArrivalSecond(le.ID)
		}
		if arr.IsZero() || now.Sub(arr) <= f.OlderThan {
			return false
		}
	}
	if f.From != "" && !addrMatch(le.From, f.From) {
		return false
	}
	if f.To != "" {
		return slices.ContainsFunc(le.Rcpts, func(r Rcpt) bool { return addrMatch(r.Addr, f.To) })
	}
	return true
}

// addrMatch: addr contains pat, in ASCII case folding (a domain's case
// does not matter, and a local part's nearly never does); "<>" is the
// null sender, "".
func addrMatch(addr, pat string) bool {
	if pat == "<>" {
		return addr == ""
	}
	return strings.Contains(ascii.Lower(addr), ascii.Lower(pat))
}

// List returns Walk's entries as one slice: the whole queue in memory,
// for tests and small queues. Errors are Walk's.
func (q *Queue) List(now time.Time, all bool) ([]ListEntry, error) {
	var out []ListEntry
	err := q.Walk(now, all, ListFilter{}, func(le *ListEntry) error {
		out = append(out, *le)
		return nil
	})
	return out, err
}

// Walk reads the queue without the run lock (a run may be going on) and
// calls fn with each message in queue/, with its state, ordered by
// arrival; with all, also those in failed/ and corrupt/; only those f
// selects. It takes each message's lock shared and at once lets it go,
// only to tell whether a run is delivering it. A message that cannot be
// read is shown with its error.
//
// Walk streams: it holds the file names of queue/ and state/ (tens of
// bytes a message) and a bounded window of messages, never the whole
// list, so its memory stays flat with 100,000 messages. The order comes
// from the names: a queue id begins with its arrival second
// (spool.NewQueueID), so sorted ids are in arrival order to the second;
// the messages of one second are then put in arrival order (to the
// nanosecond, then by id), in batches of up to maxSecond messages; a name
// that is not a queue id stands alone where it sorts. Messages are read
// by several goroutines at once (most of the cost is system calls), and
// handed to fn in order. fn must not keep the *ListEntry it is given.
//
// Walk returns fn's first error, which stops it, or the error of reading
// a directory.
func (q *Queue) Walk(now time.Time, all bool, f ListFilter, fn func(*ListEntry) error) error {
	// queue/ first, state/ second: a message arriving meanwhile has no
	// state yet, so none is mistaken for another's (as Scan).
	qnames, err := readNames(q.sp.Path(spool.QueueDir))
	if err != nil {
		return err
	}
	snames, err := readNames(q.sp.Path(StateDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Names that are not ours (temporary, foreign) are left out, then
	// the rest sorted by their message's id, to be merged with queue/.
	snames = slices.DeleteFunc(snames, func(n string) bool {
		_, _, _, ok := parseStateName(n)
		return !ok
	})
	slices.SortFunc(snames, func(a, b string) int {
		return cmp.Or(cmp.Compare(stateID(a), stateID(b)), cmp.Compare(a, b))
	})
	slices.Sort(qnames)
	areas := []areaNames{{area: spool.QueueDir, names: qnames}}
	if all {
		for _, area := range []string{FailedDir, CorruptDir} {
			names, err := q.Area(area)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			slices.Sort(names)
			areas = append(areas, areaNames{area: area, names: names})
		}
	}

	// The producer hands each message to the workers and, in order, to
	// the consumer below, which waits for each one's entry.
	workers := min(max(4, 2*runtime.GOMAXPROCS(0)), 16)
	jobs := make(chan *listJob)
	order := make(chan *listJob, 4*workers)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if j.ref.area == spool.QueueDir {
					j.out <- q.listQueued(&j.e, now)
				} else {
					j.out <- q.listArea(j.ref.area, j.ref.name, now)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		defer close(order)
		st := stateNames(snames)
		for {
			ref, ok := nextRef(areas)
			if !ok {
				return
			}
			if f.tooYoung(ref.name, now) {
				continue
			}
			j := &listJob{ref: ref, out: make(chan ListEntry, 1)}
			if ref.area == spool.QueueDir {
				j.e = st.of(ref.name)
			}
			select {
			case order <- j:
			case <-done:
				return
			}
			select {
			case jobs <- j:
			case <-done:
				return
			}
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
	}()

	var group []ListEntry // one arrival second's, selected
	flush := func() error {
		slices.SortStableFunc(group, func(a, b ListEntry) int {
			return cmp.Or(a.Arrival.Compare(b.Arrival), cmp.Compare(a.ID, b.ID))
		})
		for i := range group {
			if err := fn(&group[i]); err != nil {
				return err
			}
		}
		clear(group)
		group = group[:0]
		return nil
	}
	key := ""
	for j := range order {
		le := <-j.out
		if k := groupKey(le.ID); k != key || len(group) == maxSecond {
			if err := flush(); err != nil {
				return err
			}
			key = k
		}
		if f.zero() || f.match(&le, now) {
			group = append(group, le)
		}
	}
	return flush()
}

// maxSecond bounds the messages of one arrival second that Walk holds to
// put them in order: a burst of more is shown in batches of this many,
// each in arrival order.
const maxSecond = 1000

// listJob is one message for Walk's workers: its file, its names in
// state/, and where its entry goes.
type listJob struct {
	ref listRef
	e   Entry
	out chan ListEntry // buffered: a worker never waits
}

// areaNames are the sorted names of one area still to be walked.
type areaNames struct {
	area  string
	names []string
}

// listRef is one message file to list: its name and area.
type listRef struct {
	name, area string
}

// nextRef takes the smallest name left in areas (a merge of their
// sorted names), false when none is left.
func nextRef(areas []areaNames) (listRef, bool) {
	best := -1
	for i := range areas {
		if len(areas[i].names) > 0 && (best < 0 || areas[i].names[0] < areas[best].names[0]) {
			best = i
		}
	}
	if best < 0 {
		return listRef{}, false
	}
	a := &areas[best]
	ref := listRef{name: a.names[0], area: a.area}
	a.names[0] = "" // let the collector have what was shown
	a.names = a.names[1:]
	return ref, true
}

// groupKey is the arrival second at the start of a queue id, or the
// whole name when it is not one.
func groupKey(name string) string {
	if _, ok := ArrivalSecond(name); ok {
		return name[:len(idTimeLayout)]
	}
	return name
}

// stateID is the message id of a name in state/.
func stateID(name string) string {
	id, _, _ := strings.Cut(name, nameSep)
	return id
}

// stateNames are the names in state/ not yet matched to a message,
// sorted by message id.
type stateNames []string

// of returns the Entry of message id with its names in state/, and drops
// the names up to id: ids are asked for in increasing order, and the
// names of a message no longer in queue/ are skipped.
func (s *stateNames) of(id string) Entry {
	e := Entry{ID: id}
	names := *s
	i, _ := slices.BinarySearchFunc(names, id, func(n, id string) int { return cmp.Compare(stateID(n), id) })
	for ; i < len(names) && stateID(names[i]) == id; i++ {
		n := names[i]
		if strings.HasSuffix(n, journalSuffix) {
			e.Journal = true
		} else {
			e.States = append(e.States, n)
		}
	}
	clear(names[:i])
	*s = names[i:]
	return e
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
	le.Ret, le.EnvID = m.Ret, m.EnvID
	if len(m.DSN) > 0 {
		le.DSN = make([]ListDSN, len(m.To))
		for i := range m.To {
			d := m.RcptDSN(i)
			le.DSN[i] = ListDSN{Notify: d.Notify, ORcpt: d.ORcpt}
		}
	}
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
