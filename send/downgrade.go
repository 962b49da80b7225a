package send

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// smtpMsg is a message in the hands of an SMTP session (to the smarthost
// or an MX host), with what the
// session learns of it, once per Deliver: whether it has 8-bit bytes and
// long lines, its size as sent, and its 7-bit version.
type smtpMsg struct {
	*Delivery
	rec Recorder

	// What scan found: 8-bit bytes, lines longer than maxLine, the size
	// as sent (those lines broken).
	scanned, eight, long bool
	size                 int64

	hdr8     int8     // 0 unknown, 1 the header section has 8-bit bytes, -1 it has none
	down     *os.File // 7-bit version of the message, made on demand
	downN    int64
	downFail *Failure // the message cannot be converted to 7 bits
}

func (m *smtpMsg) close() {
	if m.down != nil {
		m.down.Close()
	}
}

// body returns the source of the message data for the connection c and
// its size as sent: the spooled bytes, or, when the smarthost lacks
// 8BITMIME (RFC 6152) and the message has 8-bit bytes, a 7-bit MIME version
// made once per message, as Postfix does, rather than raw 8-bit bytes the
// server did not agree to. Either way no line is longer than maxLine
// octets once it went through a lineWriter, which the spooled bytes need
// only when m.long.
// A message that cannot be converted fails with 5.6.3 (RFC 3463:
// conversion required but not supported); an error reading the spool or
// writing the 7-bit version is returned as error.
func (m *smtpMsg) body(t *smarthost, c *conn) (func() io.Reader, int64, *Failure, error) {
	if err := m.scan(); err != nil {
		return nil, 0, nil, err
	}
	if c.eight || !m.eight {
		return m.Content, m.size, nil, nil
	}
	if m.downFail != nil {
		return nil, 0, m.downFail, nil
	}
	if m.down == nil {
		f, err := os.CreateTemp(t.tmp, "send-7bit-")
		if err != nil {
			return nil, 0, nil, err
		}
		os.Remove(f.Name()) // anonymous: nothing to clean up after a crash
		bw := bufio.NewWriter(f)
		lw := newLineWriter(bw)
		err = sevenBit(lw, m.Content)
		if err == nil {
			err = lw.Flush()
		}
		if err == nil {
			err = bw.Flush()
		}
		var fi os.FileInfo
		if err == nil {
			fi, err = f.Stat()
		}
		if err != nil {
			f.Close()
			var u *unconvertibleError
			if errors.As(err, &u) {
				m.downFail = localFailure(c.relay, "5.6.3",
					"the "+t.what+" lacks 8BITMIME and the message cannot be converted to 7 bits: "+u.why)
				return nil, 0, m.downFail, nil
			}
			return nil, 0, nil, err
		}
		m.down, m.downN = f, fi.Size()
		t.log.Info(t.what+" lacks 8BITMIME; sending a 7-bit MIME version", "id", m.Envelope.QueueID, "relay", c.relay)
	}
	return func() io.Reader { return io.NewSectionReader(m.down, 0, m.downN) }, m.downN, nil, nil
}

// scan reads the message once, for what every transaction needs: whether
// it has 8-bit bytes, whether it has lines longer than maxLine, and its
// size as sent (RFC 1870 SIZE), those lines broken.
func (m *smtpMsg) scan() error {
	if m.scanned {
		return nil
	}
	r := m.Content()
	buf := make([]byte, 64<<10)
	line := 0 // octets since the last LF
	for {
		n, err := r.Read(buf)
		b := buf[:n]
		m.eight = m.eight || has8bit(b)
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				line += len(b)
				break
			}
			// Counting a CR before the LF errs on the safe side.
			m.long = m.long || line+i > maxLine
			line, b = 0, b[i+1:]
		}
		m.long = m.long || line > maxLine
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	m.size = m.Size
	if m.long {
		var c countWriter
		lw := newLineWriter(&c)
		if _, err := io.Copy(lw, m.Content()); err != nil {
			return err
		}
		lw.Flush()
		m.size = c.n
	}
	m.scanned = true
	return nil
}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

