// Package packagetest tests scripts/package: the .deb's files, its
// conffiles, lintian, and an install with dpkg in a private mount
// namespace over throwaway overlays, so that the test machine's packages,
// users and spool are never touched.
package packagetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// build runs scripts/package into a temporary directory and returns the
// package's path.
func build(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	dist := t.TempDir()
	cmd := exec.Command("sh", "scripts/package")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION=0.0~test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "smtp-stdio_0.0~test_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("scripts/package made %v:\n%s", debs, out)
	}
	return debs[0]
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPackage: what the package holds, that lintian finds no error in it,
// and that its maintainer scripts create the user and the spool, again
// without harm, and leave the spool and its mail on removal and purge.
func TestPackage(t *testing.T) {
	deb := build(t)

	contents := run(t, "dpkg-deb", "--contents", deb)
	for _, f := range []string{
		"./usr/sbin/smtp-stdio", "./usr/sbin/smtp-send", "./usr/sbin/sendmail", "./usr/sbin/smtp-drop",
		"./usr/share/man/man8/smtp-stdio.8.gz", "./usr/share/man/man8/smtp-send.8.gz",
		"./usr/share/man/man8/sendmail.8.gz", "./usr/share/man/man5/smtp-spool.5.gz",
		"./usr/lib/systemd/system/smtp-stdio.socket", "./usr/lib/systemd/system/smtp-stdio@.service",
		"./usr/lib/systemd/system/smtp-stdio-server.socket", "./usr/lib/systemd/system/smtp-stdio-server.service",
		"./usr/lib/systemd/system/smtp-submission.socket", "./usr/lib/systemd/system/smtp-submission@.service",
		"./usr/lib/systemd/system/smtp-submissions.socket", "./usr/lib/systemd/system/smtp-submissions@.service",
		"./etc/smtp-stdio/sendmail.conf",
		"./usr/share/doc/smtp-stdio/examples/inetd-wait.conf",
		"./usr/share/doc/smtp-stdio/examples/tcpserver.submission/run",
		"./usr/lib/systemd/system/smtp-send.service", "./usr/lib/systemd/system/smtp-send.timer",
		"./etc/default/smtp-stdio", "./etc/default/smtp-send",
		"./usr/share/doc/smtp-stdio/copyright",
		"./usr/share/doc/smtp-stdio/examples/xinetd.smtp-stdio",
	} {
		if !strings.Contains(contents, " "+f+"\n") {
			t.Errorf("the package has no %s", f)
		}
	}
	for _, l := range []string{"./usr/bin/mailq -> ../sbin/sendmail", "./usr/bin/newaliases -> ../sbin/sendmail"} {
		if !strings.Contains(contents, " "+l+"\n") {
			t.Errorf("the package has no %s", l)
		}
	}
	if strings.Contains(contents, "/var/spool") {
		t.Error("the spool is a file of the package: removing it would delete mail")
	}
	if c := run(t, "dpkg-deb", "--info", deb, "conffiles"); c != "/etc/default/smtp-stdio\n/etc/default/smtp-send\n/etc/smtp-stdio/sendmail.conf\n" {
		t.Errorf("conffiles:\n%s", c)
	}

	x := t.TempDir()
	run(t, "dpkg-deb", "--extract", deb, x)
	units, _ := filepath.Glob(filepath.Join(x, "usr/lib/systemd/system/*"))
	for _, u := range units {
		b, _ := os.ReadFile(u)
		if strings.Contains(string(b), "/usr/local/") {
			t.Errorf("%s names /usr/local", filepath.Base(u))
		}
	}

	if _, err := exec.LookPath("lintian"); err != nil {
		t.Log("lintian not installed (scripts/install-test-deps installs it)")
	} else {
		out, _ := exec.Command("lintian", "--tag-display-limit", "0", deb).CombinedOutput()
		for l := range strings.Lines(string(out)) {
			if strings.HasPrefix(l, "E: ") {
				t.Errorf("lintian: %s", l)
			}
		}
	}
}

