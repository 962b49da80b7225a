package spool

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"
)

// Subdirectories of a spool root. The receiver writes only into TmpDir and
// QueueDir; everything else belongs to the sender (package queue).
const (
	// QueueDir holds one immutable message file per queued message, named
	// by its queue id. A file appears here only complete and fsync'd.
	QueueDir = "queue"
	// TmpDir holds message files being written. A file here is never read
	// by the sender; one left by a killed receiver is removed by
	// smtp-send's cleanup once it is older than the receiver's session
	// deadline.
	TmpDir = "tmp"
)

// FileMode is the permission of every file the spool writes: mail is
// private to the spool's owner.
const FileMode os.FileMode = 0o600

// DirMode is the permission of directories the spool creates.
const DirMode os.FileMode = 0o700

// Fixed widths of the fields patched in place once the message bytes are
// written, so the envelope can be written before the message is streamed.
const (
	sizeWidth = 20 // decimal digits, enough for any int64
	crcWidth  = 8  // hex digits of a CRC-32C
)

// castagnoli returns the CRC-32C table, made on first use: making it
// costs about 0.2 ms of CPU, which a session that spools nothing should
// not pay.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// Spool is a spool root directory. The zero value is not usable; use New.
type Spool struct {
	root    string
	dirSync *DirSyncer // ShareDirSyncs; nil: each commit syncs on its own
}

