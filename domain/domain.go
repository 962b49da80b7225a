// Package domain puts a mail domain into the one form in which the
// project compares domains: the form DNS, and so every other MTA, sees.
//
// An ASCII domain is folded to lower case in ASCII only (RFC 5321 section
// 2.4; RFC 4343): Unicode case rules must never apply to it. A domain
// with non-ASCII characters (a U-label, RFC 6531 section 3.3) becomes its
// IDNA A-label, through the lookup profile of UTS #46
// (golang.org/x/net/idna's idna.Lookup, nontransitional). Unicode case
// folding is not that mapping: Go's strings.ToLower turns U+0130 (İ) into
// "i", while IDNA maps it to "i" with a combining dot, a different label
// ("xn--i-9bb"). Comparing with the first would let "İnternal.example"
// pass for "internal.example" and be relayed to whoever owns the other.
//
// Every comparison of domains (the relay check, a recipient given twice,
// the postmaster's domain) goes through Canonical, so there is one rule.
package domain

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// ErrEmpty is returned by Canonical for an empty domain or the root ".".
var ErrEmpty = errors.New("domain: empty")

// Canonical returns d in its comparison form: lower-case ASCII, with
// non-ASCII labels as A-labels ("Bücher.EXAMPLE" gives
// "xn--bcher-kva.example"; "XN--BCHER-KVA.example" gives the same), and
// without one trailing root dot (so "example.org." and "example.org"
// compare equal; in a non-ASCII domain the ideographic and fullwidth
// full stops count as dots, as IDNA maps them to "."). Two domains are
// the same domain exactly when their Canonical forms are equal.
//
// An ASCII d is only case-folded, not validated: an address literal
// ("[192.0.2.1]") or a name with "_" keeps its bytes. A d with non-ASCII
// characters that UTS #46 refuses (a disallowed code point, a bad bidi or
// joiner context, an "xn--" label that is not valid Punycode, an empty
// label), or that are not valid UTF-8, returns an error, and so does an
// empty d: a domain with no canonical form equals nothing, and in
// particular is never local.
func Canonical(d string) (string, error) {
	if isASCII(d) {
		a := ascii.Lower(strings.TrimSuffix(d, "."))
		if a == "" {
			return "", ErrEmpty
		}
		return a, nil
	}
	// x/net/idna reads each byte of invalid UTF-8 as U+FFFD and then
	// converts without an error, so "\x85" and "\x86" would be the
	// same domain, "xn--zn7c". A U-label is UTF-8 (RFC 6531 section
	// 3.3); anything else has no A-label.
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("domain: %q is not valid UTF-8", d)
	}
	// The root dot comes off before the conversion, in any of the
	// four forms UTS #46 section 2.3 treats as a label separator, so
	// that afterwards every label must be non-empty.
	for _, dot := range labelSeparators {
		if t, ok := strings.CutSuffix(d, dot); ok {
			d = t
			break
		}
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain: %q has no IDNA A-label: %w", d, err)
	}
	if !isASCII(a) { // not expected of ToASCII; refuse rather than trust it
		return "", fmt.Errorf("domain: %q: IDNA gave non-ASCII %q", d, a)
	}
	// x/net/idna turns an "xn--" label into an empty one without an
	// error, so "internal.example\u3002xn--" would come out as the
	// local "internal.example.". UTS #46 (since Unicode 15.1, section 4
	// step 4) calls that label an error, and no domain has an empty
	// label: refuse one, as a failed conversion.
	if strings.Contains("."+a+".", "..") {
		return "", fmt.Errorf("domain: %q: empty label in IDNA A-label %q", d, a)
	}
	return ascii.Lower(a), nil
}

// labelSeparators are the full stops that UTS #46 section 2.3 maps to
// ".": full stop, ideographic full stop, fullwidth full stop, halfwidth
// ideographic full stop.
var labelSeparators = [...]string{".", "\u3002", "\uff0e", "\uff61"}

// Of returns the domain of the mailbox addr: the text after its last "@"
// (a quoted local part may hold "@", a domain never does; RFC 5321
// section 4.1.2). It reports false when addr has no "@", as the bare
// "postmaster" of RFC 5321 section 4.5.1.
func Of(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return "", false
	}
	return addr[i+1:], true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
