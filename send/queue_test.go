package send

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Two runs at once: the second returns ErrBusy at once, without touching
// the queue, while the first delivers every message once.
func TestConcurrentRunsExclude(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		entered := make(chan struct{}, 10)
		release := make(chan struct{})
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Data: func(*smtptest.Conn, []byte) *protocol.Reply {
			entered <- struct{}{}
			<-release
			return nil
		}}})
		f := newFixtureOver(t, tr, ts)
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
		for r, n := range ts.RcptCount() {
			if n != 3 {
				t.Errorf("%s got %d", r, n)
			}
		}
		if len(ts.Transactions()) != 3 {
			t.Errorf("%d transactions, want 3", len(ts.Transactions()))
		}
	})
}

// A message locked by another process is skipped, untouched (no attempt
// counted), and shown as active by List; once free, it goes.
func TestMessageLockSkips(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{})
		f := newFixtureOver(t, tr, ts)
		id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
		m, err := f.sp.OpenMessage(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := queue.LockMessage(m.File(), true); err != nil {
			t.Fatal(err)
		}
		entries, err := f.q.List(f.clk.Now(), false)
		if err != nil || len(entries) != 1 || entries[0].Status != queue.ListActive {
			t.Errorf("list %+v, %v", entries, err)
		}
		if st := f.run(false); st.Locked != 1 || st.Delivered != 0 || f.state(id) != nil {
			t.Errorf("stats %+v", st)
		}
		m.Close()
		if st := f.run(false); st.Delivered != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// A message file that does not parse (truncated, unknown version) goes to
// corrupt/ with a log line, with no notification, never deleted; so does
// a message whose state file is damaged, and a name in queue/ that is not
// a regular file (here a directory), which is listed as unreadable.
func TestCorruptAndUnreadable(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{})
		f := newFixtureOver(t, tr, ts)
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
		os.WriteFile(f.sp.Path(queue.StateDir, queue.StateName(badState, time.Time{})), []byte("{not json"), 0o600)
		unreadable := "20261121T100000.00000000000000ff"
		os.Mkdir(f.sp.Path(spool.QueueDir, unreadable), 0o700) // not a regular file

		entries, _ := f.q.List(f.clk.Now(), false)
		statuses := map[string]string{}
		for _, e := range entries {
			statuses[e.ID] = e.Status
		}
		if statuses[truncated] != queue.ListCorrupt || statuses[unreadable] != queue.ListUnreadable {
			t.Errorf("list statuses %v", statuses)
		}

		st := f.run(false)
		if st.Corrupt != 4 || st.Unreadable != 0 || st.DSNs != 0 || len(ts.Transactions()) != 0 {
			t.Errorf("stats %+v", st)
		}
		corrupt := strings.Join(f.names(queue.CorruptDir), " ")
		for _, want := range []string{truncated, version, badState, queue.StateName(badState, time.Time{}), unreadable} {
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
	})
}

// Stale files in tmp/ are removed at the start of a run, with a log line;
// recent ones (a receiver at work) are kept.
func TestCleanTmp(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{})
		f := newFixtureOver(t, tr, ts)
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
	})
}

// State files and journals whose message is gone (a crash after its
// removal) are removed at the start of a run.
func TestOrphansRemoved(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{})
		f := newFixtureOver(t, tr, ts)
		gone := "20261121T100000.0000000000000001"
		os.WriteFile(f.sp.Path(queue.StateDir, queue.StateName(gone, time.Time{})), []byte("{}"), 0o600)
		os.WriteFile(f.sp.Path(queue.StateDir, queue.JournalName(gone)), []byte(""), 0o600)
		f.run(false)
		if n := f.names(queue.StateDir); len(n) != 0 {
			t.Errorf("state/ %v", n)
		}
	})
}

// The time budget stops the run from starting messages; those left are
// untouched. A cancelled context does the same after the message in flight.
func TestBudgetAndCancel(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{})
		f := newFixtureOver(t, tr, ts)
		var ids []string
		for range 5 {
			ids = append(ids, f.queue("s@example.org", []string{"a@x.test"}, body("x")))
		}
		f.s.Config.RunTime = time.Nanosecond
		if st := f.run(false); st.Left != 5 || st.Started != 0 || len(ts.Transactions()) != 0 {
			t.Errorf("budget: %+v", st)
		}
		f.s.Config.RunTime = 0
		ctx, cancel := context.WithCancel(context.Background())
		f.s.Hooks.Step = func(s queue.Step, _ string) {
			if s == queue.StepRecorded {
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
	})
}

// A message whose bytes fail their CRC is found out while being sent: the
// connection is dropped before the final dot, so the server discards it,
// and the file goes to corrupt/.
func TestCRCMismatchNeverSent(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{})
		f := newFixtureOver(t, tr, ts)
		id := f.queue("s@example.org", []string{"a@x.test"}, body("x")+strings.Repeat("line\r\n", 2000))
		p := f.sp.Path(spool.QueueDir, id)
		b, _ := os.ReadFile(p)
		b[len(b)-10] ^= 0x20 // same size, wrong CRC
		os.WriteFile(p, b, 0o600)
		st := f.run(false)
		if st.Corrupt != 1 || st.Delivered != 0 || st.DSNs != 0 {
			t.Errorf("stats %+v", st)
		}
		if datas := ts.Datas(); datas != 0 || len(ts.Transactions()) != 0 {
			t.Errorf("the server took %d messages", datas)
		}
		if c := f.names(queue.CorruptDir); len(c) != 1 || c[0] != id {
			t.Errorf("corrupt/ %v", c)
		}
	})
}
