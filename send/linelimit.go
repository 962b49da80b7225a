package send

import "io"

// maxLine is the longest line smtp-send sends, in octets, CRLF excluded:
// RFC 5321 section 4.5.3.1.6 allows 1000 octets with the CRLF (the dot
// doubled for transparency not counted), RFC 5322 section 2.1.1 998
// characters. Postfix's smtp_line_length_limit has the same default.
const maxLine = 998

// lineWriter passes message data on to w with no line longer than
// maxLine octets, for a next hop that refuses longer lines (as the RFCs
// allow it to). What it does to a longer line is what Postfix does:
//
//   - in the top-level header section (up to its blank line), the line is
//     folded (RFC 5322 section 2.2.3) before the last space or tab within
//     the limit that follows some text and precedes more, so that
//     unfolding gives the field back unchanged (and a DKIM signature with
//     relaxed header canonicalization still verifies);
//   - where there is no such blank, and everywhere in the body, CRLF and a
//     space are inserted after maxLine octets. The space makes the rest a
//     header continuation line when the line was a MIME part's header
//     field, is skipped by base64 decoders, and can never make the rest a
//     MIME boundary or the end-of-data dot.
//
// A line end is CRLF or a bare LF (which the DATA writer sends as CRLF); a
// bare CR is an octet of the line. Memory stays at one line of the header
// section. Flush must be called at the end.
type lineWriter struct {
	w    io.Writer
	body bool   // past the blank line that ends the header section
	line []byte // header section: the current line, up to maxLine+1 octets
	n    int    // body: octets on the current line
	cr   bool   // a CR not yet passed on: a line end if LF follows
	out  []byte // output of the current Write
	err  error
}

// newLineWriter returns a lineWriter that writes to w.
func newLineWriter(w io.Writer) *lineWriter {
	return &lineWriter{w: w, line: make([]byte, 0, maxLine+1)}
}

// Write implements io.Writer. It returns len(p) unless w failed.
func (l *lineWriter) Write(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	for _, c := range p {
		if l.cr {
			l.cr = false
			if c == '\n' {
				l.end("\r\n")
				continue
			}
			l.octet('\r')
		}
		switch c {
		case '\r':
			l.cr = true
		case '\n':
			l.end("\n")
		default:
			l.octet(c)
		}
		if len(l.out) >= 32<<10 {
			l.flushOut()
		}
	}
	l.flushOut()
	if l.err != nil {
		return 0, l.err
	}
	return len(p), nil
}

// Flush passes on what is held back: a trailing CR, and the last line of a
// message that is all header section without a line end.
func (l *lineWriter) Flush() error {
	if l.cr {
		l.cr = false
		l.octet('\r')
	}
	if !l.body {
		l.out = append(l.out, l.line...)
		l.line = l.line[:0]
	}
	l.flushOut()
	return l.err
}

func (l *lineWriter) flushOut() {
	if len(l.out) > 0 && l.err == nil {
		_, l.err = l.w.Write(l.out)
	}
	l.out = l.out[:0]
}

// end ends the current line with eol; a blank line ends the header section.
func (l *lineWriter) end(eol string) {
	if !l.body {
		if len(l.line) == 0 {
			l.body = true
		}
		l.out = append(l.out, l.line...)
		l.line = l.line[:0]
	}
	l.out = append(l.out, eol...)
	l.n = 0
}

// octet adds c to the current line, breaking the line first if it is full.
func (l *lineWriter) octet(c byte) {
	if l.body {
		if l.n == maxLine {
			l.out = append(l.out, "\r\n "...)
			l.n = 1
		}
		l.out = append(l.out, c)
		l.n++
		return
	}
	l.line = append(l.line, c)
	if len(l.line) <= maxLine {
		return
	}
	if i := foldAt(l.line, maxLine); i > 0 {
		l.out = append(l.out, l.line[:i]...)
		l.out = append(l.out, "\r\n"...)
		l.line = l.line[:copy(l.line, l.line[i:])]
		return
	}
	l.out = append(l.out, l.line[:maxLine]...)
	l.out = append(l.out, "\r\n"...)
	l.line = append(l.line[:0], ' ', c)
}

// foldAt returns where to fold the header line b (RFC 5322 section
// 2.2.3): the index of a space or tab that follows some non-blank text and
// is followed by a non-blank octet, so that neither line is blank; the
// last such index at most width, else the first one after it; -1 if there
// is none.
func foldAt(b []byte, width int) int {
	best, text := -1, false
	for i := 0; i+1 < len(b); i++ {
		if b[i] != ' ' && b[i] != '\t' {
			text = true
			continue
		}
		if !text || b[i+1] == ' ' || b[i+1] == '\t' {
			continue
		}
		if i > width {
			if best < 0 {
				return i
			}
			return best
		}
		best = i
	}
	return best
}
