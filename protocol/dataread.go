package protocol

import (
	"bufio"
	"io"
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
	// TooBig is true when Size is over MaxSize; the output stopped at
	// or before that point.
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
	body := newBodyWriter(w, opt)
	if err := readDotted(r, body, opt.BeforeRead); err != nil {
		return body.stop(), err
	}
	return body.finish(), nil
}

// awaitInput returns once r holds input: at once when bytes are
// buffered, else after beforeRead(read) (which sets the deadline of the
// next read, read being the bytes of text read so far) and a read. It
// returns io.ErrUnexpectedEOF when r ends, or the error of the read or
// of beforeRead. Both framings of message text, DATA's and BDAT's, wait
// for their input through it.
func awaitInput(r *bufio.Reader, read int64, beforeRead func(read int64) error) error {
	if r.Buffered() > 0 {
		return nil
	}
	if beforeRead != nil {
		if err := beforeRead(read); err != nil {
			return err
		}
	}
	if _, err := r.Peek(1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// readDotted is the DATA framing of the one body path (body.go): it reads
// from r up to and including the end-of-data line and writes the
// dot-unstuffed text to body, which judges it. beforeRead, when not nil,
// is DataOptions.BeforeRead. It returns the errors ReadData returns.
func readDotted(r *bufio.Reader, body *bodyWriter, beforeRead func(read int64) error) error {
	d := dotFramer{body: body}
	var read int64
	for {
		if err := awaitInput(r, read, beforeRead); err != nil {
			return err
		}
		p, _ := r.Peek(r.Buffered())
		n, done := d.scan(p)
		r.Discard(n)
		read += int64(n)
		if done {
			return nil
		}
	}
}

// dotState is the state of the DATA framer between two input bytes. It
// follows lines only as far as the end of data and dot-stuffing need:
// what a bare CR or LF means to the message is the bodyWriter's business.
type dotState uint8

const (
	// atBOL: at the beginning of a line that follows a CR LF, or of the
	// first line. A "." here is unstuffed and may start the end of data.
	atBOL dotState = iota
	// atBOLBare: at the beginning of a line that follows a bare CR or LF.
	// A "." here is unstuffed but can never start the end of data.
	atBOLBare
	// inText: inside a line.
	inText
	// sawCR: after a CR, passed on; an LF next makes it a line ending CR
	// LF, anything else makes it a bare CR.
	sawCR
	// sawDot: after a "." at atBOL, held back. CR LF next is the end of
	// data; a CR is held too; an LF makes the dot content; anything else
	// makes it a stuffing dot, dropped.
	sawDot
	// sawDotBare: after a "." at atBOLBare, held back: dropped before
	// text; content before a CR or LF.
	sawDotBare
	// sawDotCR: after "." CR at atBOL, both held back. LF next ends the
	// data; anything else makes them content (a bare CR).
	sawDotCR
)

// dotFramer is the DATA framing (RFC 5321 sections 4.1.1.4 and 4.5.2):
// it finds the end of data and undoes dot-stuffing, and writes the rest
// of its input to body as it came: one transition per input byte, except
// inside a line, where it jumps to the next CR or LF.
type dotFramer struct {
	body  *bodyWriter
	state dotState
}

var (
	dot   = []byte(".")
	dotCR = []byte(".\r")
)

// scan runs the machine over p. It returns how many bytes it consumed and
// whether they included the end of data; it consumes all of p otherwise.
func (d *dotFramer) scan(p []byte) (int, bool) {
	i := 0
	for i < len(p) {
		c := p[i]
		switch d.state {
		case inText:
			rest := p[i:]
			if len(rest) >= cleanRunMin && d.body.takesLines() {
				if k := cleanLines(rest, true); k > 0 {
					d.body.lines(rest[:k])
					d.state = atBOL
					i += k
					continue
				}
			}
			k := indexCRorLF(rest)
			switch {
			case k < 0: // the line goes on past p
				d.body.Write(rest)
				return len(p), false
			case rest[k] == '\n':
				d.state = atBOLBare
			case k+1 < len(rest) && rest[k+1] == '\n': // the usual CR LF
				d.state = atBOL
				k++
			default: // a CR, its partner unknown yet
				d.state = sawCR
			}
			d.body.Write(rest[:k+1])
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
			default:
				d.state = inText
				continue // the text scan takes c
			}
		case sawCR:
			if c != '\n' {
				d.state = atBOLBare
				continue // c starts the next line
			}
			d.body.Write(p[i : i+1])
			d.state = atBOL
		case sawDot, sawDotBare:
			switch {
			case c == '\r' && d.state == sawDot:
				d.state = sawDotCR
			case c == '\r' || c == '\n':
				d.body.Write(dot) // the line "." ended by a bare line ending
				d.state = inText
				continue
			default: // a stuffing dot
				d.state = inText
				continue
			}
		case sawDotCR:
			if c == '\n' { // CR LF "." CR LF: the end
				return i + 1, true
			}
			d.body.Write(dotCR) // the line "." ended by a bare CR
			d.state = atBOLBare
			continue
		}
		i++
	}
	return len(p), false
}
