package send

import (
	"bufio"
	"bytes"
	"io"
)

// headMax is how much of each line lineReader keeps: enough for any
// header field the MIME code must read (Content-Type with its
// parameters) and for every MIME boundary delimiter line (RFC 2046
// section 5.1.1: a boundary has at most 70 characters).
const headMax = 8 << 10

// lineReader reads a message line by line in bounded memory, whatever the
// length of its lines: of each line it keeps the first headMax octets and
// what the MIME code needs to know about the rest.
type lineReader struct {
	br   *bufio.Reader
	off  int64  // offset of the current line
	end  int64  // offset after it, line end included
	head []byte // its first octets (at most headMax), line end excluded
	long bool   // the line is longer than headMax: head is only its start
	eol  int    // its line end: 2 for CRLF, 1 for a bare LF, 0 for none (the last line)
	// What the line (line end excluded) holds:
	eight  bool // an octet >= 0x80
	nul    bool // a NUL
	bareCR bool // a CR that is not part of the line end
	err    error
}

// newLineReader returns a lineReader of r; scan reads the first line.
func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 16<<10), head: make([]byte, 0, 256)}
}

// scan reads the next line. It returns false at the end of the input or
// on a read error, kept in err.
func (l *lineReader) scan() bool {
	if l.err != nil {
		return false
	}
	l.off = l.end
	l.head, l.long, l.eol = l.head[:0], false, 0
	l.eight, l.nul, l.bareCR = false, false, false
	crs := 0
	var last byte
	for {
		chunk, err := l.br.ReadSlice('\n')
		l.end += int64(len(chunk))
		data := chunk
		if err == nil {
			data = chunk[:len(chunk)-1]
			l.eol = 1
			if len(data) > 0 && data[len(data)-1] == '\r' || len(data) == 0 && last == '\r' {
				l.eol = 2
			}
		}
		for _, c := range data {
			switch {
			case c >= 0x80:
				l.eight = true
			case c == 0:
				l.nul = true
			case c == '\r':
				crs++
			}
		}
		if room := headMax + 1 - len(l.head); room > 0 {
			l.head = append(l.head, data[:min(room, len(data))]...)
		}
		if len(data) > 0 {
			last = data[len(data)-1]
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if l.end == l.off {
				return false
			}
		case err != nil:
			l.err = err
			return false
		}
		break
	}
	n := int(l.end-l.off) - l.eol // the line's length without its end
	if l.eol == 2 {
		crs--
	}
	l.bareCR = crs > 0
	l.long = n > headMax
	l.head = l.head[:min(n, headMax, len(l.head))]
	return true
}

// length is the current line's length in octets, line end excluded.
func (l *lineReader) length() int64 { return l.end - l.off - int64(l.eol) }

// blank reports whether the current line is empty (the end of a header
// section).
func (l *lineReader) blank() bool { return l.eol > 0 && l.end-l.off == int64(l.eol) }

// fieldName returns the name of the header field that line starts, or ""
// if it does not start one: RFC 5322 section 3.6.8 (printable ASCII but
// ":"), with the obsolete blanks before the colon (section 4.5.8) allowed.
func fieldName(line []byte) string {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return ""
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return ""
	}
	for _, c := range name {
		if c < '!' || c > '~' {
			return ""
		}
	}
	return string(name)
}

// qpLine is the longest line quoted-printable writes, the "=" of a soft
// line break included (RFC 2045 section 6.7, rule 5).
const qpLine = 76

const hexDigits = "0123456789ABCDEF"

// qpWriter encodes what is written to it as quoted-printable (RFC 2045
// section 6.7) as it goes. CRLF and a bare LF are line breaks, written
// CRLF; "=", a bare CR, every octet outside printable ASCII, a space or
// tab that ends a line, and a "-" that starts one are written =XX; lines
// get soft line breaks to stay within 76 characters. So decoding gives
// back every octet but the line ends, and no encoded line can be taken
// for a MIME boundary delimiter (they start with "--"). mime/quotedprintable
// would turn a bare CR into a line break instead. Close must be called at
// the end; it does not close w.
type qpWriter struct {
	w   io.Writer
	out []byte
	col int  // characters on the current output line
	ws  byte // a space or tab not yet written: encoded if a line break follows
	cr  bool // a CR not yet written: a line break if LF follows
	err error
}

// Write implements io.Writer.
func (q *qpWriter) Write(p []byte) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	for _, c := range p {
		if q.cr {
			q.cr = false
			if c == '\n' {
				q.lineBreak()
				continue
			}
			q.pending(false)
			q.encode('\r')
		}
		switch {
		case c == '\r':
			q.cr = true
		case c == '\n':
			q.lineBreak()
		case c == ' ' || c == '\t':
			q.pending(false)
			q.ws = c
		case c >= '!' && c <= '~' && c != '=':
			q.pending(false)
			q.literal(c)
		default:
			q.pending(false)
			q.encode(c)
		}
		if len(q.out) >= 16<<10 {
			q.flush()
		}
	}
	q.flush()
	if q.err != nil {
		return 0, q.err
	}
	return len(p), nil
}

// Close writes what is held back. The output ends without a line break
// unless the input ended with one.
func (q *qpWriter) Close() error {
	if q.cr {
		q.cr = false
		q.pending(false)
		q.encode('\r')
	}
	q.pending(true)
	q.flush()
	return q.err
}

// atLineStart reports whether the output so far ends with a line break.
func (q *qpWriter) atLineStart() bool { return q.col == 0 && q.ws == 0 && !q.cr }

func (q *qpWriter) flush() {
	if len(q.out) > 0 && q.err == nil {
		_, q.err = q.w.Write(q.out)
	}
	q.out = q.out[:0]
}

// pending writes a held space or tab: encoded at the end of a line, as is
// before more text.
func (q *qpWriter) pending(atEnd bool) {
	if q.ws == 0 {
		return
	}
	c := q.ws
	q.ws = 0
	if atEnd {
		q.encode(c)
	} else {
		q.literal(c)
	}
}

func (q *qpWriter) lineBreak() {
	q.pending(true)
	q.out = append(q.out, '\r', '\n')
	q.col = 0
}

func (q *qpWriter) room(n int) {
	if q.col+n > qpLine-1 {
		q.out = append(q.out, '=', '\r', '\n')
		q.col = 0
	}
}

func (q *qpWriter) literal(c byte) {
	q.room(1)
	if c == '-' && q.col == 0 {
		q.out = append(q.out, '=', '2', 'D')
		q.col = 3
		return
	}
	q.out = append(q.out, c)
	q.col++
}

func (q *qpWriter) encode(c byte) {
	q.room(3)
	q.out = append(q.out, '=', hexDigits[c>>4], hexDigits[c&15])
	q.col += 3
}

// wrapWriter cuts what is written to it into lines of width characters,
// for base64 (RFC 2045 section 6.8: at most 76). The last line has no
// line break.
type wrapWriter struct {
	w     io.Writer
	width int
	col   int
}

// Write implements io.Writer.
func (ww *wrapWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if ww.col == ww.width {
			if _, err := io.WriteString(ww.w, "\r\n"); err != nil {
				return n, err
			}
			ww.col = 0
		}
		k := min(len(p), ww.width-ww.col)
		m, err := ww.w.Write(p[:k])
		n += m
		ww.col += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
