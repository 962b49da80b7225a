package protocol

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// maxHelo caps the EHLO/HELO argument kept for the Received: header: a
// domain is at most 255 octets (RFC 5321 section 4.5.3.1.2).
const maxHelo = 255

// sanitizeHelo keeps the bytes of the EHLO/HELO argument that are safe in
// the Received: header (RFC 5322 section 3.2.2: printable ASCII that can
// neither open nor close a comment or a quoted string) and caps the
// length. The argument is only information: it is not verified.
func sanitizeHelo(s string) string {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		s = s[:i] // the domain; some clients add more
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < maxHelo; i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && !strings.ContainsRune(`()\"'`, rune(c)) {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// clientLiteral names the client in the Received: header: an address
// literal (RFC 5321 section 4.1.3), IPv4-mapped IPv6 addresses shown as
// IPv4, or "" for a local session.
func clientLiteral(c Client) string {
	a := c.Addr.Addr().Unmap().WithZone("")
	switch {
	case c.Local:
		return ""
	case a.Is4():
		return "[" + a.String() + "]"
	case a.Is6():
		return "[IPv6:" + a.String() + "]"
	default:
		return "[unknown]"
	}
}

// traceProtocol is the WITH clause of the Received: header (RFC 5321
// section 4.4, RFC 3848, RFC 6531 section 3.7.3): ESMTPS and UTF8SMTPS
// over TLS, ESMTPA and ESMTPSA (UTF8SMTPA, UTF8SMTPSA) after AUTH.
func traceProtocol(env *Envelope) string {
	p := env.Protocol
	if p == "ESMTP" && env.SMTPUTF8 {
		p = "UTF8SMTP"
	}
	if p != "SMTP" && env.TLSVersion != "" {
		p += "S"
	}
	if p != "SMTP" && env.AuthUser != "" {
		p += "A"
	}
	return p
}

// writeReceived writes the Received: trace header (RFC 5321 section 4.4)
// that the session puts in front of every message:
//
//	Received: from <helo> ([192.0.2.1])
//		(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits))
//		by <host> (<software>) with ESMTPS id <queue id>;
//		Sat, 21 Nov 2026 11:18:25 +0000
//
// A local session has no address; "local" goes beside the software's
// name (Config.Software). The "using" line, as Postfix writes it, is
// there only for a session over TLS. There is no FOR clause: with several recipients
// it would reveal Bcc recipients to every other one.
func writeReceived(w io.Writer, env *Envelope, host, software, id string, now time.Time) error {
	var b strings.Builder
	b.WriteString("Received: from " + env.Helo)
	via := software
	if lit := clientLiteral(env.Client); lit != "" {
		b.WriteString(" (" + lit + ")")
	} else {
		via += ", local"
	}
	if env.TLSVersion != "" {
		b.WriteString("\r\n\t(using " + env.TLSVersion + " with cipher " + env.TLSCipher)
		if n := cipherBits(env.TLSCipher); n > 0 {
			b.WriteString(fmt.Sprintf(" (%d/%d bits)", n, n))
		}
		b.WriteString(")")
	}
	b.WriteString("\r\n\tby " + host + " (" + via + ") with " + traceProtocol(env) + " id " + id + ";\r\n\t")
	b.WriteString(now.Format(time.RFC1123Z) + "\r\n") // RFC 5322 section 3.3
	_, err := io.WriteString(w, b.String())
	return err
}

// commentText keeps the bytes of s that may stand in a header comment
// (RFC 5322 section 3.2.2: ctext, and the space between words): printable
// ASCII but "(", ")" and "\", which would end the comment, open another
// or quote. It is for Config.Software.
func commentText(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= ' ' && c <= '~' && c != '(' && c != ')' && c != '\\' {
			b = append(b, c)
		}
	}
	return strings.TrimSpace(string(b))
}
