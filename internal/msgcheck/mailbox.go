package msgcheck

// mailboxes counts the mailboxes in the value of an address field such as
// From: (RFC 5322 section 3.4): the members of the list, which commas
// separate outside quoted strings, comments, domain literals and angle
// brackets. A group ("name: a, b;", RFC 5322 section 3.4 and RFC 6854)
// counts its members, and an empty member (obs-mbox-list, section 4.4)
// counts for nothing. It reports false when the value is malformed past
// counting: an unclosed quoted string, comment, literal or angle bracket,
// a member without "@", or an empty angle-addr.
//
// It is a count, not a parser: it does not check each member's syntax.
// That is all strict mode needs to apply section 3.6.2 (Sender: when
// From: has several mailboxes), without importing net/mail.
func mailboxes(v string) (int, bool) {
	count := 0
	member, at := false, false // the member so far has text, an "@"
	end := func() bool {
		if member {
			if !at {
				return false
			}
			count++
		}
		member, at = false, false
		return true
	}
	for i := 0; i < len(v); i++ {
		var ok bool
		switch c := v[i]; c {
		case '"':
			i, ok = skipQuoted(v, i, '"')
			member = true
		case '(':
			i, ok = skipComment(v, i)
		case '[':
			i, ok = skipQuoted(v, i, ']')
			member = true
		case '<':
			j := i
			i, ok = skipAngle(v, i)
			if ok && !hasAt(v[j:i]) {
				return 0, false
			}
			member, at = true, true
		case '@':
			member, at, ok = true, true, true
		case ',', ';':
			ok = end()
		case ':':
			// The display name of a group: not a member.
			member, at, ok = false, false, true
		case ' ', '\t', '\r', '\n':
			ok = true
		default:
			member, ok = true, true
		}
		if !ok {
			return 0, false
		}
	}
	if !end() {
		return 0, false
	}
	return count, true
}

// skipQuoted returns the index of the byte that closes the quoted string
// or domain literal opened at v[i], honouring quoted-pairs (RFC 5322
// section 3.2.1).
func skipQuoted(v string, i int, closer byte) (int, bool) {
	for i++; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case closer:
			return i, true
		}
	}
	return i, false
}

// skipComment returns the index of the ")" that closes the comment opened
// at v[i]; comments nest (RFC 5322 section 3.2.2).
func skipComment(v string, i int) (int, bool) {
	depth := 0
	for ; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i, true
			}
		}
	}
	return i, false
}

// skipAngle returns the index of the ">" that closes the angle-addr
// opened at v[i], skipping quoted strings and literals inside it.
func skipAngle(v string, i int) (int, bool) {
	for i++; i < len(v); i++ {
		var ok bool
		switch v[i] {
		case '"':
			i, ok = skipQuoted(v, i, '"')
		case '[':
			i, ok = skipQuoted(v, i, ']')
		case '(':
			i, ok = skipComment(v, i)
		case '>':
			return i, true
		default:
			ok = true
		}
		if !ok {
			return i, false
		}
	}
	return i, false
}

// hasAt reports whether an angle-addr has an "@" outside quoted strings
// and comments, so that <"a@b"> does not count.
func hasAt(addr string) bool {
	for i := 0; i < len(addr); i++ {
		switch addr[i] {
		case '"':
			i, _ = skipQuoted(addr, i, '"')
		case '(':
			i, _ = skipComment(addr, i)
		case '@':
			return true
		}
	}
	return false
}
