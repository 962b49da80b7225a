package send

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/route"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// withDSN gives a queued message the DSN parameters of RFC 3461: RET
// and ENVID, and NOTIFY and ORCPT for each recipient in order.
func withDSN(ret, envid string, rcpts ...spool.RcptDSN) func(*spool.Envelope) {
	return func(e *spool.Envelope) { e.Ret, e.EnvID, e.DSN = ret, envid, rcpts }
}

// TestDSNPassedOn: a next hop that offers DSN gets the message's RET,
// ENVID and each recipient's NOTIFY and ORCPT as the sender gave them
// (RFC 3461 section 5.2.1). Over SMTP: the memory transport carries no
// parameters.
func TestDSNPassedOn(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{})
	f := newFixtureOver(t, "smarthost", ts)
	f.queue("sender@example.org", []string{"a@example.net", "b@example.net"}, body("dsn"),
		withDSN("HDRS", "env id 42", spool.RcptDSN{Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;alias@example.net"}, spool.RcptDSN{Notify: "NEVER"}))
	f.run(false)
	txs := ts.Transactions()
	if len(txs) != 1 {
		t.Fatalf("transactions %+v", txs)
	}
	tx := txs[0]
	if tx.Ret != "HDRS" || tx.EnvID != "env id 42" || strings.Join(tx.Notify, "|") != "SUCCESS,FAILURE|NEVER" ||
		strings.Join(tx.ORcpt, "|") != "rfc822;alias@example.net|" {
		t.Errorf("next hop got RET %q ENVID %q NOTIFY %q ORCPT %q", tx.Ret, tx.EnvID, tx.Notify, tx.ORcpt)
	}
}

// TestNotifyDecidesTheNotice: of three recipients refused for good, the
// one with NOTIFY=NEVER and the one with NOTIFY=SUCCESS,DELAY get no
// notice (RFC 3461 section 4.1); the one with NOTIFY=FAILURE is in the
// one notice, with the sender's ENVID as Original-Envelope-Id and its
// ORCPT as Original-Recipient (RFC 3464 sections 2.2.1 and 2.3.1).
func TestNotifyDecidesTheNotice(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
		return smtptest.Reply(550, "5.1.1", "no such user here")
	}}})
	f := newFixtureOver(t, "smarthost", ts)
	f.queue("sender@example.org", []string{"never@example.net", "quiet@example.net", "tell@example.net"}, body("dsn"),
		withDSN("", "ENV-7", spool.RcptDSN{Notify: "NEVER"}, spool.RcptDSN{Notify: "SUCCESS,DELAY"},
			spool.RcptDSN{Notify: "FAILURE", ORcpt: "rfc822;Tell.Me@example.net"}))
	st := f.run(false)
	if st.Failed != 3 || st.DSNs != 1 {
		t.Errorf("stats %+v", st)
	}
	dsns := f.queuedFrom("")
	if len(dsns) != 1 {
		t.Fatalf("%d notices, want 1", len(dsns))
	}
	text := content(t, dsns[0])
	if strings.Contains(text, "never@example.net") || strings.Contains(text, "quiet@example.net") {
		t.Errorf("the notice reports a recipient who asked for none:\n%s", text)
	}
	for _, want := range []string{
		"Original-Envelope-Id: ENV-7\r\nReporting-MTA: ",
		"Original-Recipient: rfc822;Tell.Me@example.net\r\nFinal-Recipient: rfc822; tell@example.net\r\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the notice lacks %q:\n%s", want, text)
		}
	}
	// All NEVER: no notice at all, and the log says why.
	f2 := newFixtureOver(t, "smarthost", ts)
	f2.queue("sender@example.org", []string{"never@example.net"}, body("dsn"), withDSN("", "", spool.RcptDSN{Notify: "NEVER"}))
	if st := f2.run(false); st.Failed != 1 || st.DSNs != 0 || len(f2.queuedFrom("")) != 0 {
		t.Errorf("NOTIFY=NEVER: stats %+v, %d notices", st, len(f2.queuedFrom("")))
	}
	if log := f2.logs.String(); !strings.Contains(log, "the sender asked for none (NOTIFY)") || strings.Contains(log, "from <>") {
		t.Errorf("the log does not say why there is no notice:\n%s", log)
	}
}

