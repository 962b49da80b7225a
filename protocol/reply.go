package protocol

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Reply is one SMTP reply (RFC 5321 section 4.2) with its enhanced status
// code (RFC 3463, RFC 2034). It is also an error, so a Policy or Delivery
// can return the exact reply it wants the client to see.
type Reply struct {
	// Code is the three-digit reply code.
	Code int
	// Enhanced is the enhanced status code such as "5.7.1"; "" for the
	// 220 greeting, which carries none (RFC 2034 section 3).
	Enhanced string
	// Lines is the text, one element per reply line; at least one.
	Lines []string
}

// Error returns the reply as one line, e.g. "550 5.7.1 Relaying denied".
func (r *Reply) Error() string {
	s := strconv.Itoa(r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	return s + " " + strings.Join(r.Lines, " / ")
}

// Temporary reports whether the reply is a transient negative completion
// (4yz, RFC 5321 section 4.2.1).
func (r *Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// WriteReply writes r to w in wire form: every line but the last as
// "code-text", the last as "code text", each ended by CRLF, the enhanced
// code on every line (RFC 2034 section 3). It returns the write error.
func WriteReply(w io.Writer, r *Reply) error {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	var b strings.Builder
	for i, l := range lines {
		sep := '-'
		if i == len(lines)-1 {
			sep = ' '
		}
		writeCode(&b, r.Code)
		b.WriteRune(sep)
		if r.Enhanced != "" {
			b.WriteString(r.Enhanced)
			b.WriteByte(' ')
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCode writes code as fmt's %03d does, without fmt for the three
// digits of every real reply: every reply of every session goes through
// it.
func writeCode(b *strings.Builder, code int) {
	if code < 0 || code > 999 {
		fmt.Fprintf(b, "%03d", code) // never a valid reply; as it was
		return
	}
	b.WriteByte(byte('0' + code/100))
	b.WriteByte(byte('0' + code/10%10))
	b.WriteByte(byte('0' + code%10))
}
