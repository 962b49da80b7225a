package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/dovecotlab"
)

// dovecotLab is a private Dovecot (internal/testutil/dovecotlab) started
// by a test, with LMTP on a unix socket and on a loopback port.
type dovecotLab struct {
	*dovecotlab.Lab
	t *testing.T
}

// mailUID is the uid and gid of the lab's mail users.
const mailUID = dovecotlab.MailUID

// startDovecot starts a lab whose users are the addresses users
// (local@domain), their homes Mail/<domain>/<local>, stopped when the
// test ends.
func startDovecot(t *testing.T, users ...string) *dovecotLab {
	t.Helper()
	testutil.Need(t, "dovecot", dovecotlab.Dovecot)
	testutil.Need(t, "doveadm", dovecotlab.Doveadm)
	if _, err := os.Stat(dovecotlab.LMTP); err != nil {
		testutil.Need(t, dovecotlab.LMTP+" (dovecot-lmtpd)")
	}
	if os.Getuid() != 0 {
		t.Skip("the Dovecot lab runs its mail users as uid 65534: run as root")
	}
	// A short path of our own: unix socket paths must stay under about
	// 100 bytes.
	root, err := os.MkdirTemp("", "dv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	l, err := dovecotlab.Start(root, true, func(mail string) []dovecotlab.User {
		var us []dovecotlab.User
		for _, u := range users {
			local, dom, _ := strings.Cut(u, "@")
			us = append(us, dovecotlab.User{Addr: u, Home: filepath.Join(mail, dom, local)})
		}
		return us
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	return &dovecotLab{Lab: l, t: t}
}

// doveadm runs doveadm against the lab and returns its output; its
// failure fails the test.
func (l *dovecotLab) doveadm(args ...string) string {
	l.t.Helper()
	out, err := l.Doveadm(args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// count returns the number of messages in user's INBOX, as Dovecot
// sees them.
func (l *dovecotLab) count(user string) int {
	l.t.Helper()
	out := strings.TrimSpace(l.doveadm("search", "-u", user, "mailbox", "INBOX", "all"))
	if out == "" {
		return 0
	}
	return len(strings.Split(out, "\n"))
}

// giveToMailUser makes the files under dir belong to the lab's mail
// user, as the one mail uid of a virtual-mailbox host owns them.
func giveToMailUser(t *testing.T, dir string) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, mailUID, mailUID)
	})
	if err != nil {
		t.Fatal(err)
	}
}
