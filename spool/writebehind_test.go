package spool

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"
)

// bigBody returns n bytes of CRLF-ended lines of varied lengths.
func bigBody(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < n {
		line := make([]byte, r.IntN(200))
		for i := range line {
			line[i] = byte('!' + r.IntN(90))
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// goroutinesSettle waits until the number of goroutines is at most n,
// and reports whether it came down.
func goroutinesSettle(n int) bool {
	for range 200 {
		if runtime.NumGoroutine() <= n {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// TestWriteBehindMessage: a message larger than writeBehindAfter, written
// in writes of every size (some past a whole buffer), reaches the spool
// byte for byte with its size and CRC-32C, and the write-behind goroutine
// is gone after Commit.
func TestWriteBehindMessage(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	env := testEnvelope(t)
	w, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	body := bigBody(9*writeBehindSize + 3*writeBehindAfter + 12345)
	r := rand.New(rand.NewPCG(3, 4))
	for p := body; len(p) > 0; {
		k := min(len(p), 1+r.IntN(2*writeBehindSize))
		if n, err := w.Write(p[:k]); n != k || err != nil {
			t.Fatalf("Write: %d of %d, %v", n, k, err)
		}
		p = p[k:]
	}
	if w.wb == nil {
		t.Fatalf("%d bytes written without write-behind", len(body))
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	m, err := Open(s.Path(QueueDir, env.QueueID))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != int64(len(body)) || sha256.Sum256(got) != sha256.Sum256(body) {
		t.Errorf("spooled %d bytes (size field %d), want %d the same", len(got), m.Size, len(body))
	}
	if !goroutinesSettle(before) {
		t.Errorf("%d goroutines after Commit, %d before", runtime.NumGoroutine(), before)
	}
}

// TestWriteBehindAbort: Abort in the middle of a write-behind message
// leaves nothing in queue/ or tmp/ and ends the goroutine.
func TestWriteBehindAbort(t *testing.T) {
	s, _ := New(t.TempDir())
	before := runtime.NumGoroutine()
	w, err := s.Create(testEnvelope(t))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bigBody(writeBehindAfter + 5*writeBehindSize))
	if w.wb == nil {
		t.Fatal("no write-behind")
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{QueueDir, TmpDir} {
		if ents, _ := os.ReadDir(s.Path(d)); len(ents) != 0 {
			t.Errorf("%s not empty: %v", d, ents)
		}
	}
	if !goroutinesSettle(before) {
		t.Errorf("%d goroutines after Abort, %d before", runtime.NumGoroutine(), before)
	}
}

// failingWriter fails every write after the first ok ones.
type failingWriter struct{ ok int }

var errDiskFull = errors.New("no space left on device")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.ok == 0 {
		return 0, errDiskFull
	}
	f.ok--
	return len(p), nil
}

// TestWriteBehindError: a write that fails in the goroutine never blocks
// the writer, and close returns it; abort after close, or twice, is
// harmless, and Write after abort fails at once.
func TestWriteBehindError(t *testing.T) {
	wb := newWriteBehind(&failingWriter{ok: 2}, -1, 0)
	chunk := make([]byte, writeBehindSize/3)
	for range 60 { // 20 buffers: many past the failure
		if _, err := wb.Write(chunk); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if err := wb.close(); !errors.Is(err, errDiskFull) {
		t.Errorf("close: %v, want the write error", err)
	}
	wb.abort()
	wb.abort()

	wb = newWriteBehind(io.Discard, -1, 0)
	wb.Write(chunk)
	wb.abort()
	if _, err := wb.Write(make([]byte, 4*writeBehindSize)); !errors.Is(err, errWriteBehindStopped) {
		t.Errorf("Write after abort: %v", err)
	}
	if err := wb.close(); !errors.Is(err, errWriteBehindStopped) {
		t.Errorf("close after abort: %v", err)
	}
}
