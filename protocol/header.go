package protocol

import (
	"bytes"
	"io"
)

// headerWriter stands between ReadData and the MessageWriter when
// Config.CheckHeader is set. It holds back the start of the message until
// the header section is complete, at its first empty line (RFC 5322
// section 2.1), hands the section to the check, and then writes the
// section, the fields the check adds (at its end, where a submission
// agent puts them) and the rest; from there on the body streams through
// untouched. Memory is bounded by max: a section longer than that is
// refused, not buffered.
//
// ReadData writes lines ended by CR LF only and never a bare CR or LF, so
// the first CR LF CR LF, or a CR LF at the very start, is the empty line.
type headerWriter struct {
	w      io.Writer
	check  func(header []byte) (add []byte, reject *Reply)
	buf    []byte // the message so far while capturing; at most max+2 bytes
	max    int
	state  headerState
	reject *Reply // why the message is refused, once state is dropping
}

// headerState is where a headerWriter stands; the zero value is the
// start.
type headerState uint8

const (
	// capturing: the header section is not complete yet.
	capturing headerState = iota
	// passing: the section was accepted and written; the rest streams.
	passing
	// dropping: the message is refused; nothing more is written.
	dropping
)

// Write implements io.Writer: it holds back the header section until it
// is complete, then checks it and passes the rest through.
func (h *headerWriter) Write(p []byte) (int, error) {
	switch h.state {
	case passing:
		return h.w.Write(p)
	case dropping:
		return len(p), nil
	}
	from := max(0, len(h.buf)-3) // an empty line may straddle two writes
	n := min(len(p), h.max+2-len(h.buf))
	h.buf = append(h.buf, p[:n]...)
	end := headerEnd(h.buf, from)
	if end < 0 {
		if len(h.buf) == h.max+2 {
			h.refuse(replyHeaderTooLong(h.max))
		}
		return len(p), nil
	}
	if err := h.release(h.buf[:end], h.buf[end:]); err != nil {
		return 0, err
	}
	if h.state == passing && n < len(p) {
		if _, err := h.w.Write(p[n:]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// finish runs at the end of the data: a message without an empty line is
// all header section (RFC 5322 section 2.1: the body is optional).
func (h *headerWriter) finish() error {
	switch {
	case h.state != capturing:
		return nil
	case len(h.buf) > h.max:
		h.refuse(replyHeaderTooLong(h.max))
		return nil
	}
	return h.release(h.buf, nil)
}

// release checks the header section and, if it passes, writes it, the
// added fields and rest, the bytes read beyond it.
func (h *headerWriter) release(header, rest []byte) error {
	add, r := h.check(header)
	if r != nil {
		h.refuse(r)
		return nil
	}
	h.state = passing
	for _, b := range [...][]byte{header, add, rest} {
		if len(b) == 0 {
			continue
		}
		if _, err := h.w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (h *headerWriter) refuse(r *Reply) {
	h.state, h.reject = dropping, r
}

var emptyLine = []byte("\r\n\r\n")

// headerEnd returns the length of the header section in b, the offset of
// the empty line that ends it, or -1 when b holds no empty line. The
// search for a line end followed by an empty line starts at from.
func headerEnd(b []byte, from int) int {
	if len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		return 0
	}
	if i := bytes.Index(b[from:], emptyLine); i >= 0 {
		return from + i + 2
	}
	return -1
}

// validAdded reports whether add is a run of non-empty lines, each ended
// by CR LF, holding no other CR or LF: fields that cannot end the header
// section early or put a bare line ending in the message.
func validAdded(add []byte) bool {
	for len(add) > 0 {
		i := bytes.IndexByte(add, '\n')
		if i < 1 || add[i-1] != '\r' || i == 1 || bytes.IndexByte(add[:i-1], '\r') >= 0 {
			return false
		}
		add = add[i+1:]
	}
	return true
}
