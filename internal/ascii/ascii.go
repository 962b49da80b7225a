// Package ascii compares protocol tokens without regard to the case of
// ASCII letters, as SMTP verbs, keywords and domains (RFC 5321 section
// 2.4) and header field names (RFC 5322 section 1.2.2) are compared.
// Unlike strings.EqualFold it never folds non-ASCII runes (the Kelvin
// sign is not "k"), and it allocates nothing.
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
