package queue

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

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
	ListHeld       = "held"       // held by the administrator (Queue.Hold): no run delivers it
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
	// ID selects the message with this queue id (its file name) only:
	// smtp-send --show. The other files are not opened.
	ID string
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
	if f.ID != "" && le.ID != f.ID {
		return false
	}
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
// selects. It takes each message's lock shared, without waiting, only to
// tell whether a run is delivering it, and lets it go at once by closing
// the file. A message that cannot be read is shown with its error.
//
// Walk streams: it holds the file names of queue/ and state/ (tens of
// bytes a message) and a bounded window of messages, never the whole
// list, so its memory stays flat with 100,000 messages. The order comes
// from the names: a queue id begins with its arrival second
// (spool.NewQueueID), so sorted ids are in arrival order to the second;
// the messages of one second are then put in arrival order (to the
// nanosecond, then by id), in batches of up to maxSecond messages; a name
// that is not a queue id stands alone where it sorts. Messages are read
// by several goroutines at once (most of the cost is system calls), a
// batch of listBatch consecutive messages each, and handed to fn in
// order. fn must not keep the *ListEntry it is given.
//
// The files of queue/ and state/ are read as spool.Peek and
// spool.ReadFileAt read them: relative to their open directory, typed by
// the directory listing (a name listed as anything but a regular file is
// never opened), checked by fstat, with one read each when they fit in
// spool.PeekBufSize bytes: 5 system calls a message (openat, fstat,
// pread, flock, close) and 4 a state file, where spool.Open with
// LockMessage and UnlockMessage made 9 (lstat, openat, epoll_ctl, read,
// fstat twice, flock twice, close) and ReadState 7.
//
// Walk returns fn's first error, which stops it, or the error of reading
// a directory.
func (q *Queue) Walk(now time.Time, all bool, f ListFilter, fn func(*ListEntry) error) error {
	// queue/ first, state/ second: a message arriving meanwhile has no
	// state yet, so none is mistaken for another's (as Scan).
	qd, err := openListDir(q.sp.Path(spool.QueueDir))
	if err != nil {
		return err
	}
	defer qd.close()
	sd, err := openListDir(q.sp.Path(StateDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	defer sd.close()
	qnames := qd.names
	qd.names = nil
	var snames []string
	if sd != nil {
		snames = sd.names
		sd.names = nil
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

	// The producer hands each batch of messages to the workers and, in
	// order, to the consumer below, which waits for each one's entries.
	workers := min(max(4, 2*runtime.GOMAXPROCS(0)), 16)
	jobs := make(chan *listBatch)
	order := make(chan *listBatch, workers)
	free := make(chan *listBatch, 2*workers+2) // batches to reuse
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, spool.PeekBufSize)
			for b := range jobs {
				for i := range b.jobs {
					j := &b.jobs[i]
					if j.ref.area == spool.QueueDir {
						b.out[i] = q.listQueued(qd, sd, &j.e, now, buf)
						if st := &b.out[i].Status; j.e.Held && (*st == ListNew || *st == ListDeferred) {
							*st = ListHeld
						}
					} else {
						b.out[i] = q.listArea(j.ref.area, j.ref.name, now)
					}
				}
				b.done <- struct{}{}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		defer close(order)
		st := stateNames(snames)
		var b *listBatch
		send := func() bool {
			select {
			case order <- b:
			case <-done:
				return false
			}
			select {
			case jobs <- b:
			case <-done:
				return false
			}
			b = nil
			return true
		}
		for {
			ref, ok := nextRef(areas)
			if !ok {
				break
			}
			if f.tooYoung(ref.name, now) || f.ID != "" && ref.name != f.ID {
				continue
			}
			if b == nil {
				select {
				case b = <-free:
				default:
					b = &listBatch{done: make(chan struct{}, 1)}
				}
			}
			j := listJob{ref: ref}
			if ref.area == spool.QueueDir {
				j.e = st.of(ref.name)
			}
			b.jobs = append(b.jobs, j)
			if len(b.jobs) == listBatchSize && !send() {
				return
			}
		}
		if b != nil {
			send()
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
	}()

	var group []ListEntry // one arrival second's, selected
	var byArrival []int   // group's indexes, sorted (moving ints, not entries)
	flush := func() error {
		byArrival = byArrival[:0]
		for i := range group {
			byArrival = append(byArrival, i)
		}
		slices.SortStableFunc(byArrival, func(i, j int) int {
			a, b := &group[i], &group[j]
			return cmp.Or(a.Arrival.Compare(b.Arrival), cmp.Compare(a.ID, b.ID))
		})
		for _, i := range byArrival {
			if err := fn(&group[i]); err != nil {
				return err
			}
		}
		clear(group)
		group = group[:0]
		return nil
	}
	key := ""
	for b := range order {
		<-b.done
		for i := range b.out[:len(b.jobs)] {
			le := &b.out[i]
			if k := groupKey(le.ID); k != key || len(group) == maxSecond {
				if err := flush(); err != nil {
					return err
				}
				key = k
			}
			if f.zero() || f.match(le, now) {
				group = append(group, *le)
			}
		}
		clear(b.jobs)
		b.jobs = b.jobs[:0]
		clear(b.out[:])
		select {
		case free <- b:
		default:
		}
	}
	return flush()
}

// maxSecond bounds the messages of one arrival second that Walk holds to
// put them in order: a burst of more is shown in batches of this many,
// each in arrival order.
const maxSecond = 1000

// listBatchSize is how many consecutive messages a worker of Walk reads
// in one go: fewer hand-offs between goroutines than one a message.
const listBatchSize = 32

// listBatch is a batch of messages for Walk's workers, and their entries.
type listBatch struct {
	jobs []listJob
	out  [listBatchSize]ListEntry
	done chan struct{} // one send when out is filled (buffered: a worker never waits)
}

// listJob is one message for Walk's workers: its file, and its names in
// state/.
type listJob struct {
	ref listRef
	e   Entry
}

// listDir is an open directory that Walk reads files from: its path, its
// names (sorted by the caller), and the type of those that the listing
// showed not to be regular files (rare: a FIFO, a symbolic link, ...).
type listDir struct {
	path  string
	f     *os.File
	names []string
	odd   map[string]fs.FileMode
}

// openListDir opens the directory at path and reads its names with their
// types from getdents(2) (d_type; for a file system that does not give it,
// from an lstat of the name, as os.ReadDir), skipping those that start
// with '.' (as readNames). The records are parsed here rather than by
// os.File.ReadDir, which makes an fs.DirEntry of each name. The error
// wraps the one of opening (fs.ErrNotExist for a missing directory) or of
// reading.
func openListDir(path string) (*listDir, error) {
	f, err := spool.OpenDir(path)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	d := &listDir{path: path, f: f}
	fd := d.fd()
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("queue: read %s: %w", path, os.NewSyscallError("getdents64", err))
		}
		if n <= 0 {
			return d, nil
		}
		for b := buf[:n]; len(b) >= direntName; {
			// struct linux_dirent64: d_ino, d_off, d_reclen, d_type,
			// d_name (NUL-terminated).
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < direntName || reclen > len(b) {
				f.Close()
				return nil, fmt.Errorf("queue: read %s: bad directory record", path)
			}
			rec := b[:reclen]
			b = b[reclen:]
			if binary.NativeEndian.Uint64(rec[0:8]) == 0 {
				continue // deleted
			}
			name := rec[direntName:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if len(name) == 0 || name[0] == '.' {
				continue
			}
			typ, ok := direntType(fd, rec[18], name)
			if !ok {
				continue // gone since the listing
			}
			nm := string(name)
			d.names = append(d.names, nm)
			if typ != 0 {
				if d.odd == nil {
					d.odd = map[string]fs.FileMode{}
				}
				d.odd[nm] = typ
			}
		}
	}
}

// direntName is the offset of d_name in struct linux_dirent64.
const direntName = 19

// direntType is the fs.FileMode type of a directory record's d_type, or,
// when the file system gives none (DT_UNKNOWN), of an lstat of name in
// the directory dirfd; false when the name is gone.
func direntType(dirfd int, t byte, name []byte) (fs.FileMode, bool) {
	switch t {
	case unix.DT_REG:
		return 0, true
	case unix.DT_DIR:
		return fs.ModeDir, true
	case unix.DT_LNK:
		return fs.ModeSymlink, true
	case unix.DT_FIFO:
		return fs.ModeNamedPipe, true
	case unix.DT_SOCK:
		return fs.ModeSocket, true
	case unix.DT_CHR:
		return fs.ModeDevice | fs.ModeCharDevice, true
	case unix.DT_BLK:
		return fs.ModeDevice, true
	case unix.DT_UNKNOWN:
		var st unix.Stat_t
		err := unix.Fstatat(dirfd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case err == unix.ENOENT:
			return 0, false
		case err != nil:
			return 0, true // opened, and refused, or shown with its error
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			return 0, true
		case unix.S_IFDIR:
			return fs.ModeDir, true
		case unix.S_IFLNK:
			return fs.ModeSymlink, true
		case unix.S_IFIFO:
			return fs.ModeNamedPipe, true
		case unix.S_IFSOCK:
			return fs.ModeSocket, true
		case unix.S_IFCHR:
			return fs.ModeDevice | fs.ModeCharDevice, true
		case unix.S_IFBLK:
			return fs.ModeDevice, true
		}
	}
	return fs.ModeIrregular, true
}

// fd is the directory's descriptor, for openat(2).
func (d *listDir) fd() int { return int(d.f.Fd()) }

// close closes the directory; a nil d does nothing.
func (d *listDir) close() {
	if d != nil {
		d.f.Close()
	}
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
	if i := strings.IndexByte(name, nameSep[0]); i >= 0 {
		return name[:i]
	}
	return name
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
	// A walk, not a binary search: each name is passed once.
	i := 0
	for i < len(names) && stateID(names[i]) < id {
		i++
	}
	for ; i < len(names) && stateID(names[i]) == id; i++ {
		switch n := names[i]; {
		case strings.HasSuffix(n, journalSuffix):
			e.Journal = true
		case strings.HasSuffix(n, holdSuffix):
			e.Held = true
		default:
			e.States = append(e.States, n)
		}
	}
	clear(names[:i])
	*s = names[i:]
	return e
}

// listQueued is the entry of the message e in queue/ (qd), with its state
// from state/ (sd, nil when there is no state/), read as Walk says; buf
// is scratch of spool.PeekBufSize bytes.
func (q *Queue) listQueued(qd, sd *listDir, e *Entry, now time.Time, buf []byte) ListEntry {
	le := ListEntry{ID: e.ID, Area: spool.QueueDir, Status: ListNew}
	active := false
	m, err := spool.Peek(qd.fd(), qd.path, e.ID, qd.odd[e.ID], buf, func(fd int) {
		// Released by the close that follows at once: a run waiting
		// for its exclusive lock (Open) is not held up longer than by
		// LockMessage and UnlockMessage.
		active = !lockShared(fd)
	})
	if err != nil {
		le.Status, le.Error = ListUnreadable, err.Error()
		if errors.Is(err, spool.ErrCorrupt) {
			le.Status = ListCorrupt
		}
		return le
	}
	fill(&le, m, now)
	if active {
		le.Status = ListActive
	}
	if len(e.States) == 0 && !e.Journal {
		return le
	}
	var st *State
	if len(e.States) == 0 {
		st = NewState(&m.Envelope)
	} else {
		if st, err = loadStateAt(sd, e.States, buf); err != nil {
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

// lockShared takes a shared flock on fd without waiting, as LockMessage,
// and reports whether it got it; a failure means a run holds the message.
func lockShared(fd int) bool {
	for {
		err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB)
		if err != unix.EINTR {
			return err == nil
		}
	}
}

// loadStateAt is LoadState reading from sd, as Walk reads: the state with
// the highest Seq among names, with ReadState's errors.
func loadStateAt(sd *listDir, names []string, buf []byte) (*State, error) {
	var best *State
	for _, n := range names {
		b, err := spool.ReadFileAt(sd.fd(), sd.path, n, sd.odd[n], buf, int64(maxStateSize))
		var rerr *fs.PathError
		if errors.As(err, &rerr) && rerr.Op == "read" {
			return nil, fmt.Errorf("queue: read %s: %w", filepath.Join(sd.path, n), err)
		}
		if err != nil {
			return nil, err // opening: as spool.OpenFile's
		}
		st, err := decodeState(b, sd.path, n)
		if err != nil {
			return nil, err
		}
		if best == nil || st.Seq > best.Seq {
			best = st
		}
	}
	return best, nil
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
	le.Rcpts = make([]Rcpt, len(m.To))
	for i, to := range m.To {
		le.Rcpts[i].Addr = to
	}
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
