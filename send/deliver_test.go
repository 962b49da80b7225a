package send

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Every message reaches the server once, with its envelope and bytes, over
// one reused connection (RSET between messages), and leaves the spool.
func TestDeliverReusesConnection(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{})
		f := newFixtureOver(t, tr, ts)
		var ids []string
		for i := range 5 {
			ids = append(ids, f.queue("sender@example.org", []string{"a@example.net", "b@example.net"},
				body("m"+string(rune('0'+i)))+".leading dot\r\n\xc3\xa9t\xc3\xa9\r\n"))
		}
		st := f.run(false)
		if st.Delivered != 10 || st.Deferred != 0 || st.Started != 5 {
			t.Errorf("stats %+v", st)
		}
		txs := ts.Transactions()
		if len(txs) != 5 {
			t.Fatalf("server got %d transactions, want 5", len(txs))
		}
		seen := map[string]bool{}
		for i, g := range txs {
			seen[string(g.Data)] = true
			want := len(body("m0")) + len(".leading dot\r\n\xc3\xa9t\xc3\xa9\r\n")
			if g.From != "sender@example.org" || strings.Join(g.To, ",") != "a@example.net,b@example.net" {
				t.Errorf("tx %d envelope %s -> %v", i, g.From, g.To)
			}
			if g.Size != int64(want) {
				t.Errorf("tx %d SIZE=%d, want %d", i, g.Size, want)
			}
		}
		for i := range 5 {
			if want := body("m"+string(rune('0'+i))) + ".leading dot\r\n\xc3\xa9t\xc3\xa9\r\n"; !seen[want] {
				t.Errorf("message %d not delivered byte for byte", i)
			}
		}
		if conns := ts.Conns(); conns != 1 {
			t.Errorf("%d connections, want 1 (reuse)", conns)
		}
		if n := f.names(spool.QueueDir); len(n) != 0 {
			t.Errorf("queue not empty: %v", n)
		}
		if n := f.names(queue.StateDir); len(n) != 0 {
			t.Errorf("state not empty: %v", n)
		}
	})
}

// With reuse off, each message gets its own connection.
func TestNoReuse(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, ts.Addr)
	f.s.Config.NoReuse = true
	for range 3 {
		f.queue("s@example.org", []string{"a@example.net"}, body("x"))
	}
	f.run(false)
	if conns := ts.Conns(); conns != 3 || len(ts.Transactions()) != 3 {
		t.Errorf("%d connections, %d transactions; want 3 and 3", conns, len(ts.Transactions()))
	}
}

// Several connections share the queue; each message is sent once.
func TestParallelConnections(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, ts.Addr)
	f.s.Config.Connections = 4
	for range 40 {
		f.queue("s@example.org", []string{"a@example.net"}, body("x"))
	}
	st := f.run(false)
	if st.Delivered != 40 || len(ts.Transactions()) != 40 {
		t.Errorf("delivered %d, server got %d; want 40", st.Delivered, len(ts.Transactions()))
	}
	if conns := ts.Conns(); conns < 2 || conns > 4 {
		t.Errorf("%d connections, want 2..4", conns)
	}
}

// A 4xx for one of three recipients defers that recipient alone; the
// others are done and never sent again. It is due after the backoff, not
// before, and then only it is sent.
func TestRcpt4xxDefersOneRecipient(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		fail := true
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
			if to == "b@example.net" && fail {
				return smtptest.Reply(451, "4.3.0", "try later")
			}
			return nil
		}}})
		f := newFixtureOver(t, tr, ts)
		id := f.queue("s@example.org", []string{"a@example.net", "b@example.net", "c@example.net"}, body("x"))
		fileBefore, _ := os.ReadFile(f.sp.Path(spool.QueueDir, id))
		st := f.run(false)
		if st.Delivered != 2 || st.Deferred != 1 {
			t.Errorf("stats %+v", st)
		}
		txs := ts.Transactions()
		if len(txs) != 1 || strings.Join(txs[0].To, ",") != "a@example.net,c@example.net" {
			t.Fatalf("transactions %+v", txs)
		}
		s := f.state(id)
		if s == nil {
			t.Fatal("no state")
		}
		if rcptStatus(s) != "a@example.net=done b@example.net=pending c@example.net=done" {
			t.Errorf("state %s", rcptStatus(s))
		}
		b := s.Rcpts[1]
		if b.Code != 451 || b.Enhanced != "4.3.0" || b.Text != "try later" || b.Stage != "rcpt" || b.Relay != ts.Addr {
			t.Errorf("deferred recipient %+v", b)
		}
		if s.Attempts != 1 || !s.Next.Equal(f.clk.Now().Add(5*time.Minute)) {
			t.Errorf("attempts %d next %v", s.Attempts, s.Next)
		}
		if n := f.names(queue.StateDir); len(n) != 1 {
			t.Errorf("state/ %v, want one state file and no journal", n)
		}

		f.clk.Add(4 * time.Minute)
		if st := f.run(false); st.Due != 0 || len(ts.Transactions()) != 1 {
			t.Errorf("not yet due, but run %+v", st)
		}
		fail = false
		f.clk.Add(time.Minute)
		if b, _ := os.ReadFile(f.sp.Path(spool.QueueDir, id)); string(b) != string(fileBefore) || len(b) == 0 {
			t.Error("the message file changed")
		}
		f.run(false)
		txs = ts.Transactions()
		if len(txs) != 2 || strings.Join(txs[1].To, ",") != "b@example.net" {
			t.Fatalf("second attempt %+v", txs)
		}
		if n := f.names(spool.QueueDir); len(n) != 0 {
			t.Errorf("queue %v", n)
		}
	})
}

