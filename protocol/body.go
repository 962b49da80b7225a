package protocol

import (
	"bytes"
	"io"
	"sync"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// The one body path. A message reaches the session in one of two
// framings: DATA's dot-stuffed text ended by CRLF.CRLF (dotFramer,
// dataread.go) or BDAT's counted chunks (readChunk, bdat.go). Each framer
// only takes its framing off and writes the message as the client meant
// it, bare CR and LF included, to a bodyWriter; everything that judges or
// changes the content is here, once, for both: the bare CR/LF policy
// (RFC 5321 section 2.3.8), the count of Received: fields in the header
// section (the loop check of RFC 5321 section 6.3), the size limit (RFC
// 1870) and the buffered writes to what follows (the header check and the
// MessageWriter, session side: message.go).

// bodyState is where a bodyWriter stands between two bytes.
type bodyState uint8

const (
	// atLineStart: nothing of the current line yet (the start of the
	// message, or after a line ending).
	atLineStart bodyState = iota
	// inLine: inside a line.
	inLine
	// pendingCR: after a CR whose partner is not known yet; an LF next
	// makes the pair CR LF, anything else (or the end) a bare CR.
	pendingCR
)

// bodyWriter judges the content of one message, fed in any number of
// Writes of any size, and writes it on with CR LF line endings only:
// each bare CR or LF is recorded and, with NormalizeBare, written as CR
// LF; with RejectBare the output stops there. It keeps fixed memory (its
// output buffer) whatever the length of the lines or of the message.
// Write never fails: a failed write of the writer underneath is kept in
// DataResult.WriteErr and the rest is counted but dropped, so that the
// framer reads on to the end and the session stays in step.
type bodyWriter struct {
	w       io.Writer
	out     []byte // output not yet written to w; fixed capacity
	buf     *[]byte
	opt     DataOptions
	state   bodyState
	res     DataResult
	discard bool // write no more: bare line ending rejected, size or write error
	header  bool // still in the header section
	name    [16]byte
	nameLen int // bytes of the current line in name; 0 for an empty line
}

// outBufs holds the output buffers of bodyWriter, so that a short message
// does not cost a fresh 32 KiB.
var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// newBodyWriter returns a bodyWriter writing to w under opt's
// BareLineEndings and MaxSize (BeforeRead is the framer's). Release it
// with finish or stop.
func newBodyWriter(w io.Writer, opt DataOptions) *bodyWriter {
	buf := outBufs.Get().(*[]byte)
	return &bodyWriter{w: w, buf: buf, out: (*buf)[:0], opt: opt, header: true}
}

var crlf = []byte("\r\n")

// Write implements io.Writer over the content of the message. It always
// returns len(p), nil (see bodyWriter).
func (b *bodyWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if k := b.cleanPrefix(p); k > 0 {
			b.lines(p[:k])
			p = p[k:]
			continue
		}
		if b.state == pendingCR {
			if p[0] == '\n' { // CR LF
				b.endLine()
				p = p[1:]
			} else {
				b.bare() // p[0] starts the next line
			}
			continue
		}
		k := indexCRorLF(p)
		switch {
		case k < 0: // the line goes on past p
			b.content(p)
			return n, nil
		case p[k] == '\n':
			b.content(p[:k])
			b.bare()
			p = p[k+1:]
		case k+1 < len(p) && p[k+1] == '\n': // the usual CR LF
			b.content(p[:k])
			b.endLine()
			p = p[k+2:]
		default: // a CR, its partner unknown yet
			b.content(p[:k])
			b.state = pendingCR
			p = p[k+1:]
		}
	}
	return n, nil
}

// cleanPrefix returns the length of the longest prefix of p that lines
// may take whole (cleanLines), or 0 when b cannot take one now
// (takesLines) or p is too short to be worth the search.
func (b *bodyWriter) cleanPrefix(p []byte) int {
	if !b.takesLines() || len(p) < cleanRunMin {
		return 0
	}
	return cleanLines(p, false)
}

// cleanRunMin is the shortest input, in bytes, worth the search for whole
// clean lines: below it the line-by-line path costs no more.
const cleanRunMin = 256

