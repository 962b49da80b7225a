package sendmail

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// TestResent: with -t, a message with Resent-To:, Resent-Cc: or
// Resent-Bcc: goes to those alone (RFC 5322 section 3.6.6, as Postfix),
// not to the original To: and Cc:; the arguments are added as ever;
// Resent-Bcc: and Bcc: are removed; the other fields are kept as they
// are. Without -t the fields name no recipient, and Resent-Bcc: is still
// removed.
func TestResent(t *testing.T) {
	in := "Resent-From: alice@d.test\nResent-To: new@x.test\nResent-Cc: \"C, C\" <newcc@x.test>\n" +
		"Resent-Bcc: hidden@x.test,\n  hidden2@x.test\nTo: orig@x.test\nCc: origcc@x.test\nBcc: origbcc@x.test\nSubject: s\n\nbody\n"
	q := submit(t, []string{"-t", "arg@x.test"}, in)
	want := []string{"arg@x.test", "new@x.test", "newcc@x.test", "hidden@x.test", "hidden2@x.test"}
	if q.status != 0 || !slices.Equal(q.env.To, want) {
		t.Fatalf("status %d, recipients %v, want %v", q.status, q.env.To, want)
	}
	h := header(q.msg)
	for _, gone := range []string{"hidden", "Resent-Bcc", "origbcc", "Bcc:"} {
		if strings.Contains(q.msg, gone) {
			t.Errorf("%q in the message:\n%s", gone, q.msg)
		}
	}
	if !strings.Contains(h, "\r\nResent-From: alice@d.test\r\nResent-To: new@x.test\r\nResent-Cc: \"C, C\" <newcc@x.test>\r\nTo: orig@x.test\r\nCc: origcc@x.test\r\nSubject: s\r\n") {
		t.Errorf("fields not kept:\n%s", h)
	}

	// Resent-Bcc: alone is enough to make it a resending.
	q = submit(t, []string{"-t"}, "resent-bcc: only@x.test\nTo: orig@x.test\n\nbody\n")
	if !slices.Equal(q.env.To, []string{"only@x.test"}) || strings.Contains(q.msg, "only@") {
		t.Errorf("Resent-Bcc: alone: %v\n%s", q.env.To, q.msg)
	}
	// Without Resent- fields, To:, Cc: and Bcc: as before.
	q = submit(t, []string{"-t"}, "Resent-From: a@x.test\nTo: orig@x.test\n\nbody\n")
	if !slices.Equal(q.env.To, []string{"orig@x.test"}) {
		t.Errorf("Resent-From: only: %v", q.env.To)
	}
	// Without -t: the arguments only, Resent-Bcc: removed.
	q = submit(t, []string{"arg@x.test"}, in)
	if !slices.Equal(q.env.To, []string{"arg@x.test"}) || strings.Contains(q.msg, "hidden") {
		t.Errorf("without -t: %v\n%s", q.env.To, q.msg)
	}
	// A Resent-To: that cannot be read is EX_DATAERR, as To: is.
	if q := submit(t, []string{"-t"}, "Resent-To: <<bad\nTo: orig@x.test\n\nbody\n"); q.status != exitDataErr {
		t.Errorf("bad Resent-To:: status %d, want 65", q.status)
	}
}

// TestAuthWarning: a user who is not trusted and sets a sender that is
// not their own with -f or -r gets sendmail's X-Authentication-Warning:
// right after the Received: field; their own address (login at
// SMTP_SENDMAIL_DOMAIN or SMTP_HOSTNAME, the domain in any case), no -f,
// or a trusted user get none.
func TestAuthWarning(t *testing.T) {
	warn := func(addr, flag string) string {
		return "X-Authentication-Warning: h.test: alice set sender to " + addr + " using " + flag + "\r\n"
	}
	for _, c := range []struct {
		args    []string
		trusted bool
		want    string
	}{
		{[]string{"-f", "boss@corp.test"}, false, warn("boss@corp.test", "-f")},
		{[]string{"-rboss@corp.test"}, false, warn("boss@corp.test", "-r")},
		{[]string{"-f", "<>"}, false, warn("<>", "-f")},
		{[]string{"-f", "root"}, false, warn("root@d.test", "-f")},
		{[]string{"-f", "alice@other.test"}, false, warn("alice@other.test", "-f")},
		{[]string{"-f", "alice"}, false, ""},
		{[]string{"-f", "alice@D.TEST"}, false, ""},
		{[]string{"-f", "alice@h.test"}, false, ""},
		{nil, false, ""},
		{[]string{"-f", "boss@corp.test"}, true, ""},
	} {
		q := submitWith(t, append(c.args, "bob@x.test"), plain, func(s *Submission) { s.Trusted = c.trusted })
		if q.status != 0 {
			t.Fatalf("%q: status %d", c.args, q.status)
		}
		_, rest, _ := strings.Cut(q.msg, "\r\n\tid ")
		_, rest, _ = strings.Cut(rest, "\r\n")
		has := strings.HasPrefix(rest, "X-Authentication-Warning:")
		if c.want == "" && strings.Contains(q.msg, "X-Authentication-Warning") || c.want != "" && !strings.HasPrefix(rest, c.want) {
			t.Errorf("%q trusted %v: after Received: %q (a warning: %v), want %q", c.args, c.trusted, rest, has, c.want)
		}
	}
}

