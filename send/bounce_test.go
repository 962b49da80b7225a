package send

import (
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// A 5xx recipient fails alone: the others are delivered, one RFC 3464
// notification with the remote's real codes goes to the sender from <>
// through the queue, and the original is kept in failed/ with its state.
func TestRcpt5xxBouncesOneRecipient(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
			if to == "b@example.net" {
				return smtptest.Reply(550, "5.1.1", "no such user here")
			}
			return nil
		}}})
		f := newFixtureOver(t, tr, ts)
		id := f.queue("sender@example.org", []string{"a@example.net", "b@example.net", "c@example.net"}, body("report me"))
		st := f.run(false)
		if st.Delivered != 2 || st.Failed != 1 || st.DSNs != 1 {
			t.Errorf("stats %+v", st)
		}
		if txs := ts.Transactions(); len(txs) != 1 || strings.Join(txs[0].To, ",") != "a@example.net,c@example.net" {
			t.Fatalf("transactions %+v", txs)
		}
		dsns := f.queuedFrom("")
		if len(dsns) != 1 {
			t.Fatalf("%d notifications queued, want 1", len(dsns))
		}
		d := dsns[0]
		if strings.Join(d.To, ",") != "sender@example.org" {
			t.Errorf("notification to %v", d.To)
		}
		text := content(t, d)
		for _, want := range []string{
			"Content-Type: multipart/report; report-type=delivery-status;",
			"Content-Type: message/delivery-status\r\n",
			"Reporting-MTA: dns; client.test\r\n",
			"Arrival-Date: " + f.clk.Now().Format(time.RFC1123Z) + "\r\n",
			"Final-Recipient: rfc822; b@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; 127.0.0.1\r\n" +
				"Diagnostic-Code: smtp; 550 5.1.1 no such user here\r\n",
			"Content-Type: text/rfc822-headers\r\n\r\nReceived: from client.test",
			"Subject: report me\r\n",
			"X-Original-Queue-ID: " + id + "\r\n",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("notification lacks %q:\n%s", want, text)
			}
		}
		checkNotice(t, text, body("report me"), "sender@example.org", 1)
		if strings.Contains(text, "a@example.net") || strings.Contains(text, "Hello.") {
			t.Errorf("notification names a delivered recipient or returns the body:\n%s", text)
		}
		if got := f.names(queue.FailedDir); strings.Join(got, ",") != id+","+id+"@state" {
			t.Errorf("failed/ holds %v", got)
		}
		fs, err := f.q.ReadFailedState(id)
		if err != nil {
			t.Fatal(err)
		}
		if rcptStatus(fs) != "a@example.net=done b@example.net=failed c@example.net=done" || fs.Rcpts[1].DSN != d.QueueID {
			t.Errorf("failed state %s, dsn %q", rcptStatus(fs), fs.Rcpts[1].DSN)
		}
		if n := f.names(queue.StateDir); len(n) != 0 {
			t.Errorf("state/ %v", n)
		}

		// The notification itself goes out next, from <>, and is never
		// bounced: refuse it too.
		ts.SetScript(smtptest.Script{Rcpt: func(*smtptest.Conn, string) *protocol.Reply { return smtptest.Reply(550, "5.1.1", "gone") }})
		st = f.run(false)
		if st.DSNs != 0 || st.Failed != 1 || len(f.queuedFrom("")) != 0 {
			t.Errorf("bounce of a bounce? stats %+v", st)
		}
	})
}

// A message from <> that fails is not bounced; it goes to failed/.
func TestNullSenderNeverBounced(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(*smtptest.Conn, string) *protocol.Reply {
			return smtptest.Reply(550, "5.1.1", "no")
		}}})
		f := newFixtureOver(t, tr, ts)
		id := f.queue("", []string{"a@example.net"}, body("bounce"))
		st := f.run(false)
		if st.DSNs != 0 || len(f.names(spool.QueueDir)) != 0 {
			t.Errorf("stats %+v, queue %v", st, f.names(spool.QueueDir))
		}
		if got := f.names(queue.FailedDir); len(got) != 2 || got[0] != id {
			t.Errorf("failed/ %v", got)
		}
	})
}

