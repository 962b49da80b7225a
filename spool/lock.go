package spool

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked is wrapped by the errors of LockRun and LockMessage when another
// process holds the lock. Locks are flock(2) locks on open files: the
// kernel drops them when the holder exits or is killed, so no lock ever
// outlives its process and there is no stale lock file to clean up.
var ErrLocked = errors.New("spool: locked by another process")

// RunLock is the sender's exclusive lock on a spool: at most one delivery
// run per spool at a time. It is a flock on the state/ directory itself,
// so there is no lock file at all.
type RunLock struct {
	f *os.File
}

// LockRun takes the run lock without waiting. It returns an error wrapping
// ErrLocked when another run holds it, or the error of opening state/
// (call InitQueue first).
func (s *Spool) LockRun() (*RunLock, error) {
	f, err := openDir(s.Path(StateDir))
	if err != nil {
		return nil, fmt.Errorf("spool: run lock: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: run lock: %w", err)
	}
	return &RunLock{f: f}, nil
}

// Unlock releases the run lock. Exiting releases it too.
func (l *RunLock) Unlock() error {
	return l.f.Close()
}

// LockMessage takes a non-blocking flock on an open message file (see
// Message.File): exclusive for a run that delivers or moves the message,
// shared for a reader such as --list. It returns an error wrapping
// ErrLocked when a conflicting lock is held. The lock is released when the
// file is closed.
func LockMessage(f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := flock(f, how); err != nil {
		return fmt.Errorf("spool: lock %s: %w", f.Name(), err)
	}
	return nil
}

// UnlockMessage releases a lock taken by LockMessage before the file is
// closed.
func UnlockMessage(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrLocked
		default:
			return err
		}
	}
}
