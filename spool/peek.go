package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// This file holds the lean readers of a listing (smtp-send --list), which
// reads the start of every file in queue/ and state/: with 100,000
// messages each system call saved is worth tens of milliseconds. They
// keep OpenFile's guarantees (never follow a symbolic link, never block on
// a FIFO, read only regular files, never open a name listed as anything
// else) with fewer calls: the type comes from the directory listing
// (getdents(2) d_type, as fs.DirEntry.Type) instead of an lstat(2) of each
// name, the file is opened with openat(2) relative to its open directory
// and checked with one fstat(2), and read with pread(2) on the bare
// descriptor, never registered with the Go runtime's poller.

// PeekBufSize is the size of the buffer Peek and ReadFileAt read into, in
// bytes: most envelopes and state files fit in it, and are read with one
// pread(2).
const PeekBufSize = 4096

// openAt opens name in the directory open as dirfd (at path dir, for the
// errors) for reading, as OpenFile does: with O_NOFOLLOW, O_NONBLOCK,
// O_NOCTTY and O_CLOEXEC, and only if fstat(2) then shows a regular file.
// typ is the name's type as the directory listing gave it (the type bits
// of fs.FileMode, fs.DirEntry.Type): a name listed as anything but a
// regular file is not opened at all, as OpenFile does after lstat(2); one
// replaced since the listing is refused by the fstat. It returns the
// descriptor and the file's size in bytes, or OpenFile's errors: wrapping
// ErrNotRegular, or the error of openat or fstat (a missing file wraps
// fs.ErrNotExist).
func openAt(dirfd int, dir, name string, typ fs.FileMode) (int, int64, error) {
	if typ.Type() != 0 {
		return -1, 0, notRegular(filepath.Join(dir, name), typ)
	}
	var fd int
	var err error
	for {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case err == unix.ELOOP:
		// Replaced by a symbolic link since the listing.
		return -1, 0, notRegular(filepath.Join(dir, name), fs.ModeSymlink)
	case err == unix.ENXIO:
		// A socket, replaced since the listing: named as lstat would.
		m := fs.ModeIrregular
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			m = fileMode(st.Mode)
		}
		return -1, 0, notRegular(filepath.Join(dir, name), m)
	case err != nil:
		return -1, 0, fmt.Errorf("spool: %w", &fs.PathError{Op: "open", Path: filepath.Join(dir, name), Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("spool: %w", &fs.PathError{Op: "stat", Path: filepath.Join(dir, name), Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, 0, notRegular(filepath.Join(dir, name), fileMode(st.Mode))
	}
	return fd, st.Size, nil
}

// fileMode is the fs.FileMode type of a stat(2) st_mode.
func fileMode(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
		return 0
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// pread reads from fd at off into buf, as many bytes as there are up to
// len(buf) or, at most, the file's size as fstat gave it (so that a file
// shorter than buf takes one call, not a second one that finds its end);
// it retries on EINTR and after a short read.
func pread(fd int, buf []byte, off, size int64) (int, error) {
	n := 0
	for n < len(buf) && off+int64(n) < size {
		k, err := unix.Pread(fd, buf[n:], off+int64(n))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return n, err
		case k == 0:
			return n, nil
		}
		n += k
	}
	return n, nil
}

// Peek reads the envelope of the message file name in the directory open
// as dirfd (at path dir) as Open does, with the same checks and errors
// (see openAt for typ, the name's type in the directory listing), in
// fewer system calls: openat, fstat, one pread of PeekBufSize bytes when
// the envelope fits in them, and close. lock, when not nil, is called
// with the open descriptor once the envelope is read, before it is
// closed (a flock taken there is released by the close). buf is scratch
// space of PeekBufSize bytes, which the returned Message does not keep.
// The Message has no open file: Content, File and Close must not be
// used.
func Peek(dirfd int, dir, name string, typ fs.FileMode, buf []byte, lock func(fd int)) (*Message, error) {
	fd, size, err := openAt(dirfd, dir, name, typ)
	if err != nil {
		return nil, err
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	m, err := peek(fd, size, buf)
	if errors.Is(err, errLongEnvelope) {
		// The envelope does not fit in buf: read it as Open does.
		// os.NewFile takes the descriptor, and closes it.
		f := os.NewFile(uintptr(fd), filepath.Join(dir, name))
		m, err = parse(f)
		if err == nil && lock != nil {
			lock(int(f.Fd()))
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("spool: %w", cerr)
		}
		fd = -1 // closed
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		m.f = nil
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	if lock != nil {
		lock(fd)
	}
	return m, nil
}

// errLongEnvelope: the envelope is longer than Peek's buffer.
var errLongEnvelope = errors.New("spool: envelope longer than the buffer")

// peek parses the envelope at the start of the open file fd of size bytes
// from one pread into buf, or returns errLongEnvelope when it does not
// fit (the file offset is still 0).
func peek(fd int, size int64, buf []byte) (*Message, error) {
	n, err := pread(fd, buf, 0, size)
	if err != nil {
		return nil, fmt.Errorf("spool: read: %w", err)
	}
	b := buf[:n]
	end := bytes.Index(b, []byte("\n\n"))
	switch {
	case end >= 0:
		b = b[:end+2]
	case n == len(buf) && size > int64(n):
		return nil, errLongEnvelope
	}
	// One string for the whole envelope: the fields are parts of it.
	hdr := string(b)
	readLine := func() (string, error) {
		i := strings.IndexByte(hdr, '\n')
		if i < 0 {
			// The whole file is in buf, or the envelope's end.
			return hdr, errTruncated
		}
		line := hdr[:i+1]
		hdr = hdr[i+1:]
		return line, nil
	}
	m, off, err := parseEnvelope(readLine)
	if err != nil {
		return nil, err
	}
	if err := m.setBody(off, size); err != nil {
		return nil, err
	}
	return m, nil
}

// ReadFileAt reads the regular file name in the directory open as dirfd
// (at path dir), with OpenFile's checks and errors (see openAt for typ),
// in as few system calls as Peek: the whole file as long as fstat(2)
// says it is, up to limit bytes and one more (so that the caller can tell
// a file longer than limit). It
// returns buf[:n] when the file fits in buf (PeekBufSize bytes, which the
// caller may reuse after), else a new slice. The error of reading is an
// *fs.PathError with Op "read", as os.File's; those of opening are
// openAt's.
func ReadFileAt(dirfd int, dir, name string, typ fs.FileMode, buf []byte, limit int64) ([]byte, error) {
	fd, size, err := openAt(dirfd, dir, name, typ)
	if err != nil {
		return nil, err
	}
	if size < int64(len(buf)) {
		// One pread of the size fstat gave: files in the spool are
		// written whole and renamed into place, never changed in place.
		n, err := pread(fd, buf, 0, size)
		unix.Close(fd)
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: filepath.Join(dir, name), Err: err}
		}
		return buf[:n], nil
	}
	// os.NewFile takes the descriptor, and closes it.
	f := os.NewFile(uintptr(fd), filepath.Join(dir, name))
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, 0, limit+1), limit+1))
	if err != nil {
		return nil, err
	}
	return b, nil
}
