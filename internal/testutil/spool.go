package testutil

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// UnsafeSpool is one way to leave a spool root open to other users, as
// issue 8 item 2 found them: both programs must refuse such a spool before
// they touch it.
type UnsafeSpool struct {
	// Name names the case, for t.Run.
	Name string
	// Make turns root, a safe spool root (mode 0700, owned by the test),
	// into an unsafe one and returns the path that the refusal must name.
	// It skips the test when the case needs root (chown) and the test
	// does not run as root.
	Make func(t testing.TB, root string) string
}

// UnsafeSpools returns the cases: the root at mode 0777; the queue
// directory replaced by one that another user (nobody) owns; the
// temporary directory a symbolic link to a world-writable sticky
// directory, as /tmp is. queue and tmp are the names of those
// directories (spool.QueueDir and spool.TmpDir: this package cannot
// import spool, whose own tests use it).
func UnsafeSpools(queue, tmp string) []UnsafeSpool {
	return []UnsafeSpool{
		{"root 0777", func(t testing.TB, root string) string {
			t.Helper()
			if err := os.Chmod(root, 0o777); err != nil {
				t.Fatal(err)
			}
			return root
		}},
		{"queue owned by nobody", func(t testing.TB, root string) string {
			t.Helper()
			if os.Geteuid() != 0 {
				t.Skip("giving a directory to another user needs root")
			}
			u, err := user.Lookup("nobody")
			if err != nil {
				t.Fatal(err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			q := filepath.Join(root, queue)
			if err := os.MkdirAll(q, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(q, uid, -1); err != nil {
				t.Fatal(err)
			}
			return q
		}},
		{"tmp a symlink to a 1777 directory", func(t testing.TB, root string) string {
			t.Helper()
			shared := t.TempDir()
			if err := os.Chmod(shared, 0o1777); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(root, tmp)
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(shared, p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	}
}
