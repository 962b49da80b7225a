package protocol

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// DSN (RFC 3461): the parameters a client gives so that it is told what
// becomes of its message. The session parses them on MAIL FROM (RET=,
// ENVID=) and RCPT TO (NOTIFY=, ORCPT=), refuses a malformed or repeated
// one with 501 5.5.4, and records them in the Envelope; what to do with
// them is the Delivery's business (smtp-stdio stores them in the spool,
// where smtp-send honours them).

// Notify is the NOTIFY= parameter of RCPT TO (RFC 3461 section 4.1): on
// which events the sender wants a delivery status notification. The zero
// value is "absent": the MTA's default then holds, a notice of failure
// and perhaps of delay (RFC 3461 section 4.1). NotifyNever never comes
// with another bit.
type Notify uint8

const (
	// NotifyNever asks for no notification at all.
	NotifyNever Notify = 1 << iota
	// NotifySuccess asks for a notice of successful delivery (or of a
	// relay to a server without DSN, RFC 3461 section 5.2.2).
	NotifySuccess
	// NotifyFailure asks for a notice of failure.
	NotifyFailure
	// NotifyDelay asks for a notice of delay.
	NotifyDelay
)

var notifyNames = [...]struct {
	n    Notify
	name string
}{{NotifyNever, "NEVER"}, {NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}}

// String returns n as a NOTIFY= value: "NEVER", or the events joined by
// commas in the order SUCCESS, FAILURE, DELAY; "" for the zero value.
func (n Notify) String() string {
	var names []string
	for _, nn := range notifyNames {
		if n&nn.n != 0 {
			names = append(names, nn.name)
		}
	}
	return strings.Join(names, ",")
}

// ParseNotify parses a NOTIFY= value (RFC 3461 section 4.1): "NEVER", or
// one or more of SUCCESS, FAILURE and DELAY separated by commas, in any
// order and any case, each at most once. It returns false for anything
// else, "" included.
func ParseNotify(s string) (Notify, bool) {
	var n Notify
	for _, word := range strings.Split(s, ",") {
		var bit Notify
		for _, nn := range notifyNames {
			if upperASCII(word) == nn.name {
				bit = nn.n
			}
		}
		if bit == 0 || n&bit != 0 {
			return 0, false
		}
		n |= bit
	}
	if n&NotifyNever != 0 && n != NotifyNever {
		return 0, false
	}
	return n, true
}

// RcptDSN holds the DSN parameters of one recipient (RFC 3461 sections
// 4.1 and 4.2); the zero value is a recipient that gave none.
type RcptDSN struct {
	// Notify is the NOTIFY= parameter; zero when absent.
	Notify Notify
	// ORcpt is the ORCPT= parameter, the recipient's original address:
	// its addr-type in lower case, ";", and the address decoded (from
	// xtext for "rfc822" and every type but "utf-8", from RFC 6533's
	// utf-8-addr-xtext or utf-8-address for "utf-8"), as
	// "rfc822;bob@example.org". The decoded address holds no control
	// character. "" when absent. To pass it on, encode the address again
	// for its type.
	ORcpt string
}

// Limits of the DSN parameters.
const (
	// maxEnvID is the longest ENVID, in characters (RFC 3461 section
	// 4.4: "100 characters maximum").
	maxEnvID = 100
	// maxORcpt is the longest ORCPT address, decoded, in octets (RFC
	// 3461 section 4.2 bounds the whole parameter at 500 characters).
	maxORcpt = 500
)

// parseRet parses RET= (RFC 3461 section 4.3): "FULL" or "HDRS", in any
// case; it returns it in upper case.
func parseRet(v string) (string, bool) {
	switch u := upperASCII(v); u {
	case "FULL", "HDRS":
		return u, true
	}
	return "", false
}

// parseEnvID decodes ENVID= (RFC 3461 section 4.4): xtext of printable
// ASCII, at most maxEnvID characters decoded.
func parseEnvID(v string) (string, bool) {
	id, ok := decodeXtext(v)
	if !ok || id == "" || len(id) > maxEnvID || !printableOrSpace(id) {
		return "", false
	}
	return id, true
}

// parseORcpt parses ORCPT= (RFC 3461 section 4.2): addr-type ";" xtext,
// addr-type an atom ("rfc822", or "utf-8" per RFC 6533 section 3, whose
// address may hold \x{HEX} escapes, and raw UTF-8 after SMTPUTF8). The
// address is decoded and must be non-empty, at most maxORcpt octets and
// free of control characters; its content is otherwise taken as given
// (OpenSMTPD refused "rfc822;root" from Postfix for less, #1084). It
// returns the RcptDSN.ORcpt form.
func parseORcpt(v string) (string, bool) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || !validKeyword(typ) {
		return "", false
	}
	typ = strings.ToLower(typ)
	if typ == "utf-8" {
		addr, ok = decodeUTF8AddrXtext(addr)
	} else {
		addr, ok = decodeXtext(addr)
		ok = ok && printableOrSpace(addr)
	}
	if !ok || addr == "" || len(addr) > maxORcpt {
		return "", false
	}
	return typ + ";" + addr, true
}

// decodeUTF8AddrXtext decodes the address of an ORCPT of addr-type
// "utf-8" (RFC 6533 section 3): UTF-8, where "\x{HEX}" (1 to 6 upper-case
// hex digits) stands for a code point, and "\", "+", "=" and controls
// appear only so. It refuses control characters, decoded or not.
func decodeUTF8AddrXtext(v string) (string, bool) {
	if !utf8.ValidString(v) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			rest, ok := strings.CutPrefix(v[i+1:], "x{")
			end := strings.IndexByte(rest, '}')
			if !ok || end < 1 || end > 6 || strings.Trim(rest[:end], "0123456789ABCDEF") != "" {
				return "", false
			}
			r, err := strconv.ParseUint(rest[:end], 16, 32)
			if err != nil || r < 0x20 || r == 0x7f || r > utf8.MaxRune || !utf8.ValidRune(rune(r)) {
				return "", false
			}
			b.WriteRune(rune(r))
			i += 2 + end + 1
		case c < '!' || c == '+' || c == '=' || c == 0x7f:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// printableOrSpace reports whether s is printable ASCII or space: what a
// decoded xtext value may hold here, so that no CR, LF or NUL reaches a
// spool file or a notice.
func printableOrSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