// TestSuccessNotice: a recipient with NOTIFY=SUCCESS gets a "relayed"
// notice from us when the next hop took the message without offering DSN
// (RFC 3461 section 5.2.2), and none when it offered DSN (NOTIFY was
// passed on: the notice is the next hop's). A recipient without SUCCESS
// in its NOTIFY, or a message from <>, never gets one. Each case against
// both next hops.
func TestSuccessNotice(t *testing.T) {
	for _, hop := range []struct {
		name     string
		withhold protocol.Extensions
	}{{"dsn", 0}, {"no-dsn", protocol.ExtDSN}} {
		for _, tc := range []struct {
			name, from, notify string
			notice             bool // from us, to a next hop without DSN
		}{
			{"success", "sender@example.org", "SUCCESS", true},
			{"success,failure,delay", "sender@example.org", "SUCCESS,FAILURE,DELAY", true},
			{"failure", "sender@example.org", "FAILURE", false},
			{"never", "sender@example.org", "NEVER", false},
			{"absent", "sender@example.org", "", false},
			{"null sender", "", "SUCCESS", false},
		} {
			t.Run(hop.name+"/"+tc.name, func(t *testing.T) {
				ts := smtptest.Start(t, smtptest.Options{Withhold: hop.withhold})
				f := newFixtureOver(t, "smarthost", ts)
				id := f.queue(tc.from, []string{"a@example.net", "quiet@example.net"}, body("dsn"),
					withDSN("HDRS", "ENV-9", spool.RcptDSN{Notify: tc.notify, ORcpt: "rfc822;Alias@example.net"}, spool.RcptDSN{Notify: "FAILURE"}))
				st := f.run(false)
				want := tc.notice && hop.withhold != 0
				notices := f.queuedFrom("")
				if st.Delivered != 2 || len(notices) != boolInt(want) || st.DSNs != boolInt(want) {
					t.Fatalf("stats %+v, %d notices, want %v", st, len(notices), want)
				}
				if len(f.names(spool.QueueDir)) != boolInt(want) || len(f.names(queue.StateDir)) != 0 {
					t.Errorf("left: queue/ %v, state/ %v", f.names(spool.QueueDir), f.names(queue.StateDir))
				}
				tx := ts.Transactions()[0]
				if hop.withhold == 0 && strings.Join(tx.Notify, "|") != tc.notify+"|FAILURE" {
					t.Errorf("NOTIFY not passed on: %q", tx.Notify)
				}
				if !want {
					return
				}
				d := notices[0]
				text := content(t, d)
				np := checkNotice(t, text, body("dsn"), d.To[0], 1)
				if d.To[0] != tc.from || np.perRcpt[0].Get("Action") != "relayed" || np.perRcpt[0].Get("Status") != "2.0.0" ||
					np.perRcpt[0].Get("Final-Recipient") != "rfc822; a@example.net" ||
					np.perRcpt[0].Get("Original-Recipient") != "rfc822;Alias@example.net" ||
					np.perMsg.Get("Original-Envelope-Id") != "ENV-9" ||
					!strings.HasPrefix(np.perRcpt[0].Get("Remote-MTA"), "dns; 127.0.0.1") ||
					!strings.Contains(text, "Subject: Successful Mail Delivery Report\r\n") ||
					np.headers == "" || strings.Contains(text, "Hello.") {
					t.Errorf("notice to %v:\n%s", d.To, text)
				}
				if !strings.Contains(f.logs.String(), "dsn="+d.QueueID) || !strings.Contains(f.logs.String(), "id="+id) {
					t.Errorf("the log does not name the notice:\n%s", f.logs.String())
				}
				// The notice itself is delivered, once, and never gets a
				// notice of its own.
				f.run(true)
				if n := len(f.queuedFrom("")); n != 0 {
					t.Errorf("%d notices left", n)
				}
				txs := ts.Transactions()
				if len(txs) != 2 || txs[1].From != "" || string(txs[1].Data) != text {
					t.Errorf("%d transactions; the notice was not delivered as spooled", len(txs))
				}
			})
		}
	}
}

// TestDeliveredNotice: a final delivery by a local transport (a maildir
// route) gives a recipient with NOTIFY=SUCCESS a "delivered" notice (RFC
// 3461 section 5.2.3), itself delivered to the sender's maildir; the
// recipient without SUCCESS gets none.
func TestDeliveredNotice(t *testing.T) {
	mail := t.TempDir()
	tb, err := route.Parse(strings.NewReader("example.org maildir:"+mail+"/%d/%u/\n"), "routes")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.s.Config.Routes = tb
	f.queue("sender@example.org", []string{"a@example.org", "b@example.org"}, body("dsn"),
		withDSN("", "", spool.RcptDSN{Notify: "SUCCESS"}, spool.RcptDSN{}))
	if st := f.run(false); st.Delivered != 2 || st.DSNs != 1 {
		t.Fatalf("stats %+v", st)
	}
	notices := f.queuedFrom("")
	if len(notices) != 1 {
		t.Fatalf("%d notices", len(notices))
	}
	text := content(t, notices[0])
	np := checkNotice(t, text, body("dsn"), "sender@example.org", 1)
	if h := np.perRcpt[0]; h.Get("Action") != "delivered" || h.Get("Final-Recipient") != "rfc822; a@example.org" ||
		h.Get("Remote-MTA") != "" || h.Get("Diagnostic-Code") != "" || strings.Contains(text, mail) {
		t.Errorf("per-recipient fields %v", h)
	}
	if st := f.run(false); st.Delivered != 1 {
		t.Fatalf("the notice was not delivered: %+v", st)
	}
	got := maildirFiles(t, filepath.Join(mail, "example.org", "sender"), "new")
	if len(got) != 1 {
		t.Fatalf("sender's maildir holds %d messages", len(got))
	}
	if b, _ := os.ReadFile(filepath.Join(mail, "example.org", "sender", "new", got[0])); !strings.Contains(string(b), "Action: delivered") {
		t.Errorf("delivered notice:\n%s", b)
	}
}

