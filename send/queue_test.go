package send

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Two runs at once: the second returns ErrBusy at once, without touching
// the queue, while the first delivers every message once.
func TestConcurrentRunsExclude(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	ts := newServer(t, nil, withScript(script{data: func(*sconn, []byte) error {
		entered <- struct{}{}
		<-release
		return nil
	}}))
	f := newFixture(t, ts.addr)
	for range 3 {
		f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	}
	var wg sync.WaitGroup
	var first Stats
	var firstErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		first, firstErr = f.s.Run(context.Background(), false)
	}()
	<-entered // the first run is in the middle of a transaction
	second := *f.s
	if _, err := second.Run(context.Background(), true); !errors.Is(err, ErrBusy) {
		t.Errorf("second run: %v, want ErrBusy", err)
	}
	close(release)
	wg.Wait()
	if firstErr != nil || first.Delivered != 3 {
		t.Errorf("first run %+v, %v", first, firstErr)
	}
	for r, n := range ts.rcptCount() {
		if n != 3 {
			t.Errorf("%s got %d", r, n)
		}
	}
	if len(ts.transactions()) != 3 {
		t.Errorf("%d transactions, want 3", len(ts.transactions()))
	}
}

// A message locked by another process is skipped, untouched (no attempt
// counted), and shown as active by List; once free, it goes.
func TestMessageLockSkips(t *testing.T) {
	ts := newServer(t, nil)
	f := newFixture(t, ts.addr)
	id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	m, err := f.sp.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := spool.LockMessage(m.File(), true); err != nil {
		t.Fatal(err)
	}
	entries, err := List(f.sp, f.clk.Now(), false)
	if err != nil || len(entries) != 1 || entries[0].Status != ListActive {
		t.Errorf("list %+v, %v", entries, err)
	}
	if st := f.run(false); st.Locked != 1 || st.Delivered != 0 || f.state(id) != nil {
		t.Errorf("stats %+v", st)
	}
	m.Close()
	if st := f.run(false); st.Delivered != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A message file that does not parse (truncated, unknown version) goes to
// corrupt/ with a log line, with no notification, never deleted; so does
// a message whose state file is damaged, and a name in queue/ that is not
// a regular file (here a directory), which is listed as unreadable.
func TestCorruptAndUnreadable(t *testing.T) {
	ts := newServer(t, nil)
	f := newFixture(t, ts.addr)
	truncated := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	p := f.sp.Path(spool.QueueDir, truncated)
	fi, _ := os.Stat(p)
	if err := os.Truncate(p, fi.Size()-3); err != nil {
		t.Fatal(err)
	}
	version := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	b, _ := os.ReadFile(f.sp.Path(spool.QueueDir, version))
	os.WriteFile(f.sp.Path(spool.QueueDir, version), bytes.Replace(b, []byte("smtp-spool 1"), []byte("smtp-spool 9"), 1), 0o600)
	badState := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	f.sp.InitQueue()
	os.WriteFile(f.sp.Path(spool.StateDir, spool.StateName(badState, time.Time{})), []byte("{not json"), 0o600)
	unreadable := "20261121T100000.00000000000000ff"
	os.Mkdir(f.sp.Path(spool.QueueDir, unreadable), 0o700) // not a regular file

	entries, _ := List(f.sp, f.clk.Now(), false)
	statuses := map[string]string{}
	for _, e := range entries {
		statuses[e.ID] = e.Status
	}
	if statuses[truncated] != ListCorrupt || statuses[unreadable] != ListUnreadable {
		t.Errorf("list statuses %v", statuses)
	}

	st := f.run(false)
	if st.Corrupt != 4 || st.Unreadable != 0 || st.DSNs != 0 || len(ts.transactions()) != 0 {
		t.Errorf("stats %+v", st)
	}
	corrupt := strings.Join(f.names(spool.CorruptDir), " ")
	for _, want := range []string{truncated, version, badState, spool.StateName(badState, time.Time{}), unreadable} {
		if !strings.Contains(corrupt, want) {
			t.Errorf("corrupt/ lacks %s: %s", want, corrupt)
		}
	}
	if q := f.names(spool.QueueDir); len(q) != 0 {
		t.Errorf("queue/ %v", q)
	}
	if !strings.Contains(f.logs.String(), "corrupt message moved to corrupt/") {
		t.Error("no log line")
	}
}

// Stale files in tmp/ are removed at the start of a run, with a log line;
// recent ones (a receiver at work) are kept.
func TestCleanTmp(t *testing.T) {
	ts := newServer(t, nil)
	f := newFixture(t, ts.addr)
	old, fresh := f.sp.Path(spool.TmpDir, "old"), f.sp.Path(spool.TmpDir, "fresh")
	os.WriteFile(old, []byte("x"), 0o600)
	os.WriteFile(fresh, []byte("x"), 0o600)
	past := time.Now().Add(-25 * time.Hour)
	os.Chtimes(old, past, past)
	f.run(false)
	if n := f.names(spool.TmpDir); len(n) != 1 || n[0] != "fresh" {
		t.Errorf("tmp/ %v", n)
	}
	if !strings.Contains(f.logs.String(), `msg="removed stale temporary file" file=old`) {
		t.Errorf("no log line:\n%s", f.logs.String())
	}
}

// State files and journals whose message is gone (a crash after its
// removal) are removed at the start of a run.
func TestOrphansRemoved(t *testing.T) {
	ts := newServer(t, nil)
	f := newFixture(t, ts.addr)
	f.sp.InitQueue()
	gone := "20261121T100000.0000000000000001"
	os.WriteFile(f.sp.Path(spool.StateDir, spool.StateName(gone, time.Time{})), []byte("{}"), 0o600)
	os.WriteFile(f.sp.Path(spool.StateDir, spool.JournalName(gone)), []byte(""), 0o600)
	f.run(false)
	if n := f.names(spool.StateDir); len(n) != 0 {
		t.Errorf("state/ %v", n)
	}
}

// The time budget stops the run from starting messages; those left are
// untouched. A cancelled context does the same after the message in flight.
func TestBudgetAndCancel(t *testing.T) {
	ts := newServer(t, nil)
	f := newFixture(t, ts.addr)
	var ids []string
	for range 5 {
		ids = append(ids, f.queue("s@example.org", []string{"a@x.test"}, body("x")))
	}
	f.s.Config.RunTime = time.Nanosecond
	if st := f.run(false); st.Left != 5 || st.Started != 0 || len(ts.transactions()) != 0 {
		t.Errorf("budget: %+v", st)
	}
	f.s.Config.RunTime = 0
	ctx, cancel := context.WithCancel(context.Background())
	f.s.Hooks.Step = func(s Step, _ string) {
		if s == StepRecorded {
			cancel()
		}
	}
	st, err := f.s.Run(ctx, false)
	if err != nil || st.Delivered != 1 || st.Left != 4 {
		t.Errorf("cancel: %+v, %v", st, err)
	}
	if n := len(f.names(spool.QueueDir)); n != 4 {
		t.Errorf("%d left in queue", n)
	}
	for _, id := range ids {
		if f.state(id) != nil {
			t.Errorf("%s has a state: an untouched message must not", id)
		}
	}
}

// --list shows id, age, size, sender, each recipient's status with the
// last reply, attempts and next try; --json the same as JSON lines.
func TestList(t *testing.T) {
	ts := newServer(t, nil, withScript(script{rcpt: func(_ *sconn, to string) error {
		if to == "b@x.test" {
			return reply(451, smtp.EnhancedCode{4, 3, 0}, "try later")
		}
		return nil
	}}))
	f := newFixture(t, ts.addr)
	id := f.queue("s@example.org", []string{"a@x.test", "b@x.test"}, body("x"))
	f.run(false)
	f.clk.Add(2 * time.Minute)
	fresh := f.queue("t@example.org", []string{"c@x.test"}, body("y"))
	entries, err := List(f.sp, f.clk.Now(), false)
	if err != nil || len(entries) != 2 {
		t.Fatalf("%+v %v", entries, err)
	}
	var text bytes.Buffer
	WriteList(&text, entries, f.clk.Now(), false)
	for _, want := range []string{
		id + "  deferred  age 2m0s  ", "from <s@example.org>  attempts 1  next 2026-11-21T10:05:00Z (in 3m0s)",
		"    done     <a@x.test>  dot: 250 2.0.0 OK: queued  (relay " + ts.addr + ")",
		"    pending  <b@x.test>  rcpt: 451 4.3.0 try later  (relay " + ts.addr + ")",
		fresh + "  new  age 0s  ", "from <t@example.org>  attempts 0  next now",
		"-- 2 messages: 1 new, 1 deferred",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("list lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	WriteList(&js, entries, f.clk.Now(), true)
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("json lines:\n%s", js.String())
	}
	var e ListEntry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e.ID != id || e.Status != ListDeferred || e.Attempts != 1 || e.From != "s@example.org" ||
		len(e.Rcpts) != 2 || e.Rcpts[1].Code != 451 || e.Rcpts[1].Status != spool.Pending || e.Size == 0 {
		t.Errorf("json entry %+v", e)
	}
}

// A message whose bytes fail their CRC is found out while being sent: the
// connection is dropped before the final dot, so the server discards it,
// and the file goes to corrupt/.
func TestCRCMismatchNeverSent(t *testing.T) {
	ts := newServer(t, nil)
	f := newFixture(t, ts.addr)
	id := f.queue("s@example.org", []string{"a@x.test"}, body("x")+strings.Repeat("line\r\n", 2000))
	p := f.sp.Path(spool.QueueDir, id)
	b, _ := os.ReadFile(p)
	b[len(b)-10] ^= 0x20 // same size, wrong CRC
	os.WriteFile(p, b, 0o600)
	st := f.run(false)
	if st.Corrupt != 1 || st.Delivered != 0 || st.DSNs != 0 {
		t.Errorf("stats %+v", st)
	}
	if _, datas := ts.counts(); datas != 0 || len(ts.transactions()) != 0 {
		t.Errorf("the server took %d messages", datas)
	}
	if c := f.names(spool.CorruptDir); len(c) != 1 || c[0] != id {
		t.Errorf("corrupt/ %v", c)
	}
}
