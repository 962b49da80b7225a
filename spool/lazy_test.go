package spool

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// tmpFiles returns how many files s's tmp/ holds.
func tmpFiles(t *testing.T, s *Spool) int {
	t.Helper()
	ents, err := os.ReadDir(s.Path(TmpDir))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// The temporary file is made when the message outgrows the buffer, with
// the spill hook called once just before, or at Commit without the hook;
// an Abort before either leaves nothing, and a message whose file could
// not be made fails at Commit with the system's error and no file.
func TestWriterMakesFileWhenNeeded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int
		abort     bool
		wantSpill bool
	}{
		{"short committed", 10 << 10, false, false},
		{"short aborted", 10 << 10, true, false},
		{"long committed", 200 << 10, false, true},
		{"long aborted", 200 << 10, true, true},
		{"empty committed", 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			spills, filesAtSpill := 0, -1
			w, err := s.CreateSpill(testEnvelope(t), func() { spills++; filesAtSpill = tmpFiles(t, s) })
			if err != nil {
				t.Fatal(err)
			}
			body := bytes.Repeat([]byte("0123456789abcd\r\n"), tc.size/16)
			if _, err := w.Write(body); err != nil {
				t.Fatal(err)
			}
			wantTmp := 0
			if tc.wantSpill {
				wantTmp = 1
			}
			if n := tmpFiles(t, s); n != wantTmp {
				t.Errorf("%d files in tmp/ after %d bytes, want %d", n, len(body), wantTmp)
			}
			if tc.abort {
				if err := w.Abort(); err != nil {
					t.Fatal(err)
				}
			} else if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.wantSpill]; spills != want || tc.wantSpill && filesAtSpill != 0 {
				t.Errorf("spill called %d times (want %d), %d files in tmp/ then (want 0)", spills, want, filesAtSpill)
			}
			if n := tmpFiles(t, s); n != 0 {
				t.Errorf("%d files left in tmp/", n)
			}
			ents, _ := os.ReadDir(s.Path(QueueDir))
			if tc.abort && len(ents) != 0 || !tc.abort && len(ents) != 1 {
				t.Fatalf("%d files in queue/", len(ents))
			}
			if !tc.abort {
				m, err := Open(s.Path(QueueDir, ents[0].Name()))
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if m.Size != int64(len(body)) {
					t.Errorf("size %d, want %d", m.Size, len(body))
				}
			}
		})
	}
}

// tmp/ unusable: a short message's Create succeeds and its Commit fails
// with the error of making the file; a long one's Write fails first.
func TestWriterFileError(t *testing.T) {
	for _, size := range []int{100, 200 << 10} {
		s, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.Create(testEnvelope(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(s.Path(TmpDir), 0o500); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			os.Remove(s.Path(TmpDir)) // root ignores modes: take tmp/ away
		}
		_, werr := w.Write(bytes.Repeat([]byte("x\r\n"), size/3))
		cerr := w.Commit()
		if cerr == nil || !errorsIsAny(cerr, syscall.EACCES, syscall.ENOENT) {
			t.Errorf("%d bytes: Commit = %v, want EACCES or ENOENT", size, cerr)
		}
		if size > 64<<10 && werr == nil {
			t.Errorf("%d bytes: Write succeeded with tmp/ unusable", size)
		}
		if ents, _ := os.ReadDir(s.Path(QueueDir)); len(ents) != 0 {
			t.Errorf("%d bytes: %d files in queue/", size, len(ents))
		}
	}
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// Abort from another goroutine (a signal handler's) while the session's
// goroutine writes a long message, at any point of it: tmp/ ends empty
// once both are done. Run with -race.
func TestWriterAbortWhileWriting(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("0123456789abcd\r\n"), 1<<10)
	for i := range 40 {
		w, err := s.Create(testEnvelope(t))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 * i {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}()
		w.Abort()
		wg.Wait()
		if n := tmpFiles(t, s); n != 0 {
			t.Fatalf("round %d: %d files left in tmp/", i, n)
		}
	}
}

// SyncDir syncs a directory, and fails with an *os.PathError naming it for
// a missing one and for a file, opening nothing that it leaves open.
func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	for _, tc := range []struct {
		path string
		want error
	}{{filepath.Join(dir, "missing"), fs.ErrNotExist}, {file, syscall.ENOTDIR}} {
		err := SyncDir(tc.path)
		var pe *os.PathError
		if !errors.Is(err, tc.want) || !errors.As(err, &pe) || pe.Path != tc.path {
			t.Errorf("SyncDir(%s) = %v, want a PathError for it wrapping %v", tc.path, err, tc.want)
		}
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}

// openFDs returns how many descriptors the process has open.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}
