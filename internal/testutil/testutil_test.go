package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestLockedBuffer(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Errorf("%d bytes, want 800", len(got))
	}
}

func TestNeed(t *testing.T) {
	if got := Need(t, "sh"); !filepath.IsAbs(got) {
		t.Errorf("Need(sh) = %q, want an absolute path", got)
	}
	exe := filepath.Join(t.TempDir(), "daemon")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Need(t, "no-such-program-here", "/no/such/file", exe); got != exe {
		t.Errorf("Need found %q, want %q", got, exe)
	}
	t.Setenv("CI", "")
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Need(t, "no-such-program-here", "/no/such/file")
	})
	if !skipped {
		t.Error("a missing program did not skip the test outside CI")
	}
}

// TestStart: when the test ends, Start kills its process and StartGroup
// sends SIGTERM to its group, and both wait for it.
func TestStart(t *testing.T) {
	for _, c := range []struct {
		name  string
		start func(testing.TB, *exec.Cmd)
		shell string // a child of its own, for StartGroup to end too
		want  syscall.Signal
	}{
		{"Start", Start, "exec sleep 60", syscall.SIGKILL},
		{"StartGroup", StartGroup, "sleep 60 & wait", syscall.SIGTERM},
	} {
		cmd := exec.Command(Need(t, "sh"), "-c", c.shell)
		t.Run(c.name, func(t *testing.T) { c.start(t, cmd) })
		if cmd.ProcessState == nil {
			t.Fatalf("%s: the process was not waited for", c.name)
		}
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != c.want {
			t.Errorf("%s: the process ended with %v, want %v", c.name, cmd.ProcessState, c.want)
		}
	}
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	bin, err := Build(dir, "testdata/hello")
	if err != nil {
		t.Fatal(err)
	}
	if bin != filepath.Join(dir, "hello") {
		t.Errorf("built %s, want %s", bin, filepath.Join(dir, "hello"))
	}
	if out, err := exec.Command(bin).Output(); err != nil || string(out) != "hello\n" {
		t.Errorf("the binary said %q, %v", out, err)
	}
	if _, err := Build(dir, "testdata/none"); err == nil || !strings.Contains(err.Error(), "go build testdata/none") {
		t.Errorf("building a missing package: %v", err)
	}
}

func TestMain(m *testing.M) { Main(m) }

// TestProgram: one build per package, whichever test asks first; without
// Main, Program refuses.
func TestProgram(t *testing.T) {
	var bins [4]string
	var wg sync.WaitGroup
	for i := range bins {
		wg.Go(func() {
			if build, err := program("internal/testutil/testdata/hello"); err == nil {
				bins[i], _ = build()
			}
		})
	}
	wg.Wait()
	bin := Program(t, "internal/testutil/testdata/hello")
	for _, b := range bins {
		if b != bin {
			t.Errorf("built twice: %s and %s", bin, b)
		}
	}
	if out, err := exec.Command(bin).Output(); err != nil || string(out) != "hello\n" {
		t.Errorf("the program said %q, %v", out, err)
	}
	build, err := program("internal/testutil/testdata/none")
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	if _, err := build(); err == nil || !strings.Contains(err.Error(), "testdata/none") {
		t.Errorf("building a missing package: %v", err)
	}
	programs.mu.Lock()
	programs.main = false
	programs.mu.Unlock()
	defer func() {
		programs.mu.Lock()
		programs.main = true
		programs.mu.Unlock()
	}()
	if _, err := program("internal/testutil/testdata/hello"); err == nil || !strings.Contains(err.Error(), "testutil.Main") {
		t.Errorf("without Main: %v", err)
	}
}
