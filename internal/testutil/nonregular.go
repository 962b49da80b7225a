package testutil

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NonRegular returns, by kind, functions that make at a path each kind of
// name that is not a regular file and that a spool reader could meet: a
// FIFO, a symbolic link to target (a regular file, which a reader that
// follows links would take), a directory, a listening unix socket and,
// as root, a character device (a copy of /dev/zero: a reader that opened
// it would read for ever). A failure to make one fails the test.
func NonRegular(t *testing.T, target string) map[string]func(path string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	kinds := map[string]func(string){
		"fifo":      func(p string) { must(syscall.Mkfifo(p, 0o600)) },
		"symlink":   func(p string) { must(os.Symlink(target, p)) },
		"directory": func(p string) { must(os.Mkdir(p, 0o700)) },
		"socket": func(p string) {
			l, err := net.Listen("unix", p)
			must(err)
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { l.Close() })
		},
	}
	if os.Geteuid() == 0 {
		kinds["device"] = func(p string) { must(unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 5)))) }
	}
	return kinds
}

// Within fails the test if f has not returned after 5 seconds: a reader
// that opens a FIFO blocks in open(2) for ever, and the test must say so
// rather than hang.
func Within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5s", what)
	}
}
