package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// dovecotLab is a private Dovecot (Debian dovecot-core and
// dovecot-lmtpd, 2.3) started by a test with its own configuration
// directory: base_dir, state and log under root, LMTP on a unix socket
// and on a loopback port, a passwd-file user database whose users have
// uid 65534 (Dovecot refuses uid 0) and their homes under root/mail,
// mail in ~/Maildir. It never touches a system-wide Dovecot.
type dovecotLab struct {
	t      *testing.T
	root   string
	conf   string
	Socket string // the LMTP unix socket
	Addr   string // the LMTP TCP listener, 127.0.0.1:port
	Mail   string // users' homes: Mail/<domain>/<user>
}

// mailUID is the uid and gid of the lab's mail users.
const mailUID = 65534

// startDovecot starts a lab whose users are the addresses users
// (local@domain), stopped when the test ends.
func startDovecot(t *testing.T, users ...string) *dovecotLab {
	t.Helper()
	bin := testutil.Need(t, "dovecot", "/usr/sbin/dovecot")
	testutil.Need(t, "doveadm", "/usr/bin/doveadm")
	if _, err := os.Stat("/usr/lib/dovecot/lmtp"); err != nil {
		testutil.Need(t, "/usr/lib/dovecot/lmtp (dovecot-lmtpd)")
	}
	if os.Getuid() != 0 {
		t.Skip("the Dovecot lab runs its mail users as uid 65534: run as root")
	}
	// A short path of our own: unix socket paths must stay under about
	// 100 bytes, and Dovecot's users must be able to reach their homes.
	root, err := os.MkdirTemp("", "dv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	l := &dovecotLab{t: t, root: root, conf: filepath.Join(root, "dovecot.conf"), Socket: filepath.Join(root, "run", "lmtp"),
		Mail: filepath.Join(root, "mail")}
	for _, d := range []string{"run", "state", "mail"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(l.Mail, mailUID, mailUID); err != nil {
		t.Fatal(err)
	}
	var pw strings.Builder
	for _, u := range users {
		local, dom, _ := strings.Cut(u, "@")
		fmt.Fprintf(&pw, "%s:{PLAIN}x:%d:%d::%s::\n", u, mailUID, mailUID, filepath.Join(l.Mail, dom, local))
	}
	if err := os.WriteFile(filepath.Join(root, "passwd"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Addr = ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(l.Addr)
	conf := strings.NewReplacer("$ROOT", root, "$PORT", port).Replace(dovecotConf)
	if err := os.WriteFile(l.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// Its output goes nowhere: the daemon it leaves behind would hold
	// a pipe open, and its log is in root/log.
	if err := exec.Command(bin, "-c", l.conf).Run(); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	t.Cleanup(l.stop)
	testutil.Within(t, "Dovecot's LMTP socket", func() {
		for {
			if c, err := net.Dial("unix", l.Socket); err == nil {
				c.Close()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return l
}

// dovecotConf is the lab's configuration (Dovecot 2.3 syntax), after
// chasquid's test/t-11-dovecot and the notes in delivery-research.md.
const dovecotConf = `base_dir = $ROOT/run/
state_dir = $ROOT/state/
log_path = $ROOT/log
info_log_path = $ROOT/log
ssl = no
protocols = lmtp
listen = 127.0.0.1
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = $ROOT/passwd
}
userdb {
  driver = passwd-file
  args = $ROOT/passwd
}
mail_location = maildir:~/Maildir
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
  inet_listener lmtp {
    address = 127.0.0.1
    port = $PORT
  }
}
service anvil {
  chroot =
}
service stats {
  chroot =
}
`

// stop stops the lab's Dovecot (doveadm stop; its master by the PID in
// its own master.pid if that fails).
func (l *dovecotLab) stop() {
	pidFile := filepath.Join(l.root, "run", "master.pid")
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	exec.Command("doveadm", "-c", l.conf, "stop").Run()
	for range 100 {
		if pid <= 0 || syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// doveadm runs doveadm against the lab and returns its output.
func (l *dovecotLab) doveadm(args ...string) string {
	l.t.Helper()
	out, err := exec.Command("doveadm", append([]string{"-c", l.conf}, args...)...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(l.root, "log"))
		l.t.Fatalf("doveadm %q: %v\n%s\nlog:\n%s", args, err, out, log)
	}
	return string(out)
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