// Write implements io.Writer.
func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// headers8bit reports whether the message's header section has 8-bit
// bytes (RFC 6532 UTF-8 headers).
func (m *smtpMsg) headers8bit() bool {
	if m.hdr8 == 0 {
		m.hdr8 = -1
		lr := newLineReader(m.Content())
		for lr.scan() && !lr.blank() {
			if lr.eight {
				m.hdr8 = 1
				break
			}
		}
	}
	return m.hdr8 > 0
}

// has8bit reports whether b has a byte >= 0x80, eight bytes at a time.
func has8bit(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// unconvertibleError says why a message cannot be converted to 7 bits.
type unconvertibleError struct{ why string }

// Error implements error.
func (e *unconvertibleError) Error() string { return "cannot convert to 7 bits: " + e.why }

// sevenBit writes the message that open opens (twice: it reads it to
// know its MIME structure, then to convert it) to w in 7 bits, as far as
// the body goes (RFC 6152 section 3; RFC 2045; RFC 2046 section 5):
//
//   - an entity (the message, a body part, an encapsulated message) whose
//     body has no 8-bit byte is copied unchanged, without being parsed
//     further, however malformed it is;
//   - an 8-bit leaf body is re-encoded quoted-printable (base64 for
//     "binary"; raw 8-bit bytes inside quoted-printable become =XX, inside
//     base64 they are dropped, as decoders skip them), and its
//     Content-Transfer-Encoding field replaced by one at the end of its
//     header;
//   - multipart/* (with a boundary) and message/rfc822 or message/global
//     are entered, and labelled 7bit if they said 8bit or binary: RFC 2045
//     section 6.4 forbids any other encoding on a composite entity, and a
//     strict next hop (Postfix's strict_mime_encoding_domain) refuses it;
//   - a multipart preamble or epilogue with 8-bit bytes is dropped (RFC
//     2046 section 5.1.1: to be ignored);
//   - header fields are left as they are.
//
// A message that needs a conversion that cannot be done correctly — an
// 8-bit body inside a composite entity that cannot be entered (a multipart
// without a usable boundary, another message/* type, nesting deeper than
// maxMIMEDepth), an unknown transfer encoding, or a quoted-printable or
// base64 label on an 8-bit composite — fails with an *unconvertibleError
// before anything is written. Memory stays bounded: one line of the input
// at a time and a few hundred bytes per MIME entity, at most maxMIMEParts.
func sevenBit(w io.Writer, open func() io.Reader) error {
	s := &mimeScanner{lr: newLineReader(open())}
	s.advance()
	root := s.entity(0, "text/plain", nil)
	if s.lr.err != nil {
		return s.lr.err
	}
	if s.fail != "" {
		return &unconvertibleError{s.fail}
	}
	c := &mimeCopier{br: bufio.NewReaderSize(open(), 32<<10), w: w}
	return c.part(root, true)
}

// maxMIMEDepth bounds the MIME nesting the downgrade enters, as Postfix's
// mime_nesting_limit (100).
const maxMIMEDepth = 100

// maxMIMEParts bounds the MIME entities the downgrade keeps track of;
// past it, entities are not entered.
const maxMIMEParts = 10000

// maxBoundary is the longest boundary parameter accepted: RFC 2046 section
// 5.1.1 allows 70 characters; longer ones are seen in the wild.
const maxBoundary = 200

type partKind int8

const (
	leafPart   partKind = iota // a discrete body (RFC 2046 sections 4)
	multiPart                  // multipart/* with a boundary (section 5.1)
	nestedPart                 // message/rfc822 or message/global: one encapsulated message
	opaquePart                 // a composite entity that is not entered
)

// span is a range of input offsets, end excluded.
type span struct{ start, end int64 }

// part is one MIME entity as the first pass saw it, by input offsets.
type part struct {
	kind  partKind
	mt    string // media type
	cte   string // Content-Transfer-Encoding, lower case, "" if none
	cteAt []span // the Content-Transfer-Encoding fields, continuation lines included
	mimeV bool   // has a MIME-Version field
	why   string // opaquePart: why it is not entered

	start      int64
	hdrEnd     int64 // end of the header fields
	bodyStart  int64 // after the blank line (== hdrEnd if there is none)
	contentEnd int64 // end of the body without the line end that belongs to the delimiter after it
	end        int64
	delimAfter bool // a boundary delimiter line follows, else the input ends

	eight bool // the body (children included) has 8-bit bytes
	conv  bool // something in it needs converting

	// multiPart
	pre, epi   span
	pre8, epi8 bool
	closed     bool
	delims     []span // delimiter lines, the close delimiter last if closed
	children   []*part
	// nestedPart
	inner *part
}

// mimeScanner is the first pass: it reads the input line by line and
// finds the MIME entities, their extents, and which need converting.
type mimeScanner struct {
	lr      *lineReader
	more    bool // lr holds a line not yet consumed
	lastEOL int  // line end length of the last consumed line
	parts   int
	fail    string // the first reason the message cannot be converted
}

func (s *mimeScanner) advance() {
	s.lastEOL = s.lr.eol
	s.more = s.lr.scan()
}

// off is the offset of the current (unconsumed) line, or of the end.
func (s *mimeScanner) off() int64 { return s.lr.off }

// delimiter returns the level in stack of the boundary whose delimiter
// line the current line is (RFC 2046 section 5.1.1: "--", the boundary,
// "--" if it closes, then blanks), -1 if none. The outermost boundary
// wins, as when each level is read within the part of the level above.
func (s *mimeScanner) delimiter(stack []string) (level int, closing bool) {
	h := s.lr.head
	if !s.more || s.lr.long || len(h) < 3 || h[0] != '-' || h[1] != '-' {
		return -1, false
	}
	for i, b := range stack {
		if len(h)-2 < len(b) || string(h[2:2+len(b)]) != b {
			continue
		}
		rest := h[2+len(b):]
		closing := len(rest) >= 2 && rest[0] == '-' && rest[1] == '-'
		if closing {
			rest = rest[2:]
		}
		if strings.Trim(string(rest), " \t") == "" {
			return i, closing
		}
	}
	return -1, false
}

// entity reads one entity from the current line up to a delimiter line
// of any boundary in stack or the end of the input.
func (s *mimeScanner) entity(depth int, defType string, stack []string) *part {
	p := &part{start: s.off()}
	s.parts++
	const (
		otherField = iota
		ctField    // the first Content-Type
		cteField   // the first Content-Transfer-Encoding
		cteMore    // a later one, only removed
	)
	var ct, cte []byte
	field, fields, tooLong, sep := otherField, 0, false, false
	for s.more {
		if lvl, _ := s.delimiter(stack); lvl >= 0 {
			break
		}
		l := s.lr
		if l.blank() {
			p.hdrEnd = l.off
			s.advance()
			sep = true
			break
		}
		h := l.head
		if h[0] == ' ' || h[0] == '\t' {
			if fields == 0 {
				break // not a header: the body starts here
			}
			switch field {
			case ctField:
				ct = append(ct, h...)
			case cteField:
				cte = append(cte, h...)
			}
			if field == cteField || field == cteMore {
				p.cteAt[len(p.cteAt)-1].end = l.end
			}
			tooLong = tooLong || (field == ctField || field == cteField) && (l.long || len(ct)+len(cte) > headMax)
			s.advance()
			continue
		}
		name := fieldName(h)
		if name == "" {
			break // not a header field: the body starts here (RFC 5322 section 2.1 needs a blank line; Postfix does the same)
		}
		fields++
		field = otherField
		value := h[strings.IndexByte(string(h), ':')+1:]
		switch {
		case ascii.EqualFold(name, "Content-Type") && ct == nil:
			field, ct = ctField, append([]byte{}, value...)
		case ascii.EqualFold(name, "Content-Transfer-Encoding"):
			p.cteAt = append(p.cteAt, span{l.off, l.end})
			field = cteMore
			if cte == nil {
				field, cte = cteField, append([]byte{}, value...)
			}
		case ascii.EqualFold(name, "MIME-Version"):
			p.mimeV = true
		}
		tooLong = tooLong || (field == ctField || field == cteField) && l.long
		s.advance()
	}
	if !sep {
		p.hdrEnd = s.off()
	}
	p.bodyStart = s.off()
	p.mt = mediaType(string(ct), defType)
	p.cte = ascii.Lower(strings.TrimSpace(string(cte)))
	composite := strings.HasPrefix(p.mt, "multipart/") || strings.HasPrefix(p.mt, "message/")
	boundary := ""
	if strings.HasPrefix(p.mt, "multipart/") {
		if _, params, err := mime.ParseMediaType(string(ct)); err == nil {
			boundary = params["boundary"]
		}
	}
	switch {
	case s.parts > maxMIMEParts:
		p.kind, p.why = opaquePart, fmt.Sprintf("more than %d MIME parts", maxMIMEParts)
	case tooLong:
		p.kind, p.why = opaquePart, "a Content-Type or Content-Transfer-Encoding field too long to read"
	case !composite:
		p.kind = leafPart
	case depth >= maxMIMEDepth:
		p.kind, p.why = opaquePart, fmt.Sprintf("MIME nesting deeper than %d levels", maxMIMEDepth)
	case strings.HasPrefix(p.mt, "multipart/") && (boundary == "" || len(boundary) > maxBoundary):
		p.kind, p.why = opaquePart, fmt.Sprintf("a %s part without a usable boundary", p.mt)
	case strings.HasPrefix(p.mt, "multipart/"):
		p.kind = multiPart
	case p.mt == "message/rfc822" || p.mt == "message/global":
		p.kind = nestedPart
	default:
		p.kind, p.why = opaquePart, fmt.Sprintf("a %s part, which cannot be re-encoded (RFC 2045 section 6.4)", p.mt)
	}
	switch p.kind {
	case multiPart:
		s.multipart(p, depth, boundary, stack)
	case nestedPart:
		p.inner = s.entity(depth+1, "text/plain", stack)
		p.eight, p.conv = p.inner.eight, p.inner.conv
	default:
		lines := 0
		for s.more {
			if lvl, _ := s.delimiter(stack); lvl >= 0 {
				break
			}
			p.eight = p.eight || s.lr.eight
			lines++
			s.advance()
		}
		p.contentEnd = s.off()
		if s.more && lines > 0 {
			p.contentEnd -= int64(s.lastEOL)
		}
		p.conv = p.eight
	}
	p.end = s.off()
	p.delimAfter = s.more
	if p.conv && s.fail == "" {
		s.fail = p.unconvertible()
	}
	return p
}

// unconvertible returns why the entity, which needs converting, cannot
// be converted, or "".
func (p *part) unconvertible() string {
	switch p.kind {
	case opaquePart:
		return p.why
	case leafPart:
		switch p.cte {
		case "", "7bit", "8bit", "binary", "quoted-printable", "base64":
			return ""
		}
		return fmt.Sprintf("unknown Content-Transfer-Encoding %q", p.cte)
	case multiPart:
		if len(p.children) == 0 {
			return fmt.Sprintf("a %s part with 8-bit bytes and no body part", p.mt)
		}
	}
	switch p.cte {
	case "", "7bit", "8bit", "binary":
		return ""
	}
	return fmt.Sprintf("Content-Transfer-Encoding %q on a %s part (RFC 2045 section 6.4)", p.cte, p.mt)
}

// multipart reads the body of multipart entity p: preamble, body parts,
// epilogue.
func (s *mimeScanner) multipart(p *part, depth int, boundary string, stack []string) {
	stack = append(stack[:len(stack):len(stack)], boundary)
	me := len(stack) - 1
	p.pre.start = s.off()
	for s.more {
		if lvl, _ := s.delimiter(stack); lvl >= 0 {
			break
		}
		p.pre8 = p.pre8 || s.lr.eight
		s.advance()
	}
	p.pre.end = s.off()
	child := "text/plain"
	if p.mt == "multipart/digest" {
		child = "message/rfc822" // RFC 2046 section 5.1.5
	}
	for s.more {
		lvl, closing := s.delimiter(stack)
		if lvl != me {
			break // an enclosing boundary: this multipart was never closed
		}
		p.delims = append(p.delims, span{s.lr.off, s.lr.end})
		s.advance()
		if closing {
			p.closed = true
			break
		}
		c := s.entity(depth+1, child, stack)
		p.children = append(p.children, c)
		p.eight = p.eight || c.eight
		p.conv = p.conv || c.conv
	}
	p.epi.start = s.off()
	if p.closed {
		for s.more {
			if lvl, _ := s.delimiter(stack[:me]); lvl >= 0 {
				break
			}
			p.epi8 = p.epi8 || s.lr.eight
			s.advance()
		}
	}
	p.epi.end = s.off()
	p.eight = p.eight || p.pre8 || p.epi8
	p.conv = p.conv || p.pre8 || p.epi8
}

// mediaType returns the media type of a Content-Type value, lower case:
// def when there is none, or when it cannot be read (RFC 2045 section
// 5.2) — except that a value whose type reads multipart/* or message/*
// stays that type, as a strict next hop reads it so: such an entity is
// never given a transfer encoding.
func mediaType(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	if mt, _, err := mime.ParseMediaType(v); mt != "" && (err == nil || errors.Is(err, mime.ErrInvalidMediaParameter)) {
		return mt
	}
	t, _, _ := strings.Cut(v, ";")
	t = ascii.Lower(strings.TrimSpace(t))
	if strings.HasPrefix(t, "multipart/") || strings.HasPrefix(t, "message/") {
		return t
	}
	return def
}

// mimeCopier is the second pass: it reads the input again, in order, and
// writes the 7-bit version the parts found by the first pass call for.
type mimeCopier struct {
	br  *bufio.Reader
	pos int64
	w   io.Writer
}

// copyTo copies the input up to offset end.
func (c *mimeCopier) copyTo(end int64) error {
	return c.through(c.w, end)
}

// through writes the input up to offset end to w.
func (c *mimeCopier) through(w io.Writer, end int64) error {
	if n := end - c.pos; n > 0 {
		if _, err := io.CopyN(w, c.br, n); err != nil {
			return err
		}
		c.pos = end
	}
	return nil
}

// skipTo skips the input up to offset end.
func (c *mimeCopier) skipTo(end int64) error {
	if n := end - c.pos; n > 0 {
		if _, err := c.br.Discard(int(n)); err != nil {
			return err
		}
		c.pos = end
	}
	return nil
}

func (c *mimeCopier) write(s string) error {
	_, err := io.WriteString(c.w, s)
	return err
}

// part writes entity p; top is true for a message's own header (the
// whole message, or one encapsulated in message/rfc822), which gets a
// MIME-Version field when it lacks one and is rewritten.
func (c *mimeCopier) part(p *part, top bool) error {
	if !p.conv {
		return c.copyTo(p.end)
	}
	switch p.kind {
	case leafPart:
		return c.leaf(p, top)
	case nestedPart:
		if err := c.header(p, composite7bit(p.cte), top); err != nil {
			return err
		}
		return c.part(p.inner, true)
	case multiPart:
		if err := c.header(p, composite7bit(p.cte), top); err != nil {
			return err
		}
		if err := c.span(p.pre, p.pre8); err != nil {
			return err
		}
		for i, ch := range p.children {
			if err := c.copyTo(p.delims[i].end); err != nil {
				return err
			}
			if err := c.part(ch, false); err != nil {
				return err
			}
		}
		if p.closed {
			if err := c.copyTo(p.delims[len(p.delims)-1].end); err != nil {
				return err
			}
			if err := c.span(p.epi, p.epi8); err != nil {
				return err
			}
		}
		return c.copyTo(p.end)
	}
	return &unconvertibleError{p.why} // the first pass has refused it already
}

// span copies a preamble or an epilogue, or drops it if it has 8-bit
// bytes.
func (c *mimeCopier) span(s span, eight bool) error {
	if eight {
		return c.skipTo(s.end)
	}
	return c.copyTo(s.end)
}

// composite7bit is the new label of a composite entity that is converted:
// 7bit for 8bit or binary, else the same (none or 7bit).
func composite7bit(cte string) string {
	if cte == "8bit" || cte == "binary" {
		return "7bit"
	}
	return ""
}

// header writes p's header: its fields, without the
// Content-Transfer-Encoding fields if cte is not "", then a
// Content-Transfer-Encoding field with cte, MIME-Version if top and
// missing, and the blank line.
func (c *mimeCopier) header(p *part, cte string, top bool) error {
	if cte != "" {
		for _, f := range p.cteAt {
			if err := c.copyTo(f.start); err != nil {
				return err
			}
			if err := c.skipTo(f.end); err != nil {
				return err
			}
		}
	}
	if err := c.copyTo(p.hdrEnd); err != nil {
		return err
	}
	var add string
	if cte != "" {
		add += "Content-Transfer-Encoding: " + cte + "\r\n"
	}
	if top && !p.mimeV {
		add += "MIME-Version: 1.0\r\n"
	}
	if err := c.write(add + "\r\n"); err != nil {
		return err
	}
	return c.skipTo(p.bodyStart)
}

// leaf writes a leaf entity with an 8-bit body.
func (c *mimeCopier) leaf(p *part, top bool) error {
	switch p.cte {
	case "quoted-printable", "base64":
		if err := c.header(p, "", top); err != nil {
			return err
		}
		return c.through(&eightFilter{w: c.w, qp: p.cte == "quoted-printable"}, p.end)
	case "binary":
		if err := c.header(p, "base64", top); err != nil {
			return err
		}
		enc := base64.NewEncoder(base64.StdEncoding, &wrapWriter{w: c.w, width: 76})
		if err := c.through(enc, p.contentEnd); err != nil {
			return err
		}
		if err := enc.Close(); err != nil {
			return err
		}
		if err := c.write("\r\n"); err != nil {
			return err
		}
		return c.skipTo(p.end)
	}
	if err := c.header(p, "quoted-printable", top); err != nil {
		return err
	}
	q := &qpWriter{w: c.w}
	if err := c.through(q, p.contentEnd); err != nil {
		return err
	}
	if err := q.Close(); err != nil {
		return err
	}
	if p.delimAfter || !q.atLineStart() {
		// The line end before the delimiter, which belongs to it, or the
		// one the message must end with.
		if err := c.write("\r\n"); err != nil {
			return err
		}
	}
	return c.skipTo(p.end)
}

// eightFilter passes on 7-bit bytes; a byte >= 0x80 becomes =XX inside
// quoted-printable (it decodes to the same byte) and is dropped inside
// base64 (where decoders skip it).
type eightFilter struct {
	w   io.Writer
	qp  bool
	out []byte
}

// Write implements io.Writer.
func (f *eightFilter) Write(p []byte) (int, error) {
	out := f.out[:0]
	for _, c := range p {
		switch {
		case c < 0x80:
			out = append(out, c)
		case f.qp:
			out = append(out, '=', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	f.out = out
	if _, err := f.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
