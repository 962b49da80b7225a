// Package testutil holds helpers that the tests of several packages share:
// a buffer safe for concurrent writers, building a command for a test,
// finding an external program the test drives, and starting processes that
// the test ends, by their PID, when it is over. It is for tests only.
package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LockedBuffer is a bytes.Buffer guarded by a mutex, for output that one
// goroutine writes (a process's stdout copied by os/exec, a logger) while
// the test reads it. The zero value is an empty buffer ready to use.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer; it always returns len(p), nil.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns a copy of what has been written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Build compiles the main package in the directory pkg (a file path,
// relative to the current directory as "." or "../cmd/smtp-send", not an
// import path) into dir, under the name of pkg's directory, and returns
// the path of the binary. It runs the go command found in PATH, else the
// one of the running toolchain (runtime.GOROOT()/bin/go), with cgo off,
// so the binary is static as installed. When go build fails, the error names pkg and carries go build's output.
func Build(dir, pkg string) (string, error) {
	abs, err := filepath.Abs(pkg)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(abs))
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", bin, abs)
	// Static, as the README installs them: with cgo, package net (which
	// crypto/tls brings in) would link the C resolver and make the
	// binary dynamic, and each exec would pay for the loader.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// Need returns the path of the program name, looked up in PATH (or name
// itself when it holds a slash), else the first of alsoAt that is an
// executable file (for daemons outside a non-root PATH). When none is
// found the test fails if the CI environment variable is set, and is
// skipped otherwise; both messages point to scripts/install-test-deps.
func Need(t testing.TB, name string, alsoAt ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range alsoAt {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed (scripts/install-test-deps installs it)", name)
	}
	t.Skipf("%s not installed; run scripts/install-test-deps", name)
	return ""
}

// Start starts cmd and, when the test ends, kills it (SIGKILL, by its PID)
// and waits for it unless the test has already waited for it. If cmd
// cannot start, the test fails at once. Cleanups that need the process
// gone (closing its pipes, reading its output) must be registered before
// Start, so that they run after it.
func Start(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
}

// StartGroup starts cmd in a process group of its own and, when the test
// ends, sends SIGTERM to that group (by the PID of cmd, the group's
// leader) and waits for cmd. Only processes that cmd started and that
// stayed in its group are ended; cmd.WaitDelay is set to 5s, so that a
// child still holding cmd's output pipes cannot hold Wait (and the test)
// for longer. If cmd cannot start, the test fails at once. Cleanups that
// need the process gone must be registered before StartGroup, so that
// they run after it.
func StartGroup(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The group is the one we started; end exactly that group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
		// Its other members (a launcher's sessions) may still be
		// removing their files: wait until none is left, so that the
		// test's directories are not removed under them.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if syscall.Kill(-cmd.Process.Pid, 0) != nil {
				return
			}
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
}

// Result is what Run saw of a finished command: its exit status and
// everything it wrote to standard output and standard error.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs cmd (its Stdout and Stderr must be unset: Run collects them),
// waits for it, and returns its Result. A command still running after
// limit is killed and fails the test, so a hang cannot hang the suite; a
// command that cannot be started fails the test too. An exit status other
// than 0 is a Result, not a failure.
func Run(t testing.TB, cmd *exec.Cmd, limit time.Duration) Result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(limit, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !timer.Stop() {
		t.Fatalf("%s still running after %v, killed\n%s", strings.Join(cmd.Args, " "), limit, errb.String())
	}
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}