// TestDelayNotice: with DelayWarning 4h, a recipient still deferred once
// the message is 4 hours old gets one delay notice (RFC 3461 section
// 4.1) when its NOTIFY names DELAY or it has none, with Status 4.x.x
// from the last reply and Will-Retry-Until; never for NOTIFY=NEVER or a
// NOTIFY without DELAY, never twice over later runs, never for a message
// from <>. Before 4 hours, none.
func TestDelayNotice(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
		if strings.HasSuffix(to, "@example.net") {
			return smtptest.Reply(451, "4.2.2", "mailbox full")
		}
		return nil
	}}})
	f := newFixtureOver(t, "smarthost", ts)
	f.s.Config.DelayWarning = 4 * time.Hour
	id := f.queue("sender@example.org", []string{"a@example.net", "b@example.net", "never@example.net", "fail@example.net", "ok@example.net"},
		body("late"), withDSN("", "ENV-3", spool.RcptDSN{}, spool.RcptDSN{Notify: "FAILURE,DELAY", ORcpt: "rfc822;B@example.net"},
			spool.RcptDSN{Notify: "NEVER"}, spool.RcptDSN{Notify: "FAILURE"}, spool.RcptDSN{Notify: "SUCCESS"}))
	bounceID := f.queue("", []string{"a@example.net"}, body("a bounce"))
	if st := f.run(false); st.DSNs != 0 || st.Deferred != 6 {
		t.Fatalf("before 4h: stats %+v", st)
	}
	f.clk.Add(3*time.Hour + 59*time.Minute)
	if st := f.run(true); st.DSNs != 0 {
		t.Fatalf("at 3h59m: stats %+v", st)
	}
	f.clk.Add(time.Minute)
	if st := f.run(true); st.DSNs != 1 {
		t.Fatalf("at 4h: stats %+v", st)
	}
	notices := f.queuedFrom("")
	var d *spool.Message
	for _, m := range notices {
		if m.QueueID != bounceID {
			d = m
		}
	}
	if len(notices) != 2 || d == nil {
		t.Fatalf("%d messages from <> queued, want the bounce and one notice", len(notices))
	}
	text := content(t, d)
	np := checkNotice(t, text, body("late"), "sender@example.org", 2)
	for n, want := range []string{"rfc822; a@example.net", "rfc822; b@example.net"} {
		h := np.perRcpt[n]
		if h.Get("Final-Recipient") != want || h.Get("Action") != "delayed" || h.Get("Status") != "4.2.2" ||
			h.Get("Diagnostic-Code") != "smtp; 451 4.2.2 mailbox full" ||
			h.Get("Will-Retry-Until") != "Thu, 26 Nov 2026 10:00:00 +0000" {
			t.Errorf("recipient %d: %v", n, h)
		}
	}
	if np.perRcpt[1].Get("Original-Recipient") != "rfc822;B@example.net" || np.perMsg.Get("Original-Envelope-Id") != "ENV-3" ||
		!strings.Contains(text, "Subject: Delayed Mail (still being retried)\r\n") || strings.Contains(text, "Hello.") {
		t.Errorf("notice:\n%s", text)
	}
	st := f.state(id)
	for i, r := range st.Rcpts {
		if (r.Delayed == d.QueueID) != (i < 2) || r.Status != queue.Pending {
			t.Errorf("state of %s: %+v", r.Addr, r)
		}
	}
	// Later runs: the notice is delivered, and no other is made.
	for range 3 {
		f.clk.Add(2 * time.Hour)
		if st := f.run(true); st.DSNs != 0 {
			t.Errorf("a second delay notice: stats %+v", st)
		}
	}
	n := 0
	for _, tx := range ts.Transactions() {
		if tx.From == "" && strings.Contains(string(tx.Data), "Action: delayed") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d delay notices delivered, want 1", n)
	}
}

