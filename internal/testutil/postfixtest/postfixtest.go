// Package postfixtest runs private Postfix instances for the tests: a
// configuration directory, queue, data directory and log of the test's
// own, so that the system's Postfix (which may hold 127.0.0.1:25) is
// never touched. A test gives the main.cf lines of its part, a relay
// client (smtp-stdio's tests) or an MX host with STARTTLS (smtp-send's
// DANE test), and the smtpd line of master.cf when it listens.
package postfixtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// Master is the master.cf of an instance without smtpd: the services a
// message needs from sendmail's pickup (or an smtpd line the test adds)
// to the SMTP client, a virtual mailbox or the discard service, none
// chrooted.
const Master = `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
scache    unix  -       -       n       -       1       scache
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
`

// Instance is a running private Postfix.
type Instance struct {
	// Dir holds everything of the instance; Conf is its configuration
	// directory (sendmail -C, postqueue -c), Log its log file.
	Dir, Conf, Log string
}

// Start starts an instance (it needs root, as Postfix's master does; the
// test is skipped without it, and fails in CI). main returns the main.cf
// lines of the test's part, given the configuration directory to write
// its files in, after the lines every instance has (its queue, data
// directory and log; IPv4 only; no aliases); smtpd, when not "", is
// added to Master. The instance is stopped, and its log shown if the
// test failed, when the test ends.
func Start(t testing.TB, main func(conf string) []string, smtpd string) *Instance {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("a private Postfix instance needs root, which CI has")
		}
		t.Skip("a private Postfix instance needs root")
	}
	postfix := testutil.Need(t, "/usr/sbin/postfix")
	// The queue is owned by the postfix user, which must reach it:
	// t.TempDir's parents are mode 0700 for root.
	dir, err := os.MkdirTemp("/tmp", "smtp-stdio-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := &Instance{Dir: dir, Conf: filepath.Join(dir, "etc"), Log: filepath.Join(dir, "maillog")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(p.Conf, 0o755))
	// Postfix makes the queue's subdirectories, not the queue itself.
	must(os.MkdirAll(filepath.Join(dir, "queue"), 0o755))
	lines := append([]string{
		"compatibility_level = 3.6",
		"queue_directory = " + filepath.Join(dir, "queue"),
		"data_directory = " + filepath.Join(dir, "data"),
		"maillog_file = " + p.Log,
		"maillog_file_prefixes = " + dir,
		"inet_protocols = ipv4",
		"alias_maps =",
		"alias_database =",
	}, main(p.Conf)...)
	must(os.WriteFile(filepath.Join(p.Conf, "main.cf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	master := Master
	if smtpd != "" {
		master += smtpd + "\n"
	}
	must(os.WriteFile(filepath.Join(p.Conf, "master.cf"), []byte(master), 0o644))
	if out, err := exec.Command(postfix, "-c", p.Conf, "start").CombinedOutput(); err != nil {
		// Postfix writes a fatal error before its log service runs only
		// to syslog or to a terminal: ask again under script(1).
		why, _ := exec.Command("script", "-qc", postfix+" -c "+p.Conf+" check", "/dev/null").CombinedOutput()
		t.Fatalf("postfix start: %v\n%s%s", err, out, why)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(postfix, "-c", p.Conf, "stop").CombinedOutput(); err != nil {
			t.Logf("postfix stop: %v\n%s", err, out)
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.Log)
			t.Logf("Postfix's log:\n%s", b)
		}
	})
	return p
}