// TestReturnError: the error of a failed submission goes back to the
// user from the null sender, with the message: the whole of it when the
// failure came before the body was read (no recipients), its header
// alone when the body was already gone (the spool failed mid-message),
// and nothing when even the header could not be read.
func TestReturnError(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	cfg := &Config{SpoolDir: dir, Hostname: "h.test", SendmailDomain: "d.test"}
	queueInto := func(e *Submission, in io.Reader) (string, error) { return queue(e, cfg, in, io.Discard) }
	fail := func(args []string, in io.Reader) (*Submission, error) {
		t.Helper()
		o, err := Parse(append([]string{"sendmail", "-oem"}, args...))
		if err != nil {
			t.Fatal(err)
		}
		s := &Submission{Opts: o, Cfg: cfg, User: User{Uid: 1000, Login: "alice"}, Now: func() time.Time { return testNow }}
		_, err = queueInto(s, in)
		if err == nil {
			t.Fatalf("%q: queued", args)
		}
		return s, err
	}
	returned := func(s *Submission, err error) string {
		t.Helper()
		to, kept, rerr := s.ReturnError(err, queueInto)
		want := ReturnedNothing
		switch {
		case s.unsent != nil && s.unsent.rest != nil:
			want = ReturnedWhole
		case s.unsent != nil:
			want = ReturnedHeader
		}
		if rerr != nil || to != "alice@d.test" || kept != want {
			t.Fatalf("ReturnError: %q, %v, %v; want %v", to, kept, rerr, want)
		}
		ents, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir))
		if len(ents) != 1 {
			t.Fatalf("queue/ holds %d", len(ents))
		}
		p := filepath.Join(dir, spool.QueueDir, ents[0].Name())
		m, err := spool.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(p)
		defer m.Close()
		b, _ := io.ReadAll(m.Content())
		if m.From != "" || !slices.Equal(m.To, []string{"alice@d.test"}) {
			t.Errorf("envelope <%s> %v", m.From, m.To)
		}
		return string(b)
	}

	s, err := fail([]string{"-i", "-f", "boss@corp.test"}, strings.NewReader("Subject: cron output\nBcc: b@x.test\n\nline 1\n.\nline 3\n"))
	msg := returned(s, err)
	for _, want := range []string{"\r\nFrom: Mail Delivery Subsystem <MAILER-DAEMON@d.test>\r\n", "\r\nTo: <alice@d.test>\r\n",
		"\r\nAuto-Submitted: auto-replied\r\n", "\r\nSubject: Returned mail: see transcript for details\r\n",
		"\r\n\r\nThe message you gave to sendmail (uid 1000) was not queued:\r\n\r\n    no recipients",
		"------ The unsent message follows ------\r\nSubject: cron output\r\nBcc: b@x.test\r\n\r\nline 1\r\n.\r\nline 3\r\n"} {
		if !strings.Contains(msg, want) {
			t.Errorf("no %q in\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "X-Authentication-Warning") {
		t.Errorf("the returned error has a warning:\n%s", msg)
	}

	// The body was being written when the spool failed: the header only.
	s = &Submission{Opts: &Options{Recipients: []string{"b@x.test"}}, Cfg: cfg, User: User{Uid: 1000, Login: "alice"}, Now: time.Now}
	_, err = s.queue(func(*spool.Envelope) (sink, error) { return failingSink{}, nil }, strings.NewReader("Subject: half\n\nbody text\n"))
	if err == nil {
		t.Fatal("queued into a failing sink")
	}
	msg = returned(s, err)
	if !strings.Contains(msg, "Its header follows; the body was not kept.") || !strings.Contains(msg, "follows ------\r\nSubject: half\r\n") ||
		strings.Contains(msg, "body text") {
		t.Errorf("header only:\n%s", msg)
	}

	// A header over MaxHeaderSize: nothing of the message.
	s, err = fail([]string{"b@x.test"}, strings.NewReader("X: "+strings.Repeat("x", MaxHeaderSize)+"\n\nbody\n"))
	if msg = returned(s, err); !strings.Contains(msg, "read too little of it") || strings.Contains(msg, "xxxx") {
		t.Errorf("header too big:\n%.2000s", msg)
	}
}

// failingSink fails every write, as a full disk does.
type failingSink struct{}

func (failingSink) Write([]byte) (int, error) { return 0, syscall.ENOSPC }
func (failingSink) Commit() error             { return syscall.ENOSPC }
func (failingSink) Abort() error              { return nil }

// TestTrusted: root, the owner of the spool root, and the logins of
// SMTP_SENDMAIL_TRUSTED_USERS are trusted; anyone else is not.
func TestTrusted(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{SpoolDir: dir, SendmailTrustedUsers: []string{"www-data", " nagios"}}
	for _, c := range []struct {
		u    User
		want bool
	}{
		{User{Uid: 0, Login: "root"}, true},
		{User{Uid: os.Getuid(), Login: "owner"}, true},
		{User{Uid: 4242, Login: "nagios"}, true},
		{User{Uid: 4243, Login: "www-data"}, true},
		{User{Uid: 4244, Login: "alice"}, false},
		{User{Uid: 4245}, false},
	} {
		if got := trusted(c.u, cfg); got != c.want {
			t.Errorf("trusted(%+v) = %v, want %v", c.u, got, c.want)
		}
	}
}

// bufSink keeps what is written, for the session's dropMessage.
type bufSink struct{ bytes.Buffer }

func (*bufSink) Commit() error { return nil }
func (*bufSink) Abort() error  { return nil }

// TestSessionWarning: a -bs session's message gets the warning right
// after its first field (the session's Received:, folded), however the
// session's writes split the bytes, and only once.
func TestSessionWarning(t *testing.T) {
	const msg = "Received: from me\r\n\tby h.test; date\r\nSubject: s\r\n\r\nbody\r\n"
	const want = "Received: from me\r\n\tby h.test; date\r\nW: w\r\nSubject: s\r\n\r\nbody\r\n"
	for size := 1; size <= len(msg); size++ {
		b := &bufSink{}
		m := &dropMessage{d: &dropDelivery{}, sink: b, warning: []byte("W: w\r\n")}
		for p := msg; p != ""; {
			n := min(size, len(p))
			if k, err := m.Write([]byte(p[:n])); k != n || err != nil {
				t.Fatalf("Write: %d, %v", k, err)
			}
			p = p[n:]
		}
		if b.String() != want {
			t.Fatalf("in pieces of %d:\n%q\nwant\n%q", size, b.String(), want)
		}
	}
}

// TestMaxMessageSize: a message over SMTP_SENDMAIL_MAX_MESSAGE_SIZE, in
// the body or already in the header, is EX_DATAERR and leaves nothing;
// one at the limit is queued; 0 is no limit.
func TestMaxMessageSize(t *testing.T) {
	q := submit(t, []string{"b@x.test"}, plain)
	size := int64(len(q.msg))
	body := strings.Repeat("0123456789\n", 1000)
	for _, c := range []struct {
		limit  int64
		input  string
		status int
	}{
		{size, plain, 0},
		{size - 1, plain, exitDataErr},
		{100, plain, exitDataErr}, // the header alone
		{4096, "Subject: s\n\n" + body, exitDataErr},
		{0, "Subject: s\n\n" + body, 0},
	} {
		q := submitWith(t, []string{"b@x.test"}, c.input, func(s *Submission) { s.Cfg.SendmailMaxMessageSize = c.limit })
		if q.status != c.status {
			t.Errorf("limit %d, %d bytes: status %d, want %d", c.limit, len(c.input), q.status, c.status)
		}
	}
}