// New returns the spool rooted at dir. It first checks that dir is safe
// (checkDir: after following symbolic links, a directory owned by the
// running user and not writable by group or others), then creates its
// queue/ and tmp/ subdirectories (mode 0700) when they are missing and
// checks them the same way, so a tmp/ that is a symbolic link to a
// world-writable directory is refused. Nothing is created under an unsafe
// root. It returns an error wrapping ErrUnsafe for an unsafe directory,
// naming it and what to do, or the wrapped error of stat or mkdir (a
// missing root wraps fs.ErrNotExist).
func New(dir string) (*Spool, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	s := &Spool{root: dir}
	for _, sub := range []string{QueueDir, TmpDir} {
		if err := ensureDir(s.Path(sub)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Root returns the spool's root directory.
func (s *Spool) Root() string { return s.root }

// Path returns the path of sub (QueueDir, TmpDir, ...) under the root.
func (s *Spool) Path(sub ...string) string {
	return filepath.Join(append([]string{s.root}, sub...)...)
}

// NewQueueID returns a new queue id for a message accepted at now: the UTC
// time to the second (so ids sort by arrival) and 64 random bits (so ids
// made by concurrent processes do not collide), e.g.
// "20261121T111825.3f9a1c0be4d2a1b2". The bits come from math/rand/v2's
// generator, which the runtime seeds from the kernel's entropy in every
// process: ids need to be unique, not secret, and the first read of
// crypto/rand cost a one-message session about 2% of its CPU. The error
// is always nil; it is kept for the callers that check it.
func NewQueueID(now time.Time) (string, error) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return now.UTC().Format("20060102T150405") + "." + hex.EncodeToString(b[:]), nil
}

// Writer streams one message into a temporary file under tmp/. Nothing is
// visible in queue/ until Commit returns nil. The temporary file is made
// only when it is needed: when the envelope and message outgrow the
// Writer's 64 KiB buffer, or at Commit. A message that is refused or
// aborted before then never touches the disk, and a short message's file
// exists only for the length of Commit. A Writer is not safe for
// concurrent use, except that Abort may be called from another goroutine
// (a signal handler's).
type Writer struct {
	sync    *DirSyncer // shares the directory fsync (group.go); nil: its own
	dir     string     // queue directory, fsync'd after the rename
	dest    string     // final path in queue/
	tmp     string     // the spool's tmp/, where the file is made
	id      string     // queue id, for errors
	spill   func()     // called once before the file is made during writing
	mu      sync.Mutex // guards pf's creation and done against Abort
	pf      *renameio.PendingFile
	bw      *bufio.Writer
	wb      *writeBehind // past writeBehindAfter bytes: takes over from bw
	crc     hash.Hash32
	size    int64
	flushed int64       // message bytes handed to writeback so far
	hdrLen  int64       // offset of the first message byte
	sizeOff int64       // offset of the message-size digits
	crcOff  int64       // offset of the message-crc32c digits
	err     error       // first write error; sticky
	done    atomic.Bool // committed or aborted
}

// Create starts a message for env. The envelope is written at once (into
// the Writer's buffer); the caller then writes the message bytes (CRLF
// line endings, already dot-unstuffed) and calls Commit or Abort. It
// returns an error if env is invalid. The temporary file is made later
// (see Writer), so an error making it (for example EACCES or ENOSPC,
// which the error wraps) comes from Write or Commit.
func (s *Spool) Create(env *Envelope) (*Writer, error) {
	return s.CreateSpill(env, nil)
}

// CreateSpill is Create with spill, when not nil, called once just before
// the temporary file is made while the message is still being written (it
// outgrew the buffer), and not when Commit makes it. A caller that
// promises to remove the file when a signal ends it installs its handler
// there: only a message past 64 KiB needs one, for the time it is read; a
// shorter message's file lives only through Commit's write, fsync and
// rename, and a file left by a kill then is removed by smtp-send's
// cleanup (SMTP_SEND_TMP_MAX_AGE), as after SIGKILL. It returns Create's
// errors; spill runs on the goroutine that writes, at most once.
func (s *Spool) CreateSpill(env *Envelope, spill func()) (*Writer, error) {
	if err := env.Validate(); err != nil {
		return nil, err
	}
	w := &Writer{
		sync:  s.dirSync,
		dir:   s.Path(QueueDir),
		dest:  s.Path(QueueDir, env.QueueID),
		tmp:   s.Path(TmpDir),
		id:    env.QueueID,
		spill: spill,
		crc:   newCRC(),
	}
	w.bw = newBufWriter((*fileSink)(w))
	hdr := encodeEnvelope(env)
	w.sizeOff = int64(len(hdr.prefix))
	w.crcOff = w.sizeOff + sizeWidth + int64(len(hdr.middle))
	if _, err := io.WriteString(w.bw, hdr.prefix+zeros(sizeWidth)+hdr.middle+zeros(crcWidth)+hdr.suffix); err != nil {
		w.Abort()
		return nil, fmt.Errorf("spool: write envelope %s: %w", env.QueueID, err)
	}
	w.hdrLen = int64(len(hdr.prefix)+len(hdr.middle)+len(hdr.suffix)) + sizeWidth + crcWidth
	return w, nil
}

// errAborted is the error of making a Writer's file after Abort.
var errAborted = errors.New("spool: message aborted")

// file makes the temporary file if it is not made yet: spilling says the
// message is still being written (then spill runs first), not committed.
// It returns the wrapped error of the create, or errAborted after Abort.
func (w *Writer) file(spilling bool) error {
	if w.pf != nil {
		return nil
	}
	if spilling && w.spill != nil {
		f := w.spill
		w.spill = nil
		f()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done.Load() {
		return errAborted
	}
	pf, err := renameio.NewPendingFile(w.dest,
		renameio.WithTempDir(w.tmp),
		renameio.WithStaticPermissions(FileMode))
	if err != nil {
		return fmt.Errorf("spool: create %s: %w", w.id, err)
	}
	w.pf = pf
	return nil
}

// fileSink is what a Writer's buffer writes to: the temporary file, made
// on the first write (Writer.file).
type fileSink Writer

func (f *fileSink) Write(p []byte) (int, error) {
	w := (*Writer)(f)
	if err := w.file(true); err != nil { // Commit makes it before it flushes
		return 0, err
	}
	return w.pf.Write(p)
}

func zeros(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = '0'
	}
	return string(b)
}

// Write appends message bytes. Errors are sticky: after the first failure
// every call returns it, and Commit will fail.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done.Load() {
		return 0, errors.New("spool: write after commit or abort")
	}
	var n int
	var err error
	if w.wb != nil {
		n, err = w.wb.Write(p)
	} else {
		n, err = w.bw.Write(p)
	}
	w.crc.Write(p[:n])
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("spool: write: %w", err)
		return n, w.err
	}
	switch {
	case w.wb != nil:
	case w.size >= writeBehindAfter:
		w.startWriteBehind()
	case w.size-w.flushed >= writebackChunk:
		w.startWriteback()
	}
	return n, nil
}

// startWriteBehind hands the writing of the rest of the message to a
// writeBehind (writebehind.go), after flushing what bw holds.
func (w *Writer) startWriteBehind() {
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("spool: write: %w", err)
		return
	}
	if err := w.file(true); err != nil {
		w.err = err
		return
	}
	wb := newWriteBehind(w.pf, int(w.pf.Fd()), w.hdrLen+w.size)
	w.mu.Lock()
	w.wb = wb // Abort reads it
	w.mu.Unlock()
}

// writebackChunk is how many message bytes accumulate before the kernel
// is asked to start writing them out.
const writebackChunk = 8 << 20

