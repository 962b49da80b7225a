package send

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/smtp-stdio/smtp-stdio/queue"
)

// This file is RET=FULL (RFC 3461 section 4.3): when a failure notice
// returns the whole message, as message/rfc822, rather than its header
// section.

// fullMode is how a notice returns the whole message. The zero value is
// not at all: the header section only.
type fullMode int

const (
	fullNone  fullMode = iota // header section only (text/rfc822-headers)
	fullRaw                   // the spooled bytes as they are
	fullSeven                 // the 7-bit version of sevenBit, long lines broken
)

// fullReturn is what a notice does about RET=FULL: its mode, and, when
// the sender asked for the whole message and does not get it, why.
type fullReturn struct {
	mode fullMode
	why  string // "" unless RET=FULL fell back to the header section
}

// checkFull decides whether the failure notice n, whose MIME boundary is
// boundary, returns the whole message. Only a failure notice does, only
// for RET=FULL, only when the message is at most n.ReturnFull octets
// (Postfix's bounce_size_limit, which also falls back to the header
// section above it), and only when it can stand in the notice as
// message/rfc822, whose transfer encoding can only be 7bit, 8bit or
// binary (RFC 2046 section 5.2.1): the spooled bytes when they are
// 7-bit lines of at most maxLine octets ending CRLF, else the 7-bit
// version that relaying to a server without 8BITMIME would send (RFC
// 6152 section 3), if that is clean. A notice stays 7-bit, so that every
// hop takes it. n.Content is read at most three times; the error is the
// first read error.
func checkFull(n *queue.Notice, kind, boundary string) (fullReturn, error) {
	if kind != actionFailed || n.Envelope.Ret != "FULL" {
		return fullReturn{}, nil
	}
	if n.ReturnFull <= 0 {
		return fullReturn{why: "this system returns the header section only"}, nil
	}
	if n.Size > n.ReturnFull {
		return fullReturn{why: fmt.Sprintf("the whole message, %d bytes, is larger than the %d returned whole", n.Size, n.ReturnFull)}, nil
	}
	pc := newPlainCheck(boundary)
	if _, err := io.Copy(pc, n.Content()); err != nil && !errors.Is(err, errNotPlain) {
		return fullReturn{}, err
	}
	if pc.ok() {
		return fullReturn{mode: fullRaw}, nil
	}
	pc = newPlainCheck(boundary)
	lw := newLineWriter(pc)
	err := sevenBit(lw, n.Content)
	if err == nil {
		err = lw.Flush()
	}
	var u *unconvertibleError
	switch {
	case err == nil && pc.ok():
		return fullReturn{mode: fullSeven}, nil
	case err == nil, errors.Is(err, errNotPlain), errors.As(err, &u):
		return fullReturn{why: "the whole message could not be returned in 7 bits"}, nil
	}
	return fullReturn{}, err
}

// writeFull writes the whole message to w as checkFull decided (fullRaw
// or fullSeven), streamed from n.Content.
func writeFull(w io.Writer, n *queue.Notice, mode fullMode) error {
	if mode == fullRaw {
		_, err := io.Copy(w, n.Content())
		return err
	}
	lw := newLineWriter(w)
	if err := sevenBit(lw, n.Content); err != nil {
		return err
	}
	return lw.Flush()
}

// errNotPlain stops a copy into a plainCheck at the first octet that
// fails it.
var errNotPlain = errors.New("send: not plain 7-bit text")

// plainCheck is an io.Writer that tells whether what went through it can
// stand as it is in a 7-bit part of a notice: octets 1 to 127, CR only
// before LF and LF only after CR, lines of at most maxLine octets, the
// last one ended, and no line that starts with the notice's boundary
// delimiter (RFC 2046 section 5.1.1), which would end the part early.
// Write returns errNotPlain at the first octet that fails.
type plainCheck struct {
	delim []byte // "--" + the boundary
	head  []byte // the current line's first octets, up to len(delim)
	n     int    // octets on the current line, CR LF excluded
	cr    bool   // the last octet was a CR
	bad   bool
}

func newPlainCheck(boundary string) *plainCheck {
	d := []byte("--" + boundary)
	return &plainCheck{delim: d, head: make([]byte, 0, len(d))}
}

// Write implements io.Writer.
func (p *plainCheck) Write(b []byte) (int, error) {
	for i, c := range b {
		switch {
		case p.bad:
		case p.cr && c == '\n':
			p.cr, p.n, p.head = false, 0, p.head[:0]
			continue
		case p.cr, c == '\n', c == 0, c >= 0x80:
			p.bad = true
		case c == '\r':
			p.cr = true
			continue
		}
		if p.n++; p.bad || p.n > maxLine {
			p.bad = true
			return i, errNotPlain
		}
		if len(p.head) < len(p.delim) {
			if p.head = append(p.head, c); bytes.Equal(p.head, p.delim) {
				p.bad = true
				return i, errNotPlain
			}
		}
	}
	return len(b), nil
}

// ok reports whether everything written was plain and ended in a line
// end.
func (p *plainCheck) ok() bool { return !p.bad && p.n == 0 && !p.cr }
