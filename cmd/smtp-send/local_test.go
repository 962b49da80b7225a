package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
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
// we are the queue), is tried once per run, and the next run, with the
// server up, delivers.
func TestLMTPDownDefers(t *testing.T) {
	dv := startDovecot(t, "alice@mail.test")
	dir := t.TempDir()
	id := queue(t, dir, "alice@mail.test")
	id2 := queue(t, dir, "alice@mail.test")
	r := runBinary(t, localEnv(t, dir, "mail.test lmtp:unix:"+dv.Socket+".gone\n"))
	for _, i := range []string{id, id2} {
		if r.code != 0 || !strings.Contains(r.stderr, "id="+i+" rcpt=alice@mail.test status=deferred relay=unix:"+dv.Socket+".gone stage=connect") {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
	}
	if n := strings.Count(r.stderr, "LMTP server down for this run"); n != 1 {
		t.Errorf("the server was tried %d times in the run\n%s", n, r.stderr)
	}
	r = runBinary(t, localEnv(t, dir, "mail.test lmtp:unix:"+dv.Socket+"\n"), "--all")
	if r.code != 0 || dv.count("alice@mail.test") != 2 {
		t.Fatalf("exit %d, %d messages\n%s", r.code, dv.count("alice@mail.test"), r.stderr)
	}
}

// maildir: through the binary: each recipient's file in its maildir
// (made on the way), LF line ends with Return-Path: and Delivered-To:
// on top, mode 0600, nothing left in tmp/; Dovecot, given the files as
// its mail user would own them, reads every message (doveadm search).
func TestMaildirDovecot(t *testing.T) {
	dv := startDovecot(t, "carol@maildir.test", "dave@maildir.test")
	dir := t.TempDir()
	queue(t, dir, "carol@maildir.test", "Dave@MAILDIR.test")
	queue(t, dir, "carol@maildir.test")
	r := runBinary(t, localEnv(t, dir, "maildir.test maildir:"+dv.Mail+"/%d/%u/Maildir/\n"))
	if r.code != 0 || strings.Count(r.stderr, "status=sent relay=maildir") != 3 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	carol := filepath.Join(dv.Mail, "maildir.test", "carol", "Maildir")
	files, _ := filepath.Glob(filepath.Join(carol, "new", "*"))
	if len(files) != 2 {
		t.Fatalf("carol's new/: %q", files)
	}
	b, _ := os.ReadFile(files[0])
	if want := "Return-Path: <s@example.org>\nDelivered-To: carol@maildir.test\nSubject: test\n\nbody\n"; string(b) != want {
		t.Errorf("file %q, want %q", b, want)
	}
	if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if tmp, _ := os.ReadDir(filepath.Join(carol, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ holds %d files", len(tmp))
	}
	giveToMailUser(t, filepath.Join(dv.Mail, "maildir.test"))
	if n, m := dv.count("carol@maildir.test"), dv.count("dave@maildir.test"); n != 2 || m != 1 {
		t.Errorf("Dovecot sees %d messages for carol, %d for dave", n, m)
	}
	if got := dv.doveadm("fetch", "-u", "dave@maildir.test", "hdr.delivered-to", "mailbox", "INBOX", "all"); !strings.Contains(got, "Dave@MAILDIR.test") {
		t.Errorf("dave's message: %q", got)
	}
}

// mbox: through the binary, two messages appended to one mbox file,
// which s-nail lists (-H: the header summary) as two messages.
func TestMboxSNail(t *testing.T) {
	snail := testutil.Need(t, "s-nail")
	dir := t.TempDir()
	mail := t.TempDir()
	queue(t, dir, "erin@mbox.test")
	queue(t, dir, "Erin@MBOX.test")
	r := runBinary(t, localEnv(t, dir, "mbox.test mbox:"+mail+"/%u\n"))
	if r.code != 0 || strings.Count(r.stderr, "status=sent relay=mbox") != 2 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	out, err := exec.Command(snail, "-:/", "-Hf", filepath.Join(mail, "erin")).CombinedOutput()
	if err != nil || strings.Count(string(out), "s@example.org") != 2 || strings.Count(string(out), " test") != 2 {
		t.Errorf("s-nail: %v\n%s", err, out)
	}
}