// A 5xx to MAIL, or after the dot, fails the whole transaction.
func TestMailAndDot5xxFailTransaction(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		for _, tc := range []struct {
			name string
			s    smtptest.Script
			data int
		}{
			{"mail", smtptest.Script{Mail: func(*smtptest.Conn, string) *protocol.Reply {
				return smtptest.Reply(553, "5.7.1", "sender rejected")
			}}, 0},
			{"dot", smtptest.Script{Data: func(*smtptest.Conn, []byte) *protocol.Reply {
				return smtptest.Reply(554, "5.6.0", "content rejected")
			}}, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ts := smtptest.Start(t, smtptest.Options{Script: tc.s})
				f := newFixtureOver(t, tr, ts)
				f.queue("s@example.org", []string{"a@x.test", "b@x.test"}, body("x"))
				st := f.run(false)
				if st.Failed != 2 || st.DSNs != 1 || st.Delivered != 0 {
					t.Errorf("stats %+v", st)
				}
				if datas := ts.Datas(); datas != tc.data {
					t.Errorf("%d DATA, want %d", datas, tc.data)
				}
				text := content(t, f.queuedFrom("")[0])
				if strings.Count(text, "Action: failed") != 2 {
					t.Errorf("notification:\n%s", text)
				}
			})
		}
	})
}

// A message larger than the server's SIZE is not sent: its recipients
// fail with 5.3.4 (RFC 1870) without a MAIL command.
func TestSizeLimitFailsWithoutSending(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{MaxMessageSize: 100})
	f := newFixture(t, ts.Addr)
	f.queue("s@example.org", []string{"a@x.test"}, body(strings.Repeat("x", 200)))
	f.queue("s@example.org", []string{"b@x.test"}, "Subject: small\r\n\r\nok\r\n")
	st := f.run(false)
	if st.Failed != 1 || st.Delivered != 1 || st.DSNs != 1 {
		t.Errorf("stats %+v", st)
	}
	if txs := ts.Transactions(); len(txs) != 1 || txs[0].To[0] != "b@x.test" {
		t.Errorf("transactions %+v", txs)
	}
	if text := content(t, f.queuedFrom("")[0]); !strings.Contains(text, "Status: 5.3.4\r\n") ||
		strings.Contains(text, "Diagnostic-Code") {
		t.Errorf("notification:\n%s", text)
	}
}

// Without SMTPUTF8 at the server, a non-ASCII recipient fails alone with
// 5.6.7; with it, MAIL carries SMTPUTF8 and both go.
func TestSMTPUTF8(t *testing.T) {
	rcpts := []string{"ascii@x.test", "d\u00e9j\u00e0@x.test"}
	t.Run("absent", func(t *testing.T) {
		ts := smtptest.Start(t, smtptest.Options{Withhold: protocol.ExtSMTPUTF8})
		f := newFixture(t, ts.Addr)
		f.queue("s@example.org", rcpts, body("x"), func(e *spool.Envelope) { e.SMTPUTF8 = true })
		st := f.run(false)
		if st.Delivered != 1 || st.Failed != 1 {
			t.Errorf("stats %+v", st)
		}
		if txs := ts.Transactions(); len(txs) != 1 || txs[0].To[0] != "ascii@x.test" || txs[0].SMTPUTF8 {
			t.Errorf("transactions %+v", txs)
		}
		d := f.queuedFrom("")[0]
		// RFC 6533 section 3: the utf-8 address type, in its 7-bit xtext
		// form in message/delivery-status.
		if text := content(t, d); !strings.Contains(text, `Final-Recipient: utf-8; d\x{E9}j\x{E0}@x.test`+"\r\nAction: failed\r\nStatus: 5.6.7") {
			t.Errorf("notification:\n%s", text)
		}
	})
	t.Run("present", func(t *testing.T) {
		ts := smtptest.Start(t, smtptest.Options{})
		f := newFixture(t, ts.Addr)
		f.queue("s@example.org", rcpts, body("x"), func(e *spool.Envelope) { e.SMTPUTF8 = true })
		f.run(false)
		if txs := ts.Transactions(); len(txs) != 1 || len(txs[0].To) != 2 || !txs[0].SMTPUTF8 {
			t.Errorf("transactions %+v", txs)
		}
	})
}

