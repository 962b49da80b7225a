package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// localEnv is the environment of a run with the route table table and
// no smarthost.
func localEnv(t *testing.T, dir, table string, extra ...string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "routes")
	if err := os.WriteFile(p, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	return append([]string{"SMTP_SPOOL_DIR=" + dir, "SMTP_HOSTNAME=sender.test", "SMTP_SEND_ROUTES=" + p,
		"SMTP_SEND_CONNECTIONS=1", "SMTP_SEND_CONNECT_TIMEOUT=5s", "SMTP_SEND_COMMAND_TIMEOUT=20s"}, extra...)
}

// LMTP to a real Dovecot, over its unix socket and over TCP: each
// recipient gets its own reply after the data; the users Dovecot knows
// have the message (doveadm fetch), the one it does not know is refused
// with Dovecot's own 550 5.1.1 and gets a notification; nothing stays
// queued.
func TestLMTPDovecot(t *testing.T) {
	dv := startDovecot(t, "alice@mail.test", "bob@mail.test", "carol@tcp.test")
	dir := t.TempDir()
	id := queue(t, dir, "alice@mail.test", "nobody@mail.test", "bob@mail.test", "carol@tcp.test")
	r := runBinary(t, localEnv(t, dir, "mail.test lmtp:unix:"+dv.Socket+"\ntcp.test lmtp:["+strings.Replace(dv.Addr, ":", "]:", 1)+"\n"))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, u := range []string{"alice@mail.test", "bob@mail.test", "carol@tcp.test"} {
		if got := dv.doveadm("fetch", "-u", u, "hdr.subject", "mailbox", "INBOX", "all"); strings.Count(got, "hdr.subject: test") != 1 {
			t.Errorf("%s's INBOX: %q", u, got)
		}
		if !strings.Contains(r.stderr, "rcpt="+u+" status=sent") {
			t.Errorf("no sent line for %s:\n%s", u, r.stderr)
		}
	}
	if !strings.Contains(r.stderr, "msg=delivery id="+id+" rcpt=nobody@mail.test status=failed relay=unix:"+dv.Socket+" stage=dot code=550 enhanced=5.1.1") &&
		!strings.Contains(r.stderr, "msg=delivery id="+id+" rcpt=nobody@mail.test status=failed relay=unix:"+dv.Socket+" stage=rcpt code=550 enhanced=5.1.1") {
		t.Errorf("no failure line for nobody:\n%s", r.stderr)
	}
	lab := &mxLab{t: t, spool: dir}
	b := lab.bounces()
	if len(b) != 1 || !strings.Contains(b[0], "Final-Recipient: rfc822; nobody@mail.test") || !strings.Contains(b[0], "doesn't exist") {
		t.Errorf("notifications: %q", b)
	}
	if q := lab.queued(); len(q) != 1 { // the notification only
		t.Errorf("queue after the run: %q", q)
	}
}

// A down LMTP server defers every recipient (an LMTP server has no queue:
// we are the queue), and the next run, with the server up, delivers.
func TestLMTPDownDefers(t *testing.T) {
	dv := startDovecot(t, "alice@mail.test")
	dir := t.TempDir()
	id := queue(t, dir, "alice@mail.test")
	r := runBinary(t, localEnv(t, dir, "mail.test lmtp:unix:"+dv.Socket+".gone\n"))
	if r.code != 0 || !strings.Contains(r.stderr, "id="+id+" rcpt=alice@mail.test status=deferred relay=unix:"+dv.Socket+".gone stage=connect") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	r = runBinary(t, localEnv(t, dir, "mail.test lmtp:unix:"+dv.Socket+"\n"), "--all")
	if r.code != 0 || dv.count("alice@mail.test") != 1 {
		t.Fatalf("exit %d, %d messages\n%s", r.code, dv.count("alice@mail.test"), r.stderr)
	}
}
