package send

import (
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
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
