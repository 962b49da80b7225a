package msgcheck

import (
	"strings"
	"time"
)

// Missing returns the Date: and Message-ID: fields that a header section
// with summary s lacks, each ended by CRLF, for a submission agent to add
// at the end of the section (RFC 6409 sections 8.2 and 8.3); nil when it
// has both. Date: is now (RFC 5322 section 3.3). Message-ID: is
// <unique@host> (RFC 5322 section 3.6.4): unique must not repeat for
// host, and both must be dot-atom-text, or they are replaced by
// "invalid" and "localhost" so that the field is well-formed all the
// same.
func Missing(s Summary, now time.Time, unique, host string) []byte {
	var b []byte
	if !s.Date {
		b = append(b, "Date: "...)
		b = now.AppendFormat(b, time.RFC1123Z)
		b = append(b, "\r\n"...)
	}
	if !s.MessageID {
		if !dotAtomText(unique) {
			unique = "invalid"
		}
		if !dotAtomText(host) {
			host = "localhost"
		}
		b = append(b, "Message-ID: <"...)
		b = append(b, unique...)
		b = append(b, '@')
		b = append(b, host...)
		b = append(b, ">\r\n"...)
	}
	return b
}

// dotAtomText reports whether s is dot-atom-text (RFC 5322 section
// 3.2.3): atoms of atext joined by single dots.
func dotAtomText(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if s[i-1] == '.' {
				return false
			}
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
