package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// lineBuffered reports whether r holds a whole line, so that reading it
// cannot block.
func lineBuffered(r *bufio.Reader) bool {
	p, _ := r.Peek(r.Buffered())
	return bytes.IndexByte(p, '\n') >= 0
}

// readLine reads one command line into buf and returns it without its
// line ending, CRLF or, leniently, a bare LF (as Postfix does). A line
// longer than max bytes, line ending included, is read to its end and
// dropped: the error is errLineTooLong and the next line is read normally.
// Memory stays within max whatever the client sends.
func readLine(r *bufio.Reader, buf []byte, max int) ([]byte, error) {
	line, long := buf[:0], false
	for {
		frag, err := r.ReadSlice('\n')
		if !long && len(line)+len(frag) <= max {
			line = append(line, frag...)
		} else {
			long = true
		}
		switch {
		case err == nil && long:
			return line[:0], errLineTooLong
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			// The line goes on beyond the reader's buffer.
		case err == io.EOF && len(line) == 0 && !long:
			return line, io.EOF
		case err == io.EOF:
			return line[:0], io.ErrUnexpectedEOF
		default:
			return line[:0], err
		}
	}
}
