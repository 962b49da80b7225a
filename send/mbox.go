package send

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/route"
)

// mboxSession appends messages to mbox files, one per recipient, as
// Postfix's local(8) writes /var/mail (mail_copy.c): under an fcntl(2)
// lock and a dot-lock (<file>.lock), a "From sender date" line, the
// message with LF ends, Return-Path: and Delivered-To: on top, lines
// starting with "From " (after any ">") quoted with one more ">" (mboxrd,
// so that a reader can undo it), a blank line at the end; then fsync.
// On any failure the file is truncated back to its length before, so a
// reader never sees half a message. Files are made mode 0600, owned by
// the user smtp-send runs as (virtual mailboxes, as for maildir).
type mboxSession struct {
	cfg   *Config
	route route.Route
	now   func() time.Time
}

// mboxRelay is the Relay of mbox outcomes.
const mboxRelay = "mbox"

// Dot-lock limits: a lock older than staleLock is left by a dead
// process and removed (Postfix's stale_lock_time, 500 s); lockWait
// bounds the wait for a live one.
const (
	staleLock = 500 * time.Second
	lockWait  = 30 * time.Second
)

// Deliver implements Session: each recipient in turn. A file that cannot
// be locked or written defers its recipient alone (4.2.2 for a full disk
// or quota, else 4.3.0); an address that gives no path fails with 5.1.3.
func (s *mboxSession) Deliver(ctx context.Context, d *Delivery, rec Recorder) error {
	for _, i := range d.Rcpts {
		addr := d.Envelope.To[i]
		path, err := s.route.Expand(addr)
		if err != nil {
			rec.Failed([]int{i}, localFailure(mboxRelay, "5.1.3", oneLine(err.Error())))
			continue
		}
		err = appendMbox(ctx, path, d, addr, s.now())
		var rerr *readError
		switch {
		case errors.As(err, &rerr):
			return rerr.err
		case err != nil:
			rec.Failed([]int{i}, localWriteFailure(mboxRelay, "mbox "+path, err))
			continue
		}
		if err := rec.Delivered([]int{i}, Reply{Stage: StageLocal, Enhanced: "2.0.0", Text: oneLine("delivered to " + path), Relay: mboxRelay, Action: actionDelivered}); err != nil {
			return err
		}
	}
	return nil
}

// Close implements Session.
func (s *mboxSession) Close() error { return nil }

// appendMbox appends d for addr to the mbox file path, locked. Errors
// reading the message are *readError; the file is then, as after any
// error, cut back to its old length.
func appendMbox(ctx context.Context, path string, d *Delivery, addr string, now time.Time) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	unlock, err := dotLock(ctx, path+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if err := fcntlLock(ctx, f); err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// Postfix's mail_copy: "Truncate the file to its original
			// length".
			f.Truncate(size)
			f.Sync()
		}
	}()
	bw := bufio.NewWriterSize(f, 64<<10)
	from := d.Envelope.From
	if from == "" {
		from = "MAILER-DAEMON"
	}
	fmt.Fprintf(bw, "From %s %s\nReturn-Path: <%s>\nDelivered-To: %s\n", strings.ReplaceAll(oneHeaderLine(from), " ", "_"),
		now.UTC().Format(time.ANSIC), oneHeaderLine(d.Envelope.From), oneHeaderLine(addr))
	if err := copyMboxLines(bw, d.Content()); err != nil {
		return err
	}
	bw.WriteString("\n")
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Sync()
}

// copyMboxLines writes the message r to w line by line with LF ends,
// quoting ">*From " at the start of a line with one more ">" (mboxrd),
// and ends it with a line end. Errors of reading r are *readError.
func copyMboxLines(w *bufio.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 8<<10)
	start, last := true, byte('\n')
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if start && isFromLine(chunk) {
				w.WriteByte('>')
			}
			start = chunk[len(chunk)-1] == '\n'
			if start {
				chunk = chunk[:len(chunk)-1]
				if n := len(chunk); n > 0 && chunk[n-1] == '\r' {
					chunk = chunk[:n-1]
				}
				w.Write(chunk)
				w.WriteByte('\n')
				last = '\n'
			} else {
				w.Write(chunk)
				last = chunk[len(chunk)-1]
			}
		}
		switch {
		case err == io.EOF:
			if last != '\n' {
				w.WriteByte('\n')
			}
			return nil
		case errors.Is(err, bufio.ErrBufferFull):
		case err != nil:
			return &readError{err}
		}
	}
}

// isFromLine reports whether a line starts with ">*From ".
func isFromLine(b []byte) bool {
	s := strings.TrimLeft(string(b[:min(len(b), 64)]), ">")
	return strings.HasPrefix(s, "From ")
}

// dotLock takes the dot-lock name (O_EXCL), removing one older than
// staleLock, waiting up to lockWait for a live one. It returns the
// function that releases it.
func dotLock(ctx context.Context, name string) (func(), error) {
	deadline := time.Now().Add(lockWait)
	for {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err == nil {
			f.Close()
			return func() { os.Remove(name) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("dot-lock: %w", err)
		}
		if fi, err := os.Lstat(name); err == nil && time.Since(fi.ModTime()) > staleLock {
			os.Remove(name)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dot-lock %s held for over %s", name, lockWait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fcntlLock takes an fcntl(2) write lock on all of f, waiting up to
// lockWait for another holder (a mail reader).
func fcntlLock(ctx context.Context, f *os.File) error {
	deadline := time.Now().Add(lockWait)
	for {
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
		err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES):
			return fmt.Errorf("fcntl lock: %w", err)
		case time.Now().After(deadline):
			return fmt.Errorf("fcntl lock held by another process for over %s", lockWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