// A 452 after two recipients (the server's limit) carries the rest to new
// transactions in the same run, on the same connection.
func TestTooManyRecipientsCarriesOver(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{MaxRecipients: 2})
	f := newFixture(t, ts.Addr)
	rcpts := []string{"r1@x.test", "r2@x.test", "r3@x.test", "r4@x.test", "r5@x.test"}
	f.queue("s@example.org", rcpts, body("x"))
	st := f.run(false)
	if st.Delivered != 5 || st.Deferred != 0 {
		t.Errorf("stats %+v", st)
	}
	txs := ts.Transactions()
	var sizes []int
	for _, g := range txs {
		sizes = append(sizes, len(g.To))
	}
	if !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Errorf("transactions of %v recipients, want [2 2 1]", sizes)
	}
	for r, n := range ts.RcptCount() {
		if n != 1 {
			t.Errorf("%s delivered %d times", r, n)
		}
	}
	if conns := ts.Conns(); conns != 1 {
		t.Errorf("%d connections", conns)
	}
	if n := f.names(spool.QueueDir); len(n) != 0 {
		t.Errorf("queue %v", n)
	}
}

// SMTP_SEND_MAX_RECIPIENTS splits a large envelope the same way.
func TestMaxRecipientsSplits(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, ts.Addr)
	f.s.Config.MaxRecipients = 2
	f.queue("s@example.org", []string{"r1@x.test", "r2@x.test", "r3@x.test"}, body("x"))
	f.run(false)
	if txs := ts.Transactions(); len(txs) != 2 || len(txs[0].To) != 2 || len(txs[1].To) != 1 {
		t.Errorf("transactions %+v", txs)
	}
}

// If every RCPT is refused, the body is not sent.
func TestAllRcptRefusedSendsNoData(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(*smtptest.Conn, string) *protocol.Reply {
			return smtptest.Reply(550, "5.1.1", "no such user")
		}}})
		f := newFixtureOver(t, tr, ts)
		f.queue("s@example.org", []string{"a@x.test", "b@x.test"}, body("x"))
		st := f.run(false)
		if datas := ts.Datas(); datas != 0 {
			t.Errorf("DATA sent %d times", datas)
		}
		if st.Failed != 2 || st.DSNs != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// Due messages go in order of next attempt (a new message counting from
// its arrival), then age; the message file is never modified, and its
// mtime plays no part.
func TestOrderAndImmutability(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		fail := "a@x.test"
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
			if to == fail {
				return smtptest.Reply(451, "4.3.0", "later")
			}
			return nil
		}}})
		f := newFixtureOver(t, tr, ts)
		a := f.queue("s@example.org", []string{"a@x.test"}, body("a")) // arrives first, deferred to +5m
		f.run(false)
		before, _ := os.ReadFile(f.sp.Path(spool.QueueDir, a))
		f.clk.Add(time.Minute)
		f.queue("s@example.org", []string{"b@x.test"}, body("b")) // due at +1m
		f.clk.Add(2 * time.Minute)
		f.queue("s@example.org", []string{"c@x.test"}, body("c")) // due at +3m
		old := time.Now().Add(-365 * 24 * time.Hour)
		os.Chtimes(f.sp.Path(spool.QueueDir, a), old, old) // mtime says nothing
		f.clk.Add(3 * time.Minute)
		fail = ""
		f.run(false)
		var order []string
		for _, g := range ts.Transactions() {
			order = append(order, g.To[0])
		}
		if strings.Join(order, " ") != "b@x.test c@x.test a@x.test" {
			t.Errorf("order %v, want b c a", order)
		}
		if g := ts.Transactions()[2]; !strings.HasSuffix(string(before), string(g.Data)) {
			t.Errorf("sent bytes are not the spooled message's")
		}
	})
}