// With DelayWarning 0 no delay notice is made at all, NOTIFY=DELAY
// included (as Postfix with delay_warning_time = 0).
func TestDelayNoticeOff(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
		return smtptest.Reply(451, "4.2.2", "mailbox full")
	}}})
	f := newFixtureOver(t, "smarthost", ts)
	f.queue("sender@example.org", []string{"a@example.net", "b@example.net"}, body("late"),
		withDSN("", "", spool.RcptDSN{}, spool.RcptDSN{Notify: "DELAY"}))
	f.run(false)
	f.clk.Add(24 * time.Hour)
	if st := f.run(true); st.DSNs != 0 || len(f.queuedFrom("")) != 0 {
		t.Errorf("stats %+v, %d notices", st, len(f.queuedFrom("")))
	}
}

// TestNoticeMatrix: for each NOTIFY and RET, against a next hop that
// offers DSN and one that does not, a message to a recipient the next hop
// refuses and one it takes gives: a failure notice when NOTIFY is absent
// or names FAILURE, returning the whole message for RET=FULL and the
// header section otherwise; a "relayed" success notice, header section
// only, when NOTIFY names SUCCESS and the next hop lacks DSN; nothing
// else.
func TestNoticeMatrix(t *testing.T) {
	orig := body("matrix")
	for _, hop := range []struct {
		name     string
		withhold protocol.Extensions
	}{{"dsn", 0}, {"no-dsn", protocol.ExtDSN}} {
		for _, notify := range []string{"", "NEVER", "FAILURE", "SUCCESS", "SUCCESS,FAILURE", "SUCCESS,FAILURE,DELAY"} {
			for _, ret := range []string{"", "HDRS", "FULL"} {
				t.Run(hop.name+"/notify="+notify+"/ret="+ret, func(t *testing.T) {
					ts := smtptest.Start(t, smtptest.Options{Withhold: hop.withhold,
						Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
							if to == "bad@example.net" {
								return smtptest.Reply(550, "5.1.1", "no such user")
							}
							return nil
						}}})
					f := newFixtureOver(t, "smarthost", ts)
					f.s.Config.NoticeReturnMax = 1 << 20
					f.queue("sender@example.org", []string{"bad@example.net", "ok@example.net"}, orig,
						withDSN(ret, "", spool.RcptDSN{Notify: notify}, spool.RcptDSN{Notify: notify}))
					f.run(false)
					want := map[string]string{} // Action → the returned part's type
					if notify == "" || strings.Contains(notify, "FAILURE") {
						want["failed"] = "text/rfc822-headers"
						if ret == "FULL" {
							want["failed"] = "message/rfc822"
						}
					}
					if strings.Contains(notify, "SUCCESS") && hop.withhold != 0 {
						want["relayed"] = "text/rfc822-headers"
					}
					got := map[string]string{}
					for _, d := range f.queuedFrom("") {
						np := checkNotice(t, content(t, d), orig, d.To[0], 1)
						got[np.perRcpt[0].Get("Action")] = np.parts[2]["type"]
						if np.parts[2]["type"] == "message/rfc822" && np.full != orig {
							t.Errorf("returned message %q", np.full)
						}
					}
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("notices %v, want %v", got, want)
					}
				})
			}
		}
	}
}

// TestNoticeRetFullLimit: over SMTP_SEND_NOTICE_RETURN_MAX, RET=FULL
// gets the header section, and the notice says why.
func TestNoticeRetFullLimit(t *testing.T) {
	ts := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Rcpt: func(_ *smtptest.Conn, to string) *protocol.Reply {
		return smtptest.Reply(550, "5.1.1", "no such user")
	}}})
	f := newFixtureOver(t, "smarthost", ts)
	orig := body("big") + strings.Repeat("0123456789abcdef\r\n", 100)
	f.s.Config.NoticeReturnMax = int64(len(orig)) - 1
	f.queue("sender@example.org", []string{"bad@example.net"}, orig, withDSN("FULL", "", spool.RcptDSN{}))
	f.run(false)
	d := f.queuedFrom("")
	if len(d) != 1 {
		t.Fatalf("%d notices", len(d))
	}
	np := checkNotice(t, content(t, d[0]), orig, "sender@example.org", 1)
	if np.parts[2]["type"] != "text/rfc822-headers" || np.full != "" ||
		!strings.Contains(strings.ReplaceAll(np.text, "\r\n", " "), fmt.Sprintf("%d bytes, is larger than the %d returned whole", len(orig), len(orig)-1)) {
		t.Errorf("parts %v, text:\n%s", np.parts, np.text)
	}
}
