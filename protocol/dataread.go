package protocol

import (
	"bufio"
	"bytes"
	"io"
	"sync"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// DataOptions are the rules ReadData applies.
type DataOptions struct {
	// BareLineEndings says what a bare CR or LF does: RejectBare stops
	// the output there, NormalizeBare writes it as CRLF.
	BareLineEndings BareLineEndings
	// MaxSize is the largest message written, in bytes after
	// dot-unstuffing; past it ReadData stops writing and reads on to the
	// end. 0 or less is no limit.
	MaxSize int64
	// BeforeRead, when not nil, runs before every read from the reader
	// underneath r, when nothing is buffered, with the number of bytes
	// of r consumed so far: the session sets the DATA timeout there (RFC
	// 5321 section 4.5.3.2.6, per block) and checks the data rate. An
	// error stops ReadData, which returns it.
	BeforeRead func(read int64) error
}

// DataResult describes a message read by ReadData.
type DataResult struct {
	// Size is the length of the message in bytes after dot-unstuffing and
	// normalizing, counted to the end even past MaxSize.
	Size int64
	// TooBig is true when Size is over MaxSize; the output stopped there.
	TooBig bool
	// Bare is true when the message held a bare CR or LF (RFC 5321 section
	// 2.3.8); with RejectBare the output stopped before it.
	Bare bool
	// Received counts the header fields named Received in the header
	// section (up to the first empty line), for the loop check of RFC
	// 5321 section 6.3.
	Received int
	// WriteErr is the first error from the writer. Writing stopped there,
	// but reading went on to the end of the data so that the session
	// stays in step with the client.
	WriteErr error
}

// ReadData reads the message text that follows the 354 reply to DATA from
// r, up to and including the end-of-data line, and writes the message to w
// with the trailing "." line removed and dot-stuffing undone (RFC 5321
// sections 4.1.1.4 and 4.5.2).
//
// Only CR LF "." CR LF ends the message, where the first CR LF may be the
// start of the data. A CR or LF that is not part of a CR LF pair (bare)
// never ends a line for that purpose: after a bare line ending a "." line
// is message content, so a client cannot smuggle a second transaction
// past a server that reads bare LF as a line end (SMTP smuggling, 2023).
// What the output holds of it depends on opt.BareLineEndings; it never
// holds a bare CR or LF.
//
// ReadData works on the reader's buffer with fixed memory, whatever the
// length of the lines or of the message. It returns an error only for a
// failed read, io.ErrUnexpectedEOF when the input ends before the end of
// data, or an error from opt.BeforeRead; the result then covers what was
// read.
func ReadData(r *bufio.Reader, w io.Writer, opt DataOptions) (DataResult, error) {
	buf := outBufs.Get().(*[]byte)
	defer outBufs.Put(buf)
	d := dataReader{w: w, out: (*buf)[:0], opt: opt, header: true}
	var read int64
	for {
		if r.Buffered() == 0 {
			if opt.BeforeRead != nil {
				if err := opt.BeforeRead(read); err != nil {
					d.flush()
					return d.res, err
				}
			}
			if _, err := r.Peek(1); err != nil {
				d.flush()
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return d.res, err
			}
		}
		p, _ := r.Peek(r.Buffered())
		n, done := d.scan(p)
		r.Discard(n)
		read += int64(n)
		if done {
			d.flush()
			d.res.TooBig = opt.MaxSize > 0 && d.res.Size > opt.MaxSize
			return d.res, nil
		}
	}
}

// outBufs holds the output buffers of ReadData, so that a short message
// does not cost a fresh 32 KiB.
var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// dataState is the state of the DATA reader between two input bytes.
type dataState uint8

const (
	// atBOL: at the beginning of a line that follows a CR LF, or of the
	// first line. A "." here is unstuffed and may start the end of data.
	atBOL dataState = iota
	// atBOLBare: at the beginning of a line that follows a bare CR or LF.
	// A "." here is unstuffed but can never start the end of data.
	atBOLBare
	// inText: inside a line.
	inText
	// sawCR: after a CR; an LF next makes it a line ending CR LF,
	// anything else makes it a bare CR.
	sawCR
	// sawDot: after a "." at atBOL. CR LF next is the end of data;
	// anything else makes the dot a stuffing dot, dropped.
	sawDot
	// sawDotBare: after a "." at atBOLBare: dropped before text; kept as
	// the line "." before a line ending.
	sawDotBare
	// sawDotCR: after "." CR at atBOL. LF next ends the data.
	sawDotCR
)

// dataReader is the state machine of ReadData: one transition per input
// byte, except inside a line, where it jumps to the next CR or LF.
type dataReader struct {
	w       io.Writer
	out     []byte // output not yet written to w; fixed capacity
	opt     DataOptions
	state   dataState
	res     DataResult
	discard bool // write no more: bare line ending rejected, size or write error
	header  bool // still in the header section
	name    [16]byte
	nameLen int // bytes of the current line in name; 0 for an empty line
}

var crlf = []byte("\r\n")

// scan runs the machine over p. It returns how many bytes it consumed and
// whether they included the end of data; it consumes all of p otherwise.
func (d *dataReader) scan(p []byte) (int, bool) {
	i := 0
	for i < len(p) {
		c := p[i]
		switch d.state {
		case inText:
			rest := p[i:]
			k := indexCRorLF(rest)
			switch {
			case k < 0: // the line goes on past p
				d.content(rest)
				return len(p), false
			case rest[k] == '\n':
				d.content(rest[:k])
				d.bare()
				d.state = atBOLBare
			case k+1 < len(rest) && rest[k+1] == '\n': // the usual CR LF
				d.content(rest[:k])
				d.endLine()
				d.state = atBOL
				k++
			default: // a CR, its partner unknown yet
				d.content(rest[:k])
				d.state = sawCR
			}
			i += k + 1
			continue
		case atBOL, atBOLBare:
			switch c {
			case '.':
				if d.state == atBOL {
					d.state = sawDot
				} else {
					d.state = sawDotBare
				}
			case '\r':
				d.state = sawCR
			case '\n':
				d.bare()
				d.state = atBOLBare
			default:
				d.state = inText
				continue // the text scan takes c
			}
		case sawCR:
			if c != '\n' {
				d.bare()
				d.state = atBOLBare
				continue // c starts the next line
			}
			d.endLine()
			d.state = atBOL
		case sawDot:
			switch c {
			case '\r':
				d.state = sawDotCR
			case '\n':
				d.content(dot)
				d.bare()
				d.state = atBOLBare
			default: // a stuffing dot
				d.state = inText
				continue
			}
		case sawDotBare:
			switch c {
			case '\r':
				d.content(dot)
				d.state = sawCR
			case '\n':
				d.content(dot)
				d.bare()
				d.state = atBOLBare
			default:
				d.state = inText
				continue
			}
		case sawDotCR:
			if c == '\n' { // CR LF "." CR LF: the end
				return i + 1, true
			}
			d.content(dot) // the line "." ended by a bare CR
			d.bare()
			d.state = atBOLBare
			continue
		}
		i++
	}
	return len(p), false
}

var dot = []byte(".")

// indexCRorLF returns the index of the first CR or LF in p, or -1.
func indexCRorLF(p []byte) int {
	lf := bytes.IndexByte(p, '\n')
	if lf < 0 {
		return bytes.IndexByte(p, '\r')
	}
	if cr := bytes.IndexByte(p[:lf], '\r'); cr >= 0 {
		return cr
	}
	return lf
}

// bare records a bare CR or LF, which ends the current line: rejected, it
// stops the output; normalized, it is written as CR LF.
func (d *dataReader) bare() {
	d.res.Bare = true
	if d.opt.BareLineEndings == RejectBare {
		d.discard = true
	}
	d.endLine()
}

// content takes bytes of the current line.
func (d *dataReader) content(p []byte) {
	if d.header && d.nameLen < len(d.name) && len(p) > 0 {
		d.nameLen += copy(d.name[d.nameLen:], p)
	}
	d.emit(p)
}

// endLine ends the current line with CR LF and, in the header section,
// counts Received: fields; an empty line ends the header section (RFC
// 5322 section 2.1).
func (d *dataReader) endLine() {
	if d.header {
		if d.nameLen == 0 {
			d.header = false
		} else if isReceived(d.name[:d.nameLen]) {
			d.res.Received++
		}
		d.nameLen = 0
	}
	d.emit(crlf)
}

// isReceived reports whether line starts a Received: header field; the
// name is case-insensitive, and obsolete syntax allows white space before
// the colon (RFC 5322 sections 1.2.2 and 4.5).
func isReceived(line []byte) bool {
	const name = "received"
	if len(line) <= len(name) || !ascii.EqualFold(line[:len(name)], name) {
		return false
	}
	rest := bytes.TrimLeft(line[len(name):], " \t")
	return len(rest) > 0 && rest[0] == ':'
}

// emit counts p and buffers it for w unless writing has stopped.
func (d *dataReader) emit(p []byte) {
	d.res.Size += int64(len(p))
	if d.discard {
		return
	}
	if d.opt.MaxSize > 0 && d.res.Size > d.opt.MaxSize {
		d.discard = true
		return
	}
	if len(d.out)+len(p) > cap(d.out) {
		d.flush()
		if len(p) > cap(d.out) {
			d.write(p)
			return
		}
	}
	d.out = append(d.out, p...)
}

// flush writes the buffered output.
func (d *dataReader) flush() {
	if len(d.out) > 0 {
		d.write(d.out)
		d.out = d.out[:0]
	}
}

func (d *dataReader) write(p []byte) {
	if d.res.WriteErr != nil {
		return
	}
	if _, err := d.w.Write(p); err != nil {
		d.res.WriteErr = err
		d.discard = true
	}
}
