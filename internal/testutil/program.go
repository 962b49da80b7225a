package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The programs that Program built in this test binary run, and the
// directory they are in (removed by Main).
var programs struct {
	mu    sync.Mutex
	main  bool   // Main is running the tests
	dir   string // made by the first Program
	built map[string]func() (string, error)
}

// Main runs the tests of a package that calls Program, then removes the
// programs Program built, and exits with the tests' status. A package
// whose tests need a command of this module has
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
//
// and calls Program in the tests that need it, so that a run of tests
// that need none builds none.
func Main(m *testing.M) {
	programs.mu.Lock()
	programs.main = true
	programs.mu.Unlock()
	code := m.Run()
	programs.mu.Lock()
	if programs.dir != "" {
		os.RemoveAll(programs.dir)
	}
	programs.mu.Unlock()
	os.Exit(code)
}

// Program returns the path of the main package at pkg, a directory
// relative to the root of this module ("cmd/smtp-stdio"), built by Build
// the first time any test of this run asks for it and shared by all the
// others, parallel ones included. A build that fails fails each test
// that asks, with go build's output. The package's TestMain must call
// Main, which removes the programs when the tests are over; Program fails
// the test when it does not.
func Program(t testing.TB, pkg string) string {
	t.Helper()
	build, err := program(pkg)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// program returns the one build of pkg in this run.
func program(pkg string) (func() (string, error), error) {
	programs.mu.Lock()
	defer programs.mu.Unlock()
	if !programs.main {
		return nil, errors.New("testutil.Program: the package's TestMain must call testutil.Main, which removes what Program builds")
	}
	if b, ok := programs.built[pkg]; ok {
		return b, nil
	}
	if programs.dir == "" {
		d, err := os.MkdirTemp("", "testutil-programs-")
		if err != nil {
			return nil, err
		}
		programs.dir = d
		programs.built = map[string]func() (string, error){}
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	// Each package in a directory of its own: two commands may share the
	// last element of their path.
	dir := filepath.Join(programs.dir, fmt.Sprint(len(programs.built)))
	b := sync.OnceValues(func() (string, error) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", err
		}
		return Build(dir, filepath.Join(root, pkg))
	})
	programs.built[pkg] = b
	return b, nil
}

// ModuleRoot returns the directory of the go.mod that governs the current
// directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the current directory")
		}
		dir = parent
	}
}