// Expiry needs both the queue lifetime and MinAttempts: a clock jumping
// six days forward does not bounce a message tried once. When both hold,
// the notification carries the remote's last 4xx status.
func TestExpiryNeedsAgeAndAttempts(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(*smtptest.Conn, string) *protocol.Reply {
			return smtptest.Reply(452, "4.2.2", "mailbox full")
		}}})
		f := newFixtureOver(t, tr, ts)
		f.s.Config.MinAttempts = 3
		id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
		f.run(false)
		f.clk.Add(6 * 24 * time.Hour) // jump forward
		st := f.run(false)
		if st.Failed != 0 || st.Deferred != 1 {
			t.Fatalf("expired after 2 attempts: %+v", st)
		}
		f.clk.Add(10 * time.Minute) // the second backoff
		st = f.run(false)
		if st.Failed != 1 || st.DSNs != 1 {
			t.Fatalf("not expired after 3 attempts and 6 days: %+v", st)
		}
		text := content(t, f.queuedFrom("")[0])
		for _, want := range []string{"Action: failed\r\nStatus: 4.2.2\r\n", "Diagnostic-Code: smtp; 452 4.2.2 mailbox full"} {
			if !strings.Contains(text, want) {
				t.Errorf("notification lacks %q:\n%s", want, text)
			}
		}
		if np := checkNotice(t, text, body("x"), "s@example.org", 1); !strings.Contains(np.text,
			"<a@x.test>: still undeliverable after 144h10m0s (3 attempts); last error: 452 4.2.2 mailbox full\r\n") {
			t.Errorf("human-readable part:\n%s", np.text)
		}
		fs, err := f.q.ReadFailedState(id)
		if err != nil || !fs.Rcpts[0].Expired || fs.Attempts != 3 {
			t.Errorf("failed state %+v, %v", fs, err)
		}
	})
}

// A smarthost that cannot be reached never expires mail: it is our
// configuration or our relay, not the recipient.
func TestUnreachableSmarthostNeverExpires(t *testing.T) {
	f := newFixture(t, refusedAddr(t))
	f.s.Config.MinAttempts = 2
	id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
	for range 3 {
		st := f.run(false)
		if st.Deferred != 1 || st.Failed != 0 {
			t.Fatalf("stats %+v", st)
		}
		f.clk.Add(6 * 24 * time.Hour)
	}
	s := f.state(id)
	if s.Attempts != 3 || s.Rcpts[0].Stage != "connect" || s.Rcpts[0].Status != queue.Pending {
		t.Errorf("state %+v", s)
	}
}

// deferringServer is a smarthost that answers 451 4.3.0 to every RCPT
// while *fail is true, and accepts it once it is false.
func deferringServer(t *testing.T, fail *bool) *smtptest.Server {
	return smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(*smtptest.Conn, string) *protocol.Reply {
		if *fail {
			return smtptest.Reply(451, "4.3.0", "later")
		}
		return nil
	}}})
}

// A clock set back cannot freeze a message longer than BackoffMax: one
// whose next attempt lies further ahead than that is due now.
func TestClockBackwardDoesNotFreeze(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		fail := true
		ts := deferringServer(t, &fail)
		f := newFixtureOver(t, tr, ts)
		id := f.queue("s@example.org", []string{"a@x.test"}, body("x"))
		f.run(false)
		if s := f.state(id); s == nil || !s.Next.Equal(f.clk.Now().Add(5*time.Minute)) {
			t.Fatalf("state %+v", s)
		}
		f.clk.Add(time.Minute)
		if st := f.run(false); st.Due != 0 {
			t.Fatalf("due before its time: %+v", st)
		}
		f.clk.Add(-365 * 24 * time.Hour) // the clock is set back a year
		fail = false
		if st := f.run(false); st.Due != 1 || st.Delivered != 1 {
			t.Fatalf("frozen by a clock set back: %+v", st)
		}
	})
}

// --all ignores retry times (as postqueue -f).
func TestAllIgnoresRetryTimes(t *testing.T) {
	overTransports(t, func(t *testing.T, tr string) {
		fail := true
		ts := deferringServer(t, &fail)
		f := newFixtureOver(t, tr, ts)
		f.queue("s@example.org", []string{"a@x.test"}, body("x"))
		f.run(false)
		fail = false
		if st := f.run(false); st.Due != 0 {
			t.Fatalf("due: %+v", st)
		}
		if st := f.run(true); st.Due != 1 || st.Delivered != 1 {
			t.Fatalf("--all: %+v", st)
		}
	})
}
