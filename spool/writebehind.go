package spool

import (
	"errors"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// Write-behind for large messages. A Writer's bytes go to the file in the
// session's own goroutine, each write(2) copying into the page cache and,
// past writebackChunk, starting writeback; the session parses nothing
// meanwhile. Past writeBehindAfter bytes a Writer hands full buffers to a
// goroutine of its own that does those system calls while the session
// reads and checks the next buffer: on a machine with two CPUs, parsing
// and writing then overlap, as a 100 MiB message shows (scripts/bench,
// against dd). Memory stays flat: writeBehindBuffers buffers of
// writeBehindSize bytes, whatever the message's size.

// writeBehindAfter is the message size, in bytes, past which a Writer
// writes behind; a smaller message never starts the goroutine.
const writeBehindAfter = 1 << 20

// writeBehindSize is the size of one buffer of a writeBehind, in bytes,
// and writeBehindBuffers their number: one being filled, one being
// written, one waiting.
const (
	writeBehindSize    = 256 << 10
	writeBehindBuffers = 3
)

// errWriteBehindStopped is what Write and close return after abort.
var errWriteBehindStopped = errors.New("spool: write stopped")

// writeBehind is an io.Writer that copies into buffers and has a
// goroutine write each full one to w, asking the kernel to start writing
// back every writebackChunk bytes (sync_file_range on fd, from file
// offset off). Write and close must be called from one goroutine; abort
// may be called from any, any number of times.
type writeBehind struct {
	full chan []byte   // buffers to write, in order
	free chan []byte   // buffers written, to fill again
	quit chan struct{} // closed by abort
	stop sync.Once
	done chan struct{} // closed when the goroutine returns
	cur  []byte        // the buffer being filled
	err  error         // the goroutine's first error; read after done
}

// newWriteBehind starts the goroutine writing to w; fd is w's descriptor
// for the writeback hints (-1 for none) and off the file offset of the
// first byte that will be written.
func newWriteBehind(w io.Writer, fd int, off int64) *writeBehind {
	wb := &writeBehind{
		full: make(chan []byte, writeBehindBuffers),
		free: make(chan []byte, writeBehindBuffers),
		quit: make(chan struct{}),
		done: make(chan struct{}),
		cur:  make([]byte, 0, writeBehindSize),
	}
	for range writeBehindBuffers - 1 {
		wb.free <- make([]byte, 0, writeBehindSize)
	}
	go wb.run(w, fd, off)
	return wb
}

// run writes the full buffers in order until full is closed or abort.
// After a failed write it writes no more but goes on taking buffers, so
// the session never waits on it; close returns the error.
func (wb *writeBehind) run(w io.Writer, fd int, off int64) {
	defer close(wb.done)
	pos, hinted := off, off
	for {
		select {
		case b, ok := <-wb.full:
			if !ok {
				return
			}
			if wb.err == nil {
				if _, err := w.Write(b); err != nil {
					wb.err = err
				}
				pos += int64(len(b))
				if fd >= 0 && pos-hinted >= writebackChunk {
					// Only a hint (Writer.startWriteback): its failure
					// is harmless.
					unix.SyncFileRange(fd, hinted, pos-hinted, unix.SYNC_FILE_RANGE_WRITE)
					hinted = pos
				}
			}
			wb.free <- b[:0] // room for every buffer: never waits
		case <-wb.quit:
			return
		}
	}
}

// Write copies p into the buffers, handing each full one to the
// goroutine. It returns errWriteBehindStopped after abort; a write error
// of the goroutine waits for close.
func (wb *writeBehind) Write(p []byte) (int, error) {
	if wb.stopped() {
		return 0, errWriteBehindStopped
	}
	n := 0
	for len(p) > 0 {
		k := copy(wb.cur[len(wb.cur):cap(wb.cur)], p)
		wb.cur = wb.cur[:len(wb.cur)+k]
		p, n = p[k:], n+k
		if len(wb.cur) < cap(wb.cur) {
			break
		}
		if !wb.hand() {
			return n, errWriteBehindStopped
		}
		select {
		case wb.cur = <-wb.free:
		case <-wb.quit:
			return n, errWriteBehindStopped
		}
	}
	return n, nil
}

// hand gives the buffer being filled to the goroutine; false after abort.
func (wb *writeBehind) hand() bool {
	if wb.stopped() {
		return false // a select below could still pick the send
	}
	select {
	case wb.full <- wb.cur:
		return true
	case <-wb.quit:
		return false
	}
}

// close writes what is left, waits for the goroutine and returns its
// first write error (or errWriteBehindStopped after abort). Call it once.
func (wb *writeBehind) close() error {
	if wb.stopped() || len(wb.cur) > 0 && !wb.hand() {
		return errWriteBehindStopped
	}
	close(wb.full)
	<-wb.done // after the last buffer, or abort
	if wb.stopped() {
		return errWriteBehindStopped
	}
	return wb.err
}

// stopped reports whether abort was called.
func (wb *writeBehind) stopped() bool {
	select {
	case <-wb.quit:
		return true
	default:
		return false
	}
}

// abort stops the goroutine without writing what is left.
func (wb *writeBehind) abort() {
	wb.stop.Do(func() { close(wb.quit) })
	<-wb.done
}
