package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file is the one place where the spool opens files and checks
// directories. Both programs go through it: smtp-stdio through New, and
// smtp-send through New and MakeDirs (package queue, for its own
// directories).
//
// Every existing file in the spool (message, and smtp-send's state and
// journal files) is opened by OpenFile: never following a symbolic link,
// never blocking, and only if fstat(2) says it is a regular file. Every
// directory is opened by OpenDir, which refuses anything but a directory.
// New files are created by renameio (message and state files) or by
// OpenFile with O_CREATE|O_EXCL (a new journal), in both cases with
// O_EXCL, which never opens an existing file of any kind.

// ErrNotRegular is wrapped by the errors of OpenFile (and so of Open, and
// of package queue's readers and writers) when the name in the spool is
// not a regular file: a FIFO, a socket, a device, a directory
// or a symbolic link. No such file is ever opened for reading: a FIFO
// would block the reader forever. smtp-send lists it as unreadable and
// sets it aside in corrupt/ (docs/send.md).
var ErrNotRegular = errors.New("spool: not a regular file")

// ErrUnsafe is wrapped by the errors of New and MakeDirs when the spool
// root or one of its subdirectories could be changed by another user: it
// is not a directory, is owned by another user than the one running the
// program, or is writable by group or others (after following symbolic
// links). Such a user could plant a message that smtp-send relays, or
// read every message through a tmp/ of their own. qmail and Postfix
// (postfix check) refuse the same. Both programs treat it as a
// configuration error: smtp-stdio answers 421, smtp-send exits 78.
var ErrUnsafe = errors.New("spool: unsafe spool directory")

// OpenFile opens the file at path in the spool as os.OpenFile does, with
// O_NOFOLLOW (a symbolic link in the last element is refused), O_NONBLOCK
// (opening a FIFO cannot block) and O_NOCTTY, and returns it only if it is
// a regular file. A path that lstat(2) shows to be anything else is not
// opened at all (opening a device may act on it); what is opened is
// checked again with fstat(2), so a file swapped in between is refused
// too. O_NONBLOCK stays set: reads and writes of a regular file ignore
// it. A name that is not a regular file returns an error wrapping
// ErrNotRegular; other errors are returned wrapped as they are (a missing
// file wraps fs.ErrNotExist). With O_CREATE a missing file is created
// with perm.
func OpenFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return nil, notRegular(path, fi.Mode())
	case err != nil && !(flag&os.O_CREATE != 0 && errors.Is(err, fs.ErrNotExist)):
		return nil, fmt.Errorf("spool: %w", err)
	}
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, perm)
	switch {
	case errors.Is(err, syscall.ELOOP):
		// Replaced by a symbolic link since the lstat.
		return nil, notRegular(path, fs.ModeSymlink)
	case errors.Is(err, syscall.ENXIO):
		// A FIFO without a reader, opened for writing, or a socket.
		return nil, notRegular(path, fs.ModeIrregular)
	case err != nil:
		return nil, fmt.Errorf("spool: %w", err)
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegular(path, fi.Mode())
	}
	return f, nil
}

// OpenDir opens the directory at path for reading its names, for fsync
// or for flock. Symbolic links are followed (New and MakeDirs checked
// where they lead); anything but a directory fails with ENOTDIR rather
// than being opened, and nothing blocks. Errors are os.OpenFile's, for the
// caller to wrap.
func OpenDir(path string) (*os.File, error) {
	return os.OpenFile(path, dirOpenFlags, 0)
}

// dirOpenFlags open a directory as OpenDir and SyncDir do: read-only,
// only a directory, never blocking, never a controlling terminal.
const dirOpenFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NONBLOCK | unix.O_NOCTTY

func notRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("%w: %s is %s", ErrNotRegular, path, kind(m))
}

// kind names a file type for an error message.
func kind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t == 0:
		return "a regular file"
	}
	return "not a regular file"
}

// checkDir reports whether path is safe as a spool directory: after
// following symbolic links it is a directory, owned by the effective user
// of this process, and not writable by group or others. The error wraps
// ErrUnsafe and names the path (and where a link leads), what is wrong
// and what to do; an error of stat(2) (say, ENOENT) is returned wrapped
// as it is.
func checkDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	what, fix := path, "chmod 0700 it"
	if li, err := os.Lstat(path); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		if target, err := filepath.EvalSymlinks(path); err == nil {
			what = fmt.Sprintf("%s (a symbolic link to %s)", path, target)
		}
		fix = "make the link point to a directory of mode 0700, or replace it by one"
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is %s, not a directory: make it a directory of mode 0700", ErrUnsafe, what, kind(fi.Mode()))
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: %s: cannot tell its owner", ErrUnsafe, what)
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("%w: %s is owned by uid %d, not by uid %d that runs this program: chown it to uid %d, or run the program as uid %d",
			ErrUnsafe, what, st.Uid, euid, euid, st.Uid)
	}
	if mode := st.Mode & 0o7777; mode&0o022 != 0 {
		return fmt.Errorf("%w: %s is group- or world-writable (mode %04o): %s",
			ErrUnsafe, what, mode, fix)
	}
	return nil
}

// MakeDirs creates each subdirectory sub of the root (mode 0700) when it
// is missing, and checks each as New checks the root: smtp-send's queue
// keeps its own directories beside queue/ and tmp/. It returns an error
// wrapping ErrUnsafe for an unsafe directory, naming it and what to do,
// or the wrapped error of stat or mkdir.
func (s *Spool) MakeDirs(sub ...string) error {
	for _, d := range sub {
		if err := ensureDir(s.Path(d)); err != nil {
			return err
		}
	}
	return nil
}

// ensureDir creates the directory at path with DirMode when nothing is
// there, then checks it (checkDir). A name that exists is never replaced.
func ensureDir(path string) error {
	// Checked first: it is there at every session but a spool's first,
	// and a mkdir that fails with EEXIST costs as much as one that works.
	if err := checkDir(path); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Mkdir(path, DirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return checkDir(path)
}
