// Package ascii compares and folds protocol tokens without regard to the
// case of ASCII letters, as SMTP verbs, keywords and domains (RFC 5321
// section 2.4) and header field names (RFC 5322 section 1.2.2) are
// compared. Unlike strings.EqualFold and strings.ToLower it never folds
// non-ASCII runes (the Kelvin sign is not "k"), and EqualFold allocates
// nothing.
package ascii

// EqualFold reports whether s and t are equal when ASCII letters are
// folded to one case; every other byte must match exactly.
func EqualFold[S string | []byte](s S, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(t); i++ {
		if lower(s[i]) != lower(t[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Lower returns s with the ASCII letters A to Z in lower case and every
// other byte unchanged; it allocates only when s has an upper-case
// letter. strings.ToLower would also fold non-ASCII letters (U+0130 to
// "i", the Kelvin sign to "k").
func Lower(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		b[i] = lower(b[i])
	}
	return string(b)
}
