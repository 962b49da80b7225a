// Package textsafe makes untrusted text safe to print on an
// administrator's terminal. Addresses (a quoted local part may hold any
// byte but CR, LF and NUL), reply texts from a smarthost and spool file
// names reach smtp-send's human-readable output; a C0 or C1 control
// (ESC, CSI U+009B) could drive the terminal, and a bidirectional
// override (U+202E) or an invisible format character could make one
// address look like another.
package textsafe

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Escape returns s with every byte or character that is not plainly
// visible written as a Go escape sequence, and nothing else changed:
//
//   - a backslash as \\, so that the result reads back unambiguously;
//   - tab, newline and carriage return as \t, \n and \r;
//   - other bytes below 0x20, DEL, and each byte of invalid UTF-8 as \xNN;
//   - any other character that strconv.IsPrint rejects as \uNNNN or
//     \UNNNNNNNN: C1 controls (U+0080 to U+009F), format characters
//     (category Cf: bidi embeddings, overrides and isolates U+202A to
//     U+202E and U+2066 to U+2069, marks U+200E and U+200F, zero-width
//     characters, U+FEFF, tags), line and paragraph separators U+2028
//     and U+2029, spaces other than U+0020, private-use and unassigned
//     code points.
//
// Letters, marks, digits, punctuation and symbols of every script stay as
// they are, so an internationalised address (RFC 6531) prints readably.
// The result is valid UTF-8, and strconv.Unquote of it in double quotes
// (each " written \") gives s back.
func Escape(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			writeHex(&b, 'x', rune(s[i]), 2)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			writeHex(&b, 'x', r, 2)
		case strconv.IsPrint(r):
			b.WriteString(s[i : i+n])
		case r <= 0xffff:
			writeHex(&b, 'u', r, 4)
		default:
			writeHex(&b, 'U', r, 8)
		}
		i += n
	}
	return b.String()
}

// EscapeJSON returns the JSON text b with DEL and every non-ASCII
// character that Escape would escape written as a \u escape (a surrogate pair above
// U+FFFF, RFC 8259 section 7), so that JSON printed on a terminal is as
// safe as Escape's text and decodes to the same values. b must be JSON
// as encoding/json writes it: valid UTF-8, with every control character
// below 0x20 already escaped; outside strings JSON has only ASCII, so
// only string contents change.
func EscapeJSON(b []byte) []byte {
	i := 0
	for i < len(b) && b[i] < 0x7f {
		i++
	}
	if i == len(b) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	out = append(out, b[:i]...)
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r < 0x7f || r > 0x7f && strconv.IsPrint(r) && !(r == utf8.RuneError && n == 1):
			out = append(out, b[i:i+n]...)
		case r == utf8.RuneError && n == 1:
			// Not JSON as encoding/json writes it; U+FFFD, as it
			// would have written.
			out = append(out, `\ufffd`...)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			out = appendU(appendU(out, r1), r2)
		default:
			out = appendU(out, r)
		}
		i += n
	}
	return out
}

func appendU(out []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(out, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
}

// writeHex writes \ kind and r as digits lower-case hex digits.
func writeHex(b *strings.Builder, kind byte, r rune, digits int) {
	const hex = "0123456789abcdef"
	b.WriteByte('\\')
	b.WriteByte(kind)
	for shift := 4 * (digits - 1); shift >= 0; shift -= 4 {
		b.WriteByte(hex[r>>shift&0xf])
	}
}