// takesLines reports whether lines may be given a run now: past the
// header section, whose lines the line-by-line path must see (Received:
// fields, the section's end), and not after a pending CR.
func (b *bodyWriter) takesLines() bool { return !b.header && b.state != pendingCR }

// lines takes p, a run of whole lines that cleanLines vouched for (each
// ended by CR LF, no other CR or LF), the first of which may continue the
// current line, when takesLines: content and line endings only, emitted
// in one piece.
func (b *bodyWriter) lines(p []byte) {
	b.state = atLineStart
	b.emit(p)
}

// cleanLines returns the length of the longest prefix of p made of whole
// lines each ended by CR LF, with no bare CR or LF in it; with stopAtDot,
// the prefix also ends after the first line that is followed, in p, by a
// "." (which dot-stuffing must see). Each byte is looked at once for LF
// and once for CR, so a message of any content costs at most twice a
// plain search.
func cleanLines(p []byte, stopAtDot bool) int {
	end := 0
	for end < len(p) {
		lf := bytes.IndexByte(p[end:], '\n')
		if lf < 1 || p[end+lf-1] != '\r' || bytes.IndexByte(p[end:end+lf-1], '\r') >= 0 {
			break // no whole line left, or a bare CR or LF: the slow path judges it
		}
		end += lf + 1
		if stopAtDot && end < len(p) && p[end] == '.' {
			break
		}
	}
	return end
}

// finish ends the message: a CR left pending is bare, and a last line
// without a line ending gets CR LF (only BDAT can send one: DATA's end of
// data follows a CR LF), so that every message handed on is lines ended
// by CR LF. It flushes the output and returns the result; b is released.
func (b *bodyWriter) finish() DataResult {
	if b.state == pendingCR {
		b.bare()
	}
	if b.state == inLine {
		b.endLine()
	}
	return b.stop()
}

// stop flushes the output and returns the result so far, for a message
// whose input broke off; b is released.
func (b *bodyWriter) stop() DataResult {
	b.flush()
	b.res.TooBig = b.tooBig()
	if b.buf != nil {
		*b.buf = b.out[:0]
		outBufs.Put(b.buf)
		b.buf, b.out = nil, nil
	}
	return b.res
}

// tooBig reports whether the message so far is over MaxSize; it can only
// stay so.
func (b *bodyWriter) tooBig() bool { return b.opt.MaxSize > 0 && b.res.Size > b.opt.MaxSize }

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
func (b *bodyWriter) bare() {
	b.res.Bare = true
	if b.opt.BareLineEndings == RejectBare {
		b.discard = true
	}
	b.endLine()
}

// content takes bytes of the current line.
func (b *bodyWriter) content(p []byte) {
	if len(p) == 0 {
		return
	}
	b.state = inLine
	if b.header && b.nameLen < len(b.name) {
		b.nameLen += copy(b.name[b.nameLen:], p)
	}
	b.emit(p)
}

// endLine ends the current line with CR LF and, in the header section,
// counts Received: fields; an empty line ends the header section (RFC
// 5322 section 2.1).
func (b *bodyWriter) endLine() {
	if b.header {
		if b.nameLen == 0 {
			b.header = false
		} else if isReceived(b.name[:b.nameLen]) {
			b.res.Received++
		}
		b.nameLen = 0
	}
	b.state = atLineStart
	b.emit(crlf)
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
func (b *bodyWriter) emit(p []byte) {
	b.res.Size += int64(len(p))
	if b.discard {
		return
	}
	if b.tooBig() {
		b.discard = true
		return
	}
	if len(b.out)+len(p) > cap(b.out) {
		b.flush()
		if len(p) > cap(b.out) {
			b.write(p)
			return
		}
	}
	b.out = append(b.out, p...)
}

// flush writes the buffered output.
func (b *bodyWriter) flush() {
	if len(b.out) > 0 {
		b.write(b.out)
		b.out = b.out[:0]
	}
}

func (b *bodyWriter) write(p []byte) {
	if b.res.WriteErr != nil {
		return
	}
	if _, err := b.w.Write(p); err != nil {
		b.res.WriteErr = err
		b.discard = true
	}
}
