// Package dovecotlab runs a private Dovecot (Debian dovecot-core and
// dovecot-lmtpd, 2.3) for cmd/smtp-send's tests and scripts/benchtool's
// local-delivery flush: its own configuration directory, base_dir, state
// and log under one root, LMTP (RFC 2033) on a unix socket and, when
// asked, on a loopback port, a passwd-file user database whose users
// have uid 65534 (Dovecot refuses uid 0) and their homes under root/mail,
// mail in ~/Maildir. It never touches a system-wide Dovecot. It takes no
// *testing.T, so that a program can use it too; errors are returned.
package dovecotlab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MailUID is the uid and gid of the lab's mail users (nobody): the one
// mail uid of a virtual-mailbox host.
const MailUID = 65534

// Binaries the lab needs; Start returns an error naming the first one
// missing.
const (
	Dovecot = "/usr/sbin/dovecot"
	Doveadm = "/usr/bin/doveadm"
	LMTP    = "/usr/lib/dovecot/lmtp"
)

// User is one mailbox of the lab: its address (local@domain) and its home
// directory, which holds its Maildir.
type User struct {
	Addr, Home string
}

// Lab is a running Dovecot.
type Lab struct {
	Root   string // the lab's directory: run/, state/, mail/, log
	Conf   string // its dovecot.conf
	Socket string // the LMTP unix socket
	Addr   string // the LMTP TCP listener, 127.0.0.1:port; "" without one
	Mail   string // root/mail, owned by MailUID: put users' homes under it
}

// Start starts Dovecot in root (made if missing; keep its path short, as
// a unix socket's path must stay under about 100 bytes) with the users
// that users returns given the lab's mail directory, and waits up to 5
// seconds for its LMTP socket. With tcp, LMTP also listens on a free
// loopback port. It must run as root (the users run as MailUID). It
// returns an error naming a missing binary, a file it could not write, or
// Dovecot's failure (with the path of its log); the caller calls Stop.
func Start(root string, tcp bool, users func(mail string) []User) (*Lab, error) {
	for _, bin := range []string{Dovecot, Doveadm, LMTP} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("%s missing (apt-get install dovecot-core dovecot-lmtpd)", bin)
		}
	}
	l := &Lab{Root: root, Conf: filepath.Join(root, "dovecot.conf"), Socket: filepath.Join(root, "run", "lmtp"),
		Mail: filepath.Join(root, "mail")}
	for _, sub := range []string{"", "run", "state", "mail"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return nil, err
		}
	}
	// Dovecot's users must be able to reach their homes.
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(l.Mail, MailUID, MailUID); err != nil {
		return nil, err
	}
	var pw strings.Builder
	for _, u := range users(l.Mail) {
		fmt.Fprintf(&pw, "%s:{PLAIN}x:%d:%d::%s::\n", u.Addr, MailUID, MailUID, u.Home)
	}
	if err := os.WriteFile(filepath.Join(root, "passwd"), []byte(pw.String()), 0o644); err != nil {
		return nil, err
	}
	inet := ""
	if tcp {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		l.Addr = ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(l.Addr)
		inet = strings.ReplaceAll(inetListener, "$PORT", port)
	}
	conf := strings.NewReplacer("$ROOT", root, "$INET", inet).Replace(conf)
	if err := os.WriteFile(l.Conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	// Its output goes nowhere: the daemon it leaves behind would hold a
	// pipe open, and its log is in root/log.
	if err := exec.Command(Dovecot, "-c", l.Conf).Run(); err != nil {
		return nil, fmt.Errorf("dovecot: %v (log %s)", err, l.Log())
	}
	for range 250 {
		if c, err := net.Dial("unix", l.Socket); err == nil {
			c.Close()
			return l, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.Stop()
	return nil, fmt.Errorf("dovecot: no LMTP socket at %s (log %s)", l.Socket, l.Log())
}

// conf is the lab's configuration (Dovecot 2.3 syntax), after chasquid's
// test/t-11-dovecot and the notes in delivery-research.md; $INET is
// inetListener or nothing.
const conf = `base_dir = $ROOT/run/
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
$INET}
service anvil {
  chroot =
}
service stats {
  chroot =
}
`

// inetListener is the LMTP TCP listener of conf.
const inetListener = `  inet_listener lmtp {
    address = 127.0.0.1
    port = $PORT
  }
`

// Log returns the path of the lab's log.
func (l *Lab) Log() string { return filepath.Join(l.Root, "log") }

// MasterPID returns the PID of the lab's Dovecot master, from its own
// master.pid, or 0 when there is none.
func (l *Lab) MasterPID() int {
	b, _ := os.ReadFile(filepath.Join(l.Root, "run", "master.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Stop stops the lab's Dovecot: doveadm stop, then SIGKILL to its master
// (by the PID in its own master.pid) if it is still there after 2
// seconds.
func (l *Lab) Stop() {
	pid := l.MasterPID()
	exec.Command(Doveadm, "-c", l.Conf, "stop").Run()
	for range 100 {
		if pid <= 0 || syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// Doveadm runs doveadm with args against the lab and returns its output;
// the error is doveadm's, with the lab's log appended.
func (l *Lab) Doveadm(args ...string) (string, error) {
	out, err := exec.Command(Doveadm, append([]string{"-c", l.Conf}, args...)...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(l.Log())
		return string(out), fmt.Errorf("doveadm %q: %v\n%s\nlog:\n%s", args, err, out, log)
	}
	return string(out), nil
}