// overlays is shell that puts a throwaway overlay over /usr, /etc and
// /var, so that what dpkg and the maintainer scripts change in this mount
// namespace never reaches the machine.
const overlays = `t=$(mktemp -d)
mount -t tmpfs tmpfs "$t"
for d in usr etc var; do
	mkdir -p "$t/$d.up" "$t/$d.work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$t/$d.up,workdir=$t/$d.work" "/$d"
done
`

// TestInstall installs the package with dpkg in a mount namespace whose
// /usr, /etc and /var are throwaway overlays: the user and the spool are
// made, installing again keeps the spool as the administrator left it, a
// session through the installed smtp-stdio as the service user is queued
// and listed by smtp-send --list, systemd-analyze verifies the installed
// units, and dpkg -r and -P leave the spool and the message.
func TestInstall(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	for _, p := range []string{"unshare", "dpkg", "adduser", "setpriv"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skip(p, " not installed")
		}
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-ec", overlays).CombinedOutput(); err != nil {
		t.Skipf("no overlay in a mount namespace here: %v\n%s", err, out)
	}
	deb := build(t)
	script := "set -eu\n" + overlays + `
as() { setpriv --reuid=smtp-stdio --regid=smtp-stdio --init-groups "$@"; }
# The test machine has Postfix (the test suite drives it), which also
# provides mail-transport-agent and /usr/sbin/sendmail: on this throwaway
# overlay, install over it, as apt would after removing it.
install_deb() { dpkg --force-conflicts,overwrite -i "$1" >/dev/null 2>&1 || dpkg --force-conflicts,overwrite -i "$1"; }
install_deb "$1"
id smtp-stdio
stat -c 'spool %U:%G %a' /var/spool/smtp-stdio
stat -c 'drop %U:%G %a' /var/spool/smtp-stdio/drop
stat -c 'helper %U:%G %a' /usr/sbin/smtp-drop
chmod 0750 /var/spool/smtp-stdio
install_deb "$1"
stat -c 'again %U:%G %a' /var/spool/smtp-stdio
chmod 0710 /var/spool/smtp-stdio
# Any user queues mail through sendmail and the setgid helper.
printf 'Subject: from nobody\n\nhi\n' | setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/sbin/sendmail r@example.org
echo dropped: $(ls /var/spool/smtp-stdio/drop | wc -l)
printf 'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n' |
	as env SMTP_LOCAL_DOMAINS=example.org SMTP_LOG=off /usr/sbin/smtp-stdio
as /usr/sbin/smtp-send --list
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify /usr/lib/systemd/system/smtp-stdio.socket \
		/usr/lib/systemd/system/smtp-stdio@.service \
		/usr/lib/systemd/system/smtp-stdio-server.socket /usr/lib/systemd/system/smtp-stdio-server.service \
		/usr/lib/systemd/system/smtp-submission.socket /usr/lib/systemd/system/smtp-submission@.service \
		/usr/lib/systemd/system/smtp-submissions.socket /usr/lib/systemd/system/smtp-submissions@.service \
		/usr/lib/systemd/system/smtp-send.service /usr/lib/systemd/system/smtp-send.timer
	echo units verified
fi
man -w smtp-stdio smtp-send smtp-spool
man -w 8 sendmail
dpkg -r smtp-stdio >/dev/null 2>&1
echo removed: $(ls /var/spool/smtp-stdio/queue | wc -l) queued
dpkg -P smtp-stdio
echo purged: $(ls /var/spool/smtp-stdio/queue | wc -l) queued
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", deb)
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	wants := []string{
		"(smtp-stdio) gid=",
		"spool smtp-stdio:smtp-drop 710\n",
		"drop smtp-stdio:smtp-drop 1730\n",
		"helper root:smtp-drop 2755\n",
		// Installing again leaves an existing spool's mode alone.
		"again smtp-stdio:smtp-drop 750\n",
		"dropped: 1\n",
		"250 2.0.0 OK queued as",
		"-- 1 messages: 1 new",
		"/usr/share/man/man5/smtp-spool.5.gz",
		"/usr/share/man/man8/sendmail.8.gz",
		"removed: 1 queued",
		"purge keeps /var/spool/smtp-stdio",
		"purged: 1 queued",
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		wants = append(wants, "units verified\n")
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
