package queue

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// listT0 is the arrival of the first message of the list tests.
var listT0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// listMessage spools a message from from to rcpts that arrived at t and
// returns its id.
func listMessage(t *testing.T, q *Queue, at time.Time, from string, rcpts ...string) string {
	t.Helper()
	id, err := spool.NewQueueID(at)
	must(t, err)
	commit(t, q, &spool.Envelope{QueueID: id, Received: at, Helo: "client.test", Protocol: "ESMTP",
		From: from, To: rcpts}, "Subject: list\r\n\r\nHello.\r\n")
	return id
}

// oldList is the listing as it was before Walk: every entry read into
// memory, then sorted by arrival (messages that could not be read, with
// no arrival, first). Walk must list the same entries in the same order.
func oldList(q *Queue, now time.Time, all bool) ([]ListEntry, error) {
	sc, err := q.Scan()
	if err != nil {
		return nil, err
	}
	out := make([]ListEntry, 0, len(sc.Entries))
	for i := range sc.Entries {
		out = append(out, oldListQueued(q, &sc.Entries[i], now))
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

// oldListQueued is the entry of a queued message as the listing read it
// before the lean readers (spool.Peek, spool.ReadFileAt): spool.Open,
// LockMessage and UnlockMessage, LoadState. Walk must give the same.
func oldListQueued(q *Queue, e *Entry, now time.Time) ListEntry {
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
		if entries, _, err := q.ReadJournal(e.ID); err == nil {
			st.Apply(entries)
		}
	}
	le.Attempts, le.Next, le.Rcpts = st.Attempts, st.Next, st.Rcpts
	return le
}

// walkAll returns what Walk hands to fn.
func walkAll(t *testing.T, q *Queue, now time.Time, all bool, f ListFilter) []ListEntry {
	t.Helper()
	var out []ListEntry
	must(t, q.Walk(now, all, f, func(le *ListEntry) error {
		out = append(out, *le)
		return nil
	}))
	return out
}

// listFixture fills q with what a listing meets: new messages, several in
// one second (their ids in another order than their arrival), a deferred
// one with two state files (a crash between writing one and removing the
// other), one with a journal, an orphaned state file, a message in
// failed/ and a file in corrupt/ (named for an earlier second: with no
// arrival, the old listing put it first). It returns the ids in queue/.
func listFixture(t *testing.T, q *Queue) []string {
	t.Helper()
	var ids []string
	for i := range 6 {
		// One second, arrivals 900 ms down to 400 ms: ids sort at
		// random, arrivals in reverse.
		ids = append(ids, listMessage(t, q, listT0.Add(time.Duration(900-100*i)*time.Millisecond), "s@example.org", "a@x.test"))
	}
	deferred := listMessage(t, q, listT0.Add(2*time.Second), "T@Example.ORG", "a@x.test", "b@y.test")
	env, err := q.sp.OpenMessage(deferred)
	must(t, err)
	st := NewState(&env.Envelope)
	env.Close()
	st.Attempts, st.Next = 1, listT0.Add(time.Hour)
	st.Rcpts[1] = Rcpt{Addr: "b@y.test", Status: Pending, Code: 451, Enhanced: "4.3.0", Text: "later", Stage: "rcpt", Relay: "r:25"}
	first, err := q.writeState(st, nil)
	must(t, err)
	st.Attempts, st.Next = 2, listT0.Add(2*time.Hour) // writeState counts Seq
	_, err = q.writeState(st, nil)
	must(t, err)
	if _, err := os.Stat(q.sp.Path(StateDir, first)); err != nil {
		t.Fatalf("the first state file is gone: %v", err)
	}
	journaled := listMessage(t, q, listT0.Add(3*time.Second), "", "c@z.test")
	must(t, q.appendJournal(journaled, JournalEntry{Set: []Update{{Index: 0, Rcpt: Rcpt{Addr: "c@z.test", Status: Done, Code: 250}}}}))
	ids = append(ids, deferred, journaled, listMessage(t, q, listT0.Add(4*time.Second), "", "d@z.test"))
	must(t, os.WriteFile(q.sp.Path(StateDir, "20261121T095959.0000000000000000@1"), []byte("{}\n"), 0o600))
	failed := listMessage(t, q, listT0.Add(5*time.Second), "f@example.org", "e@x.test")
	must(t, os.Rename(q.sp.Path(spool.QueueDir, failed), q.sp.Path(FailedDir, failed)))
	must(t, os.WriteFile(q.sp.Path(CorruptDir, "20261121T095000.0000000000000000"), []byte("not a spool file\n"), 0o600))
	return ids
}

// TestWalkListsAsBefore: Walk hands out the entries the old in-memory
// listing built, in the same order, with and without failed/ and
// corrupt/; and within one second in arrival order, not id order.
func TestWalkListsAsBefore(t *testing.T) {
	q := newQueue(t)
	ids := listFixture(t, q)
	now := listT0.Add(time.Minute)
	for _, all := range []bool{false, true} {
		want, err := oldList(q, now, all)
		must(t, err)
		got := walkAll(t, q, now, all, ListFilter{})
		if len(want) != len(ids)+2*boolN(all) {
			t.Fatalf("all=%v: the old listing has %d entries", all, len(want))
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("all=%v: Walk differs from the old listing:\n got %+v\nwant %+v", all, got, want)
		}
		off := boolN(all) // the corrupt/ file first
		for i := range 6 {
			if got[off+i].ID != ids[5-i] {
				t.Errorf("all=%v: entry %d is %s, want %s (arrival order within a second)", all, off+i, got[off+i].ID, ids[5-i])
			}
		}
	}
	list, err := q.List(now, true)
	must(t, err)
	if want, _ := oldList(q, now, true); !reflect.DeepEqual(list, want) {
		t.Errorf("List differs from the old listing")
	}
	// The deferred message shows its newest state (Seq), the journaled
	// one its journal.
	for _, e := range list {
		switch {
		case e.Status == ListDeferred && e.Attempts != 2:
			t.Errorf("deferred entry %+v: not its newest state", e)
		case e.From == "" && len(e.Rcpts) == 1 && e.Rcpts[0].Addr == "c@z.test" && e.Rcpts[0].Status != Done:
			t.Errorf("journaled entry %+v: journal not applied", e)
		}
	}
}

func boolN(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestWalkFilters: --from and --to match a part of an address in any
// ASCII case, "<>" only the null sender, --older-than the age; filters
// combine; fn's error stops the walk.
func TestWalkFilters(t *testing.T) {
	q := newQueue(t)
	listFixture(t, q)
	now := listT0.Add(10 * time.Second)
	count := func(f ListFilter, all bool) (n int, ids []string) {
		for _, e := range walkAll(t, q, now, all, f) {
			ids = append(ids, e.ID)
			if !f.match(&e, now) {
				t.Errorf("%+v: entry %+v does not match", f, e)
			}
		}
		return len(ids), ids
	}
	for _, c := range []struct {
		f    ListFilter
		all  bool
		want int
	}{
		{ListFilter{}, false, 9},
		{ListFilter{From: "example.org"}, false, 7},
		{ListFilter{From: "t@EXAMPLE.org"}, false, 1},
		{ListFilter{From: "<>"}, false, 2},
		{ListFilter{From: "nobody"}, false, 0},
		{ListFilter{To: "x.test"}, false, 7},
		{ListFilter{To: "B@Y"}, false, 1},
		{ListFilter{To: "z.test"}, false, 2},
		{ListFilter{From: "<>", To: "d@"}, false, 1},
		{ListFilter{OlderThan: 7 * time.Second}, false, 7}, // the one second's 6 and the deferred one (8 s)
		{ListFilter{OlderThan: 8 * time.Second}, false, 6}, // 8 s is not more than 8 s
		{ListFilter{OlderThan: time.Hour}, false, 0},       //
		{ListFilter{OlderThan: 9 * time.Second}, true, 7},  // and failed/ is younger; corrupt/ has no arrival but its id's
		{ListFilter{From: "f@", OlderThan: time.Second}, true, 1},
	} {
		if n, ids := count(c.f, c.all); n != c.want {
			t.Errorf("%+v all=%v: %d entries, want %d: %v", c.f, c.all, n, c.want, ids)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := q.Walk(now, true, ListFilter{}, func(*ListEntry) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("Walk after fn's error: %v, %d calls", err, n)
	}
}

// fillQueue spools n messages of two recipients each, three a second
// from listT0 on, fast: one through spool.Create, the others copies of
// its file under new ids and arrival times.
func fillQueue(t testing.TB, q *Queue, n int) {
	t.Helper()
	id0, err := spool.NewQueueID(listT0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := q.sp.Create(&spool.Envelope{QueueID: id0, Received: listT0, Helo: "client.test", Protocol: "ESMTP",
		From: "sender@example.org", To: []string{"first.recipient@example.net", "second.recipient@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("A line of the message body, long enough.\r\n"), 40))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	path := q.sp.Path(spool.QueueDir, id0)
	proto, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	rcvd0 := []byte("received: " + listT0.Format(time.RFC3339Nano) + "\n")
	if !bytes.Contains(proto, rcvd0) {
		t.Fatalf("no %q in %q", rcvd0, proto)
	}
	for i := range n {
		at := listT0.Add(time.Duration(i) * time.Second / 3)
		id, _ := spool.NewQueueID(at)
		m := bytes.Replace(proto, []byte(id0), []byte(id), 1)
		m = bytes.Replace(m, rcvd0, []byte("received: "+at.Format(time.RFC3339Nano)+"\n"), 1)
		if err := os.WriteFile(q.sp.Path(spool.QueueDir, id), m, spool.FileMode); err != nil {
			t.Fatal(err)
		}
	}
}

// heapGrowth walks q with fn and returns the most the live heap grew
// over its size before the walk, sampled (after a collection) every 250
// messages, in bytes.
func heapGrowth(t *testing.T, q *Queue, fn func(*ListEntry)) (grew uint64, n int) {
	t.Helper()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	must(t, q.Walk(listT0, false, ListFilter{}, func(le *ListEntry) error {
		fn(le)
		if n++; n%250 == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base {
				grew = max(grew, ms.HeapAlloc-base)
			}
		}
		return nil
	}))
	return grew, n
}

// TestWalkMemoryFlat: while Walk lists 3,000 messages the live heap grows
// by the names of the files (tens of bytes a message) and a few entries,
// never by the list: at most listBudget bytes a message. The same
// measure taken while the entries are kept (what the old listing did)
// must exceed the bound, or the test could not fail.
func TestWalkMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("spools 3,000 messages")
	}
	const n, listBudget = 3000, 160
	q := newQueue(t)
	fillQueue(t, q, n)
	var sink int
	grew, seen := heapGrowth(t, q, func(le *ListEntry) { sink += len(le.Rcpts) })
	if seen != n || sink != 2*n {
		t.Fatalf("walked %d messages, %d recipients", seen, sink)
	}
	t.Logf("streaming: the heap grew by at most %d bytes, %d a message", grew, grew/n)
	if grew > n*listBudget {
		t.Errorf("the heap grew by %d bytes (%d a message, budget %d): the listing holds what it listed", grew, grew/n, listBudget)
	}
	var kept []ListEntry
	held, _ := heapGrowth(t, q, func(le *ListEntry) { kept = append(kept, *le) })
	t.Logf("keeping every entry: %d bytes, %d a message", held, held/n)
	if held <= n*listBudget {
		t.Errorf("keeping every entry grew the heap by %d bytes only: the measure cannot tell", held)
	}
	runtime.KeepAlive(kept)
}

// BenchmarkWalk lists 10,000 queued messages: go test -bench Walk
// -benchmem ./queue. scripts/bench-list measures the binary with
// 100,000.
func BenchmarkWalk(b *testing.B) {
	sp, err := spool.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	q, err := Open(sp)
	if err != nil {
		b.Fatal(err)
	}
	fillQueue(b, q, 10000)
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := q.Walk(listT0, false, ListFilter{}, func(le *ListEntry) error {
			n += len(le.ID)
			return nil
		}); err != nil || n == 0 {
			b.Fatal(err, n)
		}
	}
}

// TestArrivalSecond: the second at the start of a queue id, and nothing
// for other names.
func TestArrivalSecond(t *testing.T) {
	id, err := spool.NewQueueID(listT0.Add(1500 * time.Millisecond))
	must(t, err)
	if at, ok := ArrivalSecond(id); !ok || !at.Equal(listT0.Add(time.Second)) {
		t.Errorf("ArrivalSecond(%s) = %v, %v", id, at, ok)
	}
	for _, s := range []string{"", "20261121", "notanid.0000", strings.Repeat("x", 40)} {
		if _, ok := ArrivalSecond(s); ok {
			t.Errorf("ArrivalSecond(%q) is ok", s)
		}
	}
}

// TestWalkShowsDSN: a message's DSN parameters (RFC 3461) are in its
// entry, and so in --list --json; a message without them has none.
func TestWalkShowsDSN(t *testing.T) {
	q := newQueue(t)
	plain := listMessage(t, q, listT0, "s@example.org", "a@x.test")
	id, err := spool.NewQueueID(listT0)
	must(t, err)
	w, err := q.sp.Create(&spool.Envelope{QueueID: id, Received: listT0, Helo: "c", Protocol: "ESMTP", From: "s@example.org",
		To: []string{"a@x.test", "b@x.test"}, Ret: "HDRS", EnvID: "E1",
		DSN: []spool.RcptDSN{{Notify: "NEVER"}, {Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;B@x.test"}}})
	must(t, err)
	w.Write([]byte("Subject: dsn\r\n\r\nx\r\n"))
	must(t, w.Commit())
	for _, e := range walkAll(t, q, listT0.Add(time.Second), false, ListFilter{}) {
		b, _ := json.Marshal(e)
		switch e.ID {
		case plain:
			if e.Ret != "" || e.EnvID != "" || e.DSN != nil || strings.Contains(string(b), `"dsn"`) {
				t.Errorf("a message without DSN parameters: %s", b)
			}
		case id:
			if want := `"ret":"HDRS","envid":"E1","dsn":[{"notify":"NEVER"},{"notify":"SUCCESS,FAILURE","orcpt":"rfc822;B@x.test"}]`; !strings.Contains(string(b), want) {
				t.Errorf("entry %s, want %s in it", b, want)
			}
		}
	}
}

// envelopeLen is the length in bytes of the envelope section of the
// message file queue/<id>, through its blank line.
func envelopeLen(t *testing.T, q *Queue, id string) int {
	t.Helper()
	b, err := os.ReadFile(q.sp.Path(spool.QueueDir, id))
	must(t, err)
	return bytes.Index(b, []byte("\n\n")) + 2
}

// longEnvelope spools a message whose envelope section is exactly n bytes
// long (many recipients of 23-byte lines, the last one's local part
// padded), arrived at at, and returns its id.
func longEnvelope(t *testing.T, q *Queue, at time.Time, n int) string {
	t.Helper()
	probe := listMessage(t, q, at, "s@example.org", "p@x.test")
	l1 := envelopeLen(t, q, probe)
	must(t, os.Remove(q.sp.Path(spool.QueueDir, probe)))
	var rcpts []string
	for i := range (n - l1) / 23 {
		rcpts = append(rcpts, fmt.Sprintf("r%03d@x.test", i)) // "rcpt-to: <r000@x.test>\n"
	}
	rcpts = append(rcpts, strings.Repeat("p", 1+(n-l1)%23)+"@x.test")
	id := listMessage(t, q, at, "s@example.org", rcpts...)
	if l := envelopeLen(t, q, id); l != n {
		t.Fatalf("an envelope of %d bytes, want %d", l, n)
	}
	return id
}

// TestWalkLeanReadsAsBefore: Walk, which reads files relative to their
// open directory with one fstat and one read (spool.Peek,
// spool.ReadFileAt), lists what the listing through spool.Open,
// LockMessage and LoadState listed, on what the spool's hardening is
// about: in queue/ a FIFO, a symbolic link to a valid message, a
// directory, a truncated file, one with extra bytes, envelopes that end
// just before, at and after the size of one read (spool.PeekBufSize) and
// one far longer; in state/ a FIFO, a symbolic link, a damaged file, and
// one longer than a read; and a message a run holds, shown as active,
// whose lock the listing leaves as it was. No FIFO blocks it.
func TestWalkLeanReadsAsBefore(t *testing.T) {
	q := newQueue(t)
	at := func(s int) time.Time { return listT0.Add(time.Duration(s) * time.Second) }
	ok := listMessage(t, q, at(0), "s@example.org", "a@x.test")
	var long []string
	for i, n := range []int{spool.PeekBufSize - 1, spool.PeekBufSize, spool.PeekBufSize + 1, 3 * spool.PeekBufSize} {
		long = append(long, longEnvelope(t, q, at(1+i), n))
	}
	// A deferred message with a state file longer than one read.
	m, err := q.sp.OpenMessage(long[3])
	must(t, err)
	st := NewState(&m.Envelope)
	m.Close()
	st.Attempts, st.Next = 1, at(3600)
	for i := range st.Rcpts {
		st.Rcpts[i].Code, st.Rcpts[i].Text = 451, "busy"
	}
	name, err := q.writeState(st, nil)
	must(t, err)
	if fi, err := os.Stat(q.sp.Path(StateDir, name)); err != nil || fi.Size() <= spool.PeekBufSize {
		t.Fatalf("state file %v, %v: not longer than a read", fi, err)
	}

	qpath := func(id string) string { return q.sp.Path(spool.QueueDir, id) }
	spath := func(name string) string { return q.sp.Path(StateDir, name) }
	truncated := listMessage(t, q, at(10), "s@example.org", "a@x.test")
	b, err := os.ReadFile(qpath(truncated))
	must(t, err)
	must(t, os.WriteFile(qpath(truncated), b[:envelopeLen(t, q, truncated)-20], 0o600))
	extra := listMessage(t, q, at(11), "s@example.org", "a@x.test")
	f, err := os.OpenFile(qpath(extra), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	f.WriteString("more\r\n")
	f.Close()
	fifo := "20261121T100020.00000000000000f1"
	must(t, syscall.Mkfifo(qpath(fifo), 0o600))
	must(t, os.Mkdir(qpath("20261121T100021.00000000000000d1"), 0o700))
	elsewhere := newQueue(t)
	linked := listMessage(t, elsewhere, at(22), "s@example.org", "a@x.test")
	must(t, os.Symlink(elsewhere.sp.Path(spool.QueueDir, linked), qpath(linked)))
	fifoState := listMessage(t, q, at(23), "s@example.org", "a@x.test")
	must(t, syscall.Mkfifo(spath(StateName(fifoState, at(3600))), 0o600))
	linkState := listMessage(t, q, at(24), "s@example.org", "a@x.test")
	must(t, os.Symlink(spath(name), spath(StateName(linkState, at(3600)))))
	badState := listMessage(t, q, at(25), "s@example.org", "a@x.test")
	must(t, os.WriteFile(spath(StateName(badState, at(3600))), []byte(`{"version":1,"id":`), 0o600))

	// A run holds this one.
	active := listMessage(t, q, at(30), "s@example.org", "a@x.test")
	run, err := q.sp.OpenMessage(active)
	must(t, err)
	defer run.Close()
	must(t, LockMessage(run.File(), true))

	now := at(60)
	want, err := oldList(q, now, false)
	must(t, err)
	got := walkAll(t, q, now, false, ListFilter{})
	if len(got) != len(want) {
		t.Fatalf("Walk lists %d messages, the listing through spool.Open %d", len(got), len(want))
	}
	// By id: the old listing put the entries without an arrival first,
	// Walk where their names sort (TestWalkListsAsBefore has the order).
	byID := func(a, b ListEntry) int { return cmp.Compare(a.ID, b.ID) }
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			g, w := fmt.Sprintf("%+v", got[i]), fmt.Sprintf("%+v", want[i])
			t.Errorf("entry %d differs from the listing through spool.Open:\n got %.600s\nwant %.600s", i, g, w)
		}
	}
	status := map[string]string{}
	for _, e := range got {
		status[e.ID] = e.Status
	}
	for id, s := range map[string]string{ok: ListNew, long[0]: ListNew, long[1]: ListNew, long[2]: ListNew, long[3]: ListDeferred,
		truncated: ListCorrupt, extra: ListCorrupt, fifo: ListUnreadable, "20261121T100021.00000000000000d1": ListUnreadable,
		linked: ListUnreadable, fifoState: ListUnreadable, linkState: ListUnreadable, badState: ListNew, active: ListActive} {
		if status[id] != s {
			t.Errorf("%s is %q, want %q", id, status[id], s)
		}
	}
	// The listing took no lock that stays, nor dropped the run's.
	other, err := q.sp.OpenMessage(active)
	must(t, err)
	if err := LockMessage(other.File(), false); !errors.Is(err, ErrLocked) {
		t.Errorf("the run's lock is gone after the listing: %v", err)
	}
	other.Close()
	it, err := q.Open(&Entry{ID: ok})
	if err != nil {
		t.Errorf("a run cannot take a listed message: %v", err)
	} else {
		it.Close()
	}
}
