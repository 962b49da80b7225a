package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// DropDir is where the setgid drop helper (cmd/smtp-drop) leaves messages
// submitted by users who cannot write the spool: drop/<name>, owned by
// the submitting user, written complete and fsync'd under a name starting
// with '.', then renamed. The spool user owns it, its group is smtp-drop
// and its mode 1730: the group may create files but not list them, and
// the sticky bit keeps one user from renaming or removing another's.
// Pickup moves its files into queue/.
const DropDir = "drop"

// Picked is what Pickup did with one name in drop/.
type Picked struct {
	// Name is the name in drop/.
	Name string
	// ID is the new queue id, when the message was queued.
	ID string
	// Uid and Login are the submitting user, from the file's owner
	// (fstat), never from its content; Login is empty when the user
	// database does not know the uid.
	Uid   int
	Login string
	// Err is why the file was set aside in corrupt/ (as drop.<name>), or
	// why it could be neither queued nor set aside; nil when queued.
	Err error
	// SetAside reports that the file is in corrupt/.
	SetAside bool
}

// ErrDropUnsafe is wrapped by Pickup's error when drop/ is not what
// scripts/install-sendmail makes: a directory (not a symbolic link) owned
// by the user running smtp-send, not writable by others, with the sticky
// bit. Nothing in it is read then.
var ErrDropUnsafe = errors.New("queue: unsafe drop directory")

// Pickup takes every file in drop/ as untrusted input and moves each that
// passes the checks into queue/ with a new queue id (ordering rule 6 in
// item.go); the caller holds the run lock. The checks: a regular file
// (spool.OpenFile: no symbolic link, FIFO or device is opened), one link,
// at most maxSize bytes, a message file that spool.Open reads (format,
// envelope syntax as Envelope.Validate), and message bytes whose CRC-32C
// matches as they are copied. What fails a check is set aside in
// corrupt/, never queued. The queued envelope keeps the sender,
// recipients, BODY and SMTPUTF8 of the file; the arrival time is now,
// the client is local, and the first header field is a Received: naming
// the owner's uid and login (hostname is the "by" host). Names starting
// with '.' are files being written; one older than maxAge was left by a
// killed helper and is removed. A missing drop/ is no error. It returns
// what it did per name, and an error wrapping ErrDropUnsafe, or the
// error of reading drop/.
func (q *Queue) Pickup(maxSize int64, maxAge time.Duration, now time.Time, hostname string) ([]Picked, error) {
	dir := q.sp.Path(DropDir)
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || st == nil || int(st.Uid) != os.Geteuid() || st.Mode&0o002 != 0 || fi.Mode()&fs.ModeSticky == 0 {
		return nil, fmt.Errorf("%w: %s must be a directory owned by uid %d, mode 1730 (scripts/install-sendmail)",
			ErrDropUnsafe, dir, os.Geteuid())
	}
	names, err := readAll(dir)
	if err != nil {
		return nil, err
	}
	var out []Picked
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			if li, err := os.Lstat(q.sp.Path(DropDir, n)); err == nil && now.Sub(li.ModTime()) > maxAge {
				q.removeStaleDrop(n)
			}
			continue
		}
		out = append(out, q.pickOne(n, maxSize, now, hostname))
	}
	return out, nil
}

// pickOne checks and queues drop/<name>, or sets it aside.
func (q *Queue) pickOne(name string, maxSize int64, now time.Time, hostname string) Picked {
	p := Picked{Name: name, Uid: -1}
	aside := func(err error) Picked {
		p.Err = err
		if aerr := q.setAsideDropped(name); aerr != nil {
			p.Err = errors.Join(err, aerr)
		} else {
			p.SetAside = true
		}
		return p
	}
	path := q.sp.Path(DropDir, name)
	m, err := spool.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		p.Err = err
		return p
	}
	if err != nil {
		return aside(err)
	}
	defer m.Close()
	fi, err := m.File().Stat()
	if err != nil {
		return aside(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	p.Uid = int(st.Uid)
	if pw, err := user.LookupId(strconv.Itoa(p.Uid)); err == nil {
		p.Login = pw.Username
	}
	switch {
	case st.Nlink != 1:
		return aside(fmt.Errorf("queue: %s has %d links", path, st.Nlink))
	case fi.Size() > maxSize:
		return aside(fmt.Errorf("queue: %s is %d bytes, over the limit of %d", path, fi.Size(), maxSize))
	}
	id, err := spool.NewQueueID(now)
	if err != nil {
		p.Err = err
		return p
	}
	env := spool.Envelope{QueueID: id, Received: now, Protocol: "local",
		Body: m.Body, SMTPUTF8: m.SMTPUTF8, From: m.From, To: m.To}
	who := "from userid " + strconv.Itoa(p.Uid)
	if p.Login != "" && safeLogin(p.Login) {
		who += " login " + p.Login
	}
	rcvd := fmt.Sprintf("Received: by %s (smtp-stdio pickup, %s)\r\n\tid %s; %s\r\n",
		hostname, who, id, now.Format(time.RFC1123Z))
	if err := q.queueDropped(m, &env, rcvd, name); err != nil {
		if errors.Is(err, spool.ErrCorrupt) {
			return aside(err)
		}
		p.Err = err
		return p
	}
	p.ID = id
	return p
}

// safeLogin reports whether a login name may go into a header field as
// it is: printable ASCII without spaces, parentheses or backslashes.
func safeLogin(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '\\' {
			return false
		}
	}
	return true
}

// readAll returns every name in dir, dot names included.
func readAll(dir string) ([]string, error) {
	d, err := spool.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("queue: read %s: %w", dir, err)
	}
	return names, nil
}
