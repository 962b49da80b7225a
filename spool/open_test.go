package spool

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// nonRegular makes, at path, each kind of name that is not a regular file
// and that a spool reader could meet; the symbolic link points to a valid
// message file, which a reader that follows links would take.
func nonRegular(t *testing.T) map[string]func(path string) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "message")
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := testEnvelope(t)
	commit(t, s, env, "Subject: planted\r\n\r\nbody\r\n")
	if err := os.Rename(s.Path(QueueDir, env.QueueID), target); err != nil {
		t.Fatal(err)
	}
	return testutil.NonRegular(t, target)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Every reader of the spool refuses a name that is not a regular file with
// ErrNotRegular, without blocking and without following a symbolic link.
// (Package queue holds the same test for state files and journals.)
func TestNonRegularNeverOpened(t *testing.T) {
	for name, mk := range nonRegular(t) {
		t.Run(name, func(t *testing.T) {
			s, err := New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			id := testEnvelope(t).QueueID
			mk(s.Path(QueueDir, id))
			testutil.Within(t, "Open", func() {
				if m, err := s.OpenMessage(id); !errors.Is(err, ErrNotRegular) || errors.Is(err, ErrCorrupt) {
					t.Errorf("OpenMessage: %v", err)
					if err == nil {
						m.Close()
					}
				}
			})
		})
	}
}

// OpenFile on a regular file works as os.OpenFile, creating with
// O_CREATE; the error names the path and the kind of file.
func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	f, err := OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("x")
	f.Close()
	if f, err = OpenFile(p, os.O_RDONLY, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := OpenFile(filepath.Join(dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	must(t, syscall.Mkfifo(fifo, 0o600))
	_, err = OpenFile(fifo, os.O_RDONLY, 0)
	if err == nil || !strings.Contains(err.Error(), fifo+" is a FIFO") {
		t.Errorf("fifo: %v", err)
	}
}

// unsafeSpools are the cases both programs' tests share, and more: each
// makes a safe root unsafe and returns the path the refusal must name.
func unsafeSpools() []testutil.UnsafeSpool {
	return append(testutil.UnsafeSpools(QueueDir, TmpDir),
		testutil.UnsafeSpool{Name: "root group-writable", Make: func(t testing.TB, root string) string {
			if err := os.Chmod(root, 0o770); err != nil {
				t.Fatal(err)
			}
			return root
		}},
		testutil.UnsafeSpool{Name: "tmp a file", Make: func(t testing.TB, root string) string {
			if err := os.WriteFile(filepath.Join(root, TmpDir), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(root, TmpDir)
		}},
		testutil.UnsafeSpool{Name: "state world-writable", Make: func(t testing.TB, root string) string {
			p := filepath.Join(root, senderDirs[0])
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, 0o777); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	)
}

// senderDirs are the directories smtp-send's queue makes with MakeDirs.
var senderDirs = []string{"state", "failed", "corrupt"}

// New and MakeDirs refuse a root or subdirectory that other users could
// change (ErrUnsafe), naming it, and create nothing under an unsafe root.
func TestUnsafeSpoolRefused(t *testing.T) {
	for _, c := range unsafeSpools() {
		t.Run(c.Name, func(t *testing.T) {
			root := t.TempDir()
			want := c.Make(t, root)
			s, err := New(root)
			if err == nil {
				err = s.MakeDirs(senderDirs...)
			}
			if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), want+" ") {
				t.Fatalf("err = %v, want ErrUnsafe naming %s", err, want)
			}
			if strings.HasPrefix(c.Name, "root") {
				if ents, _ := os.ReadDir(root); len(ents) != 0 {
					t.Errorf("created under an unsafe root: %v", ents)
				}
			}
		})
	}
}

// A safe spool: missing subdirectories are created 0700; a subdirectory
// that is a symbolic link to a safe directory is accepted.
func TestSafeSpool(t *testing.T) {
	root := t.TempDir()
	elsewhere := t.TempDir()
	must(t, os.Symlink(elsewhere, filepath.Join(root, TmpDir)))
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MakeDirs(senderDirs...); err != nil {
		t.Fatal(err)
	}
	for _, sub := range append([]string{QueueDir}, senderDirs...) {
		fi, err := os.Lstat(s.Path(sub))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != DirMode {
			t.Errorf("%s: %v %v", sub, fi.Mode(), err)
		}
	}
	commit(t, s, testEnvelope(t), "Subject: x\r\n\r\nbody\r\n")
}

// Peek refuses what Open refuses, with the same error, without blocking
// and without following a symbolic link: typed by the directory listing
// (never opened), and typed as a regular file, as a name replaced since
// the listing would be (refused by openat's O_NOFOLLOW or by fstat).
func TestPeekNonRegular(t *testing.T) {
	for name, mk := range nonRegular(t) {
		t.Run(name, func(t *testing.T) {
			s, err := New(t.TempDir())
			must(t, err)
			id := testEnvelope(t).QueueID
			mk(s.Path(QueueDir, id))
			d, err := OpenDir(s.Path(QueueDir))
			must(t, err)
			defer d.Close()
			ents, err := d.ReadDir(-1)
			if err != nil || len(ents) != 1 {
				t.Fatalf("%v %v", ents, err)
			}
			_, want := s.OpenMessage(id)
			for _, typ := range []fs.FileMode{ents[0].Type(), 0} {
				testutil.Within(t, "Peek", func() {
					m, err := Peek(int(d.Fd()), s.Path(QueueDir), id, typ, make([]byte, PeekBufSize), nil)
					if !errors.Is(err, ErrNotRegular) || m != nil || want == nil || err.Error() != want.Error() {
						t.Errorf("typed %v: Peek: %v, want %v", typ, err, want)
					}
					_, err = ReadFileAt(int(d.Fd()), s.Path(QueueDir), id, typ, make([]byte, PeekBufSize), 1<<20)
					if !errors.Is(err, ErrNotRegular) || err.Error() != want.Error() {
						t.Errorf("typed %v: ReadFileAt: %v, want %v", typ, err, want)
					}
				})
			}
		})
	}
}
