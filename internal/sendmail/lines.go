package sendmail

import (
	"bufio"
	"errors"
	"io"
)

// lineReader reads the message on standard input a line at a time and
// gives each line back with a CRLF ending, whatever ended it in the
// input (LF or CRLF), so that the spool holds CRLF lines as SMTP does
// (RFC 5322 section 2.1; RFC 6409 section 8 lets a submission agent fix
// the line endings). A CR not before LF is left as it is. Without
// ignoreDots a line holding only "." ends the input, as in sendmail; with
// it (-i, -oi) only the end of the input does.
//
// A line longer than the reader's buffer comes back in pieces, the last
// one with the CRLF: the message streams, whatever its lines.
type lineReader struct {
	r          *bufio.Reader
	ignoreDots bool
	midLine    bool // the last piece did not end its line
	cr         bool // the last piece ended in a CR that was held back
	done       bool
	buf        []byte
}

func newLineReader(r io.Reader, ignoreDots bool) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), ignoreDots: ignoreDots}
}

// next returns the next piece of a line, valid until the next call;
// complete is true when the piece ends its line (with CRLF). It returns
// io.EOF at the end of the input or at a lone dot, and the reader's other
// errors.
func (l *lineReader) next() (piece []byte, complete bool, err error) {
	if l.done {
		return nil, false, io.EOF
	}
	b, err := l.r.ReadSlice('\n')
	l.buf = l.buf[:0]
	if l.cr {
		// A CR held back at the end of the last piece: it is the
		// line's ending if this piece starts with LF, else data.
		l.cr = false
		if len(b) > 0 && b[0] == '\n' {
			l.midLine = false
			return append(l.buf, '\r', '\n'), true, nil
		}
		l.buf = append(l.buf, '\r')
	}
	switch {
	case err == nil: // a whole line, or the end of a long one
		b = b[:len(b)-1]
		if len(b) > 0 && b[len(b)-1] == '\r' {
			b = b[:len(b)-1]
		}
		if !l.midLine && len(l.buf) == 0 && !l.ignoreDots && len(b) == 1 && b[0] == '.' {
			l.done = true
			return nil, false, io.EOF
		}
		l.midLine = false
		l.buf = append(append(l.buf, b...), '\r', '\n')
		return l.buf, true, nil
	case errors.Is(err, bufio.ErrBufferFull):
		if b[len(b)-1] == '\r' {
			b, l.cr = b[:len(b)-1], true
		}
		l.midLine = true
		return append(l.buf, b...), false, nil
	case errors.Is(err, io.EOF):
		l.done = true
		if len(b) == 0 && len(l.buf) == 0 && !l.midLine {
			return nil, false, io.EOF
		}
		// The last line had no line ending: it gets one.
		if !l.midLine && len(l.buf) == 0 && !l.ignoreDots && len(b) == 1 && b[0] == '.' {
			return nil, false, io.EOF
		}
		l.midLine = false
		return append(append(l.buf, b...), '\r', '\n'), true, nil
	default:
		return nil, false, err
	}
}
