package sendmail

import (
	"slices"
	"strings"
	"testing"
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
