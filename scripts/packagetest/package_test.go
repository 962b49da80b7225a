// Package packagetest tests scripts/package: the .deb's files, its
// conffiles, lintian, and its maintainer scripts run in a private mount
// namespace (a copy of /etc and an empty /var/spool), so that the test
// machine's users and spool are never touched.
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
		"./usr/sbin/smtp-stdio", "./usr/sbin/smtp-send",
		"./usr/share/man/man8/smtp-stdio.8.gz", "./usr/share/man/man8/smtp-send.8.gz",
		"./usr/share/man/man5/smtp-spool.5.gz",
		"./usr/lib/systemd/system/smtp-stdio.socket", "./usr/lib/systemd/system/smtp-stdio@.service",
		"./usr/lib/systemd/system/smtp-send.service", "./usr/lib/systemd/system/smtp-send.timer",
		"./etc/default/smtp-stdio", "./etc/default/smtp-send",
		"./usr/share/doc/smtp-stdio/copyright",
		"./usr/share/doc/smtp-stdio/examples/xinetd.smtp-stdio",
	} {
		if !strings.Contains(contents, " "+f+"\n") {
			t.Errorf("the package has no %s", f)
		}
	}
	if strings.Contains(contents, "/var/spool") {
		t.Error("the spool is a file of the package: removing it would delete mail")
	}
	if c := run(t, "dpkg-deb", "--info", deb, "conffiles"); c != "/etc/default/smtp-stdio\n/etc/default/smtp-send\n" {
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

// TestMaintainerScripts runs postinst twice, then postrm remove and purge,
// as dpkg would, in a mount namespace with a copy of /etc and an empty
// /var/spool; between them systemd-analyze verifies the units with the
// package's programs in /usr/sbin.
func TestMaintainerScripts(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	for _, p := range []string{"unshare", "adduser"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skip(p, " not installed")
		}
	}
	if err := exec.Command("unshare", "--mount", "true").Run(); err != nil {
		t.Skip("no mount namespace here: ", err)
	}
	deb := build(t)
	ctl := t.TempDir()
	run(t, "dpkg-deb", "--control", deb, ctl)
	x := t.TempDir()
	run(t, "dpkg-deb", "--extract", deb, x)
	script := `set -eu
etc=$(mktemp -d)
cp -a /etc/. "$etc"
mount --bind "$etc" /etc
mount -t tmpfs tmpfs /var/spool
userdel smtp-stdio 2>/dev/null || true
groupdel smtp-stdio 2>/dev/null || true
"$1/postinst" configure
echo mail >/var/spool/smtp-stdio/kept
chmod 0710 /var/spool/smtp-stdio
"$1/postinst" configure 0.0~test
id smtp-stdio
stat -c '%U:%G %a' /var/spool/smtp-stdio
if command -v systemd-analyze >/dev/null; then
	# The units as installed: their programs in /usr/sbin, their user made.
	sbin=$(mktemp -d)
	cp -a /usr/sbin/. "$sbin"
	cp "$2"/usr/sbin/* "$sbin"
	mount --bind "$sbin" /usr/sbin
	systemd-analyze verify "$2"/usr/lib/systemd/system/*
	echo units verified
fi
"$1/postrm" remove
"$1/postrm" purge
cat /var/spool/smtp-stdio/kept
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", ctl, x)
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("maintainer scripts: %v\n%s", err, out)
	}
	wants := []string{
		"(smtp-stdio) gid=",
		// The second postinst leaves an existing spool's mode alone.
		"smtp-stdio:smtp-stdio 710\n",
		"purge keeps /var/spool/smtp-stdio",
		"mail\n",
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
