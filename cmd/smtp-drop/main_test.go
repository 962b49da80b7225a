package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// TestReadConfig: the configuration file is taken only when it is a
// regular file owned by root that no one else may write, and holds only
// known settings with good values. As another user every file is refused
// (it is not root's).
func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode uint32) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o600)
		syscall.Chmod(p, mode)
		return p
	}
	good := write("good", "# c\n\nSMTP_SPOOL_DIR=/var/spool/x\nSMTP_SENDMAIL_MAX_MESSAGE_SIZE=1000\n", 0o644)
	if os.Getuid() != 0 {
		if _, _, err := readConfig(good); err == nil || !strings.Contains(err.Error(), "owned by root") {
			t.Errorf("a file not root's: %v", err)
		}
		t.Skip("the rest needs root")
	}
	if root, limit, err := readConfig(good); err != nil || root != "/var/spool/x" || limit != 1000 {
		t.Errorf("good: %q %d %v", root, limit, err)
	}
	if _, limit, err := readConfig(write("nolimit", "SMTP_SPOOL_DIR=/s\n", 0o600)); err != nil || limit != defaultMaxSize {
		t.Errorf("default limit: %d %v", limit, err)
	}
	os.Symlink(good, filepath.Join(dir, "link"))
	for name, p := range map[string]string{
		"group-writable": write("gw", "SMTP_SPOOL_DIR=/s\n", 0o664),
		"world-writable": write("ww", "SMTP_SPOOL_DIR=/s\n", 0o646),
		"unknown":        write("unknown", "SMTP_SPOOL_DIR=/s\nSMTP_SPOOLDIR=/t\n", 0o644),
		"relative":       write("rel", "SMTP_SPOOL_DIR=s\n", 0o644),
		"no spool":       write("nospool", "SMTP_SENDMAIL_MAX_MESSAGE_SIZE=1\n", 0o644),
		"bad limit":      write("limit", "SMTP_SPOOL_DIR=/s\nSMTP_SENDMAIL_MAX_MESSAGE_SIZE=-1\n", 0o644),
		"symbolic link":  filepath.Join(dir, "link"),
		"missing":        filepath.Join(dir, "missing"),
	} {
		if _, _, err := readConfig(p); err == nil {
			t.Errorf("%s: taken", name)
		}
	}
}

// TestClosedStdio: started with fds 0, 1 and 2 closed, the helper opens
// nothing in their place but /dev/null (CVE-2023-29403): its
// configuration file is not written into, it exits 75 (an empty stream
// has no trailer) and leaves nothing in drop/. Needs root (the
// configuration must be root's).
func TestClosedStdio(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sendmail.conf")
	text := "SMTP_SPOOL_DIR=" + dir + "\n"
	os.WriteFile(conf, []byte(text), 0o644)
	os.Mkdir(filepath.Join(dir, dropDir), 0o700)
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "smtp-drop")
	build := exec.Command(gobin, "build", "-ldflags", "-X main.configPath="+conf, "-o", bin, "./cmd/smtp-drop")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	err = exec.Command("sh", "-c", `exec "$0" <&- >&- 2>&-`, bin).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitTempFail {
		t.Errorf("exit: %v, want 75", err)
	}
	if b, _ := os.ReadFile(conf); string(b) != text {
		t.Errorf("configuration now %q", b)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, dropDir)); len(ents) != 0 {
		t.Errorf("drop/ holds %v", ents)
	}
}
