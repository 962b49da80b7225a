package send

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/smtp-stdio/smtp-stdio/route"
)

// maildirSession writes messages into maildirs, one file per recipient:
// the qmail algorithm (write in tmp/, fsync, link into new/), made
// durable and idempotent.
//
//   - The file's name is derived from the message and the recipient,
//     not from the clock and the process: <arrival>.Q<queue id>R<index>.<host>
//     (unique per delivery, as the maildir specification requires, since
//     a queue id names one message and the index one of its recipients).
//     A retry of the same delivery uses the same name.
//   - It is written in tmp/ with O_EXCL, fsync'd, then link(2)ed into
//     new/ (never rename, which would replace a file of that name), and
//     new/ is fsync'd: only then is the recipient reported delivered.
//   - tmp/<name> is removed after the outcome is recorded. So a run
//     killed between the link and the record leaves tmp/<name> with a
//     second link (in new/, or in cur/ once a reader moved it there), or
//     new/<name> itself: the next run sees either and records the
//     recipient delivered without writing a second copy.
//
// Lines are stored with LF ends, as Dovecot and mail readers expect, with
// Return-Path: and Delivered-To: on top (as qmail-local and Postfix's
// local and virtual agents write them). Missing maildirs are made, mode
// 0700; files are mode 0600: every mailbox belongs to the user smtp-send
// runs as (Postfix's virtual(8) with one mail uid).
type maildirSession struct {
	cfg   *Config
	route route.Route
}

// maildirRelay is the Relay of maildir outcomes.
const maildirRelay = "maildir"

// Deliver implements Session: each recipient in turn. A recipient whose
// maildir cannot be written is deferred (a local problem, never a
// bounce: 4.2.2 when the disk or quota is full, else 4.3.0); one whose
// address gives no maildir path fails with 5.1.3. A message that cannot
// be read stops the delivery with that error.
func (s *maildirSession) Deliver(_ context.Context, d *Delivery, rec Recorder) error {
	for _, i := range d.Rcpts {
		addr := d.Envelope.To[i]
		dir, err := s.route.Expand(addr)
		if err != nil {
			rec.Failed([]int{i}, localFailure(maildirRelay, "5.1.3", oneLine(err.Error())))
			continue
		}
		name := maildirName(d, i, s.cfg.Hostname)
		done, again, err := writeMaildir(dir, name, d, addr)
		var rerr *readError
		switch {
		case errors.As(err, &rerr):
			return rerr.err
		case err != nil:
			rec.Failed([]int{i}, localWriteFailure(maildirRelay, "maildir "+dir, err))
			continue
		}
		text := "delivered to " + done
		if again {
			text = "already delivered to " + done + " by an earlier run"
		}
		if err := rec.Delivered([]int{i}, Reply{Stage: StageLocal, Enhanced: "2.0.0", Text: oneLine(text), Relay: maildirRelay, Action: actionDelivered}); err != nil {
			return err
		}
		// Recorded: the second link in tmp/ has done its job.
		os.Remove(filepath.Join(dir, "tmp", name))
	}
	return nil
}

// Close implements Session.
func (s *maildirSession) Close() error { return nil }

// maildirName is the file name of recipient i of d: stable across
// retries, unique per message and recipient. The host name's "/" and ":"
// are written \057 and \072, as the maildir specification asks; the
// queue id's dots become underscores, so that the name keeps its three
// dot-separated parts.
func maildirName(d *Delivery, i int, host string) string {
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	id := strings.Map(func(r rune) rune {
		if r == '.' || r == '/' || r == ':' || r < 0x20 {
			return '_'
		}
		return r
	}, d.Envelope.QueueID)
	return strconv.FormatInt(d.Envelope.Received.Unix(), 10) + ".Q" + id + "R" + strconv.Itoa(i) + "." + host
}

// readError marks an error reading the message, as opposed to writing
// the maildir.
type readError struct{ err error }

// Error implements error: the read error's text.
func (e *readError) Error() string { return e.err.Error() }

// Unwrap returns the read error, for errors.Is and errors.As.
func (e *readError) Unwrap() error { return e.err }

// writeMaildir delivers d for addr into the maildir dir under name and
// returns the path delivered to. again is true when an earlier run had
// already delivered it (its file is in new/, or tmp/<name> has another
// link). Errors reading the message are *readError.
func writeMaildir(dir, name string, d *Delivery, addr string) (path string, again bool, err error) {
	tmp := filepath.Join(dir, "tmp", name)
	final := filepath.Join(dir, "new", name)
	if fi, err := os.Lstat(final); err == nil && fi.Mode().IsRegular() {
		return final, true, nil
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err := makeMaildir(dir); err != nil {
			return "", false, err
		}
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	}
	if errors.Is(err, os.ErrExist) {
		// An earlier attempt: if its file was linked (into new/, since
		// moved to cur/ by a reader), it was delivered.
		if fi, serr := os.Lstat(tmp); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				return final, true, nil
			}
		}
		if err := os.Remove(tmp); err != nil {
			return "", false, err
		}
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	}
	if err != nil {
		return "", false, err
	}
	err = writeMaildirFile(f, d, addr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", false, err
	}
	if err := os.Link(tmp, final); errors.Is(err, os.ErrExist) {
		// qmail: "if it was error_exist, almost certainly successful".
		os.Remove(tmp)
		return final, true, nil
	} else if err != nil {
		os.Remove(tmp)
		return "", false, err
	}
	if err := syncDir(filepath.Join(dir, "new")); err != nil {
		return "", false, err
	}
	return final, false, nil
}

// writeMaildirFile writes the file's content and fsyncs it.
func writeMaildirFile(f *os.File, d *Delivery, addr string) error {
	bw := bufio.NewWriterSize(f, 64<<10)
	fmt.Fprintf(bw, "Return-Path: <%s>\nDelivered-To: %s\n", oneHeaderLine(d.Envelope.From), oneHeaderLine(addr))
	lw := &lfWriter{w: bw}
	if err := copyMessage(lw, d.Content()); err != nil {
		return err
	}
	lw.flush()
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Sync()
}

// copyMessage copies the message r to w, telling errors of reading r
// (*readError) from those of writing w.
func copyMessage(w io.Writer, r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &readError{err}
		}
	}
}

// makeMaildir makes dir and its cur/, new/ and tmp/ (mode 0700), and
// fsyncs what it made, so that a delivery into it survives a crash.
func makeMaildir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(filepath.Clean(dir)))
}

// syncDir fsyncs the directory dir, making the names in it durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// oneHeaderLine makes s fit on one header line: control characters become
// spaces (an envelope address never has them, but a header must not
// break if one did).
func oneHeaderLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// lfWriter turns CRLF line ends into LF as it writes; a CR not followed
// by LF is kept.
type lfWriter struct {
	w  *bufio.Writer
	cr bool // a CR held back
}

// Write implements io.Writer; errors surface at the bufio.Writer's
// Flush.
func (l *lfWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if l.cr {
			l.cr = false
			if c != '\n' {
				l.w.WriteByte('\r')
			}
		}
		if c == '\r' {
			l.cr = true
			continue
		}
		l.w.WriteByte(c)
	}
	return len(p), nil
}

// flush writes a CR held back at the end.
func (l *lfWriter) flush() {
	if l.cr {
		l.w.WriteByte('\r')
		l.cr = false
	}
}