// startWriteback asks the kernel to start writing the bytes written so
// far to disk, without waiting (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE). A large message then reaches the disk while it
// is still arriving, and the fsync in Commit, which alone makes it
// durable, has little left to do. Failure is harmless: it is only a hint.
func (w *Writer) startWriteback() {
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("spool: write: %w", err)
		return
	}
	if err := w.file(true); err != nil {
		w.err = err
		return
	}
	unix.SyncFileRange(int(w.pf.Fd()), w.hdrLen+w.flushed, w.size-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
	w.flushed = w.size
}

// Size returns the number of message bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Commit makes the message durable and visible: it flushes, records the
// message size and CRC-32C in the envelope, fsyncs the file, renames it
// into queue/ and fsyncs queue/. Only after a nil return may the receiver
// say 250 (RFC 5321 section 4.1.1.4 and 6.1). On error the temporary file
// is removed and nothing is visible; the error wraps the system error
// (ENOSPC, EIO, ...).
func (w *Writer) Commit() error {
	if w.done.Load() {
		return errors.New("spool: commit after commit or abort")
	}
	err := w.commit()
	if w.wb != nil {
		w.wb.abort() // ended already unless commit failed before it
	}
	w.mu.Lock()
	if err != nil && w.pf != nil {
		w.pf.Cleanup()
	}
	w.done.Store(true)
	w.mu.Unlock()
	// Only Commit hands the buffer back: Abort may run on another
	// goroutine (a signal's) while Write is using it.
	putBufWriter(w.bw)
	w.bw = nil
	return err
}

// bufWriters are the 64 KiB write buffers of Writers. A one-process
// server commits hundreds of messages a second; without the pool each
// would allocate and clear a fresh buffer and leave it to the collector.
var bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// newBufWriter returns a 64 KiB buffered writer to f, from bufWriters.
func newBufWriter(f io.Writer) *bufio.Writer {
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(f)
	return bw
}

// putBufWriter gives bw back to bufWriters; it must not be used again.
func putBufWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	bufWriters.Put(bw)
}

func (w *Writer) commit() error {
	if w.err != nil {
		return w.err
	}
	if err := w.file(false); err != nil {
		return err
	}
	if w.wb != nil {
		if err := w.wb.close(); err != nil {
			return fmt.Errorf("spool: write: %w", err)
		}
	} else if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("spool: write: %w", err)
	}
	size := strconv.FormatInt(w.size, 10)
	size = zeros(sizeWidth-len(size)) + size
	if _, err := w.pf.WriteAt([]byte(size), w.sizeOff); err != nil {
		return fmt.Errorf("spool: write: %w", err)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], w.crc.Sum32())
	crc := hex.AppendEncode(make([]byte, 0, crcWidth), sum[:])
	if _, err := w.pf.WriteAt(crc, w.crcOff); err != nil {
		return fmt.Errorf("spool: write: %w", err)
	}
	if err := w.pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("spool: commit: %w", err)
	}
	syncDir := SyncDir
	if w.sync != nil {
		syncDir = w.sync.Sync
	}
	if err := syncDir(w.dir); err != nil {
		// The file is in place but its directory entry may not be on
		// disk: we must not claim durability. Take it back out so the
		// client's retry cannot produce a duplicate.
		os.Remove(w.dest)
		return err
	}
	return nil
}

// Abort discards the message: the temporary file, if made, is closed and
// removed.
// It is safe to call after Commit (it then does nothing) and more than once.
func (w *Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done.Load() {
		return nil
	}
	w.done.Store(true)
	if w.wb != nil {
		w.wb.abort()
	}
	if w.pf == nil {
		return nil // never made
	}
	if err := w.pf.Cleanup(); err != nil {
		return fmt.Errorf("spool: abort: %w", err)
	}
	return nil
}

// SyncDir fsyncs the directory dir so that a rename or unlink in it is
// durable. renameio makes a replacement atomic, not durable. It returns the
// wrapped error of open or fsync (an *os.PathError).
//
// It works on a bare descriptor, not an *os.File: os.OpenFile offers
// every file to the runtime's poller (epoll, refused for a directory)
// and sets and clears O_NONBLOCK, five system calls a commit does not
// need.
func SyncDir(dir string) error {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(dir, dirOpenFlags|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return fmt.Errorf("spool: sync dir: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	_, err = retryEINTR(func() (int, error) { return 0, unix.Fsync(fd) })
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: sync dir %s: %w", dir, &os.PathError{Op: "fsync", Path: dir, Err: err})
	}
	return nil
}

// retryEINTR runs f again while it fails with EINTR, as package os does
// for its system calls.
func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}
