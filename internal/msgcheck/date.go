package msgcheck

import (
	"time"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// parseDateTime parses v, the value of a Date: field as it stands in the
// header section (the CRLFs of folding included), as a date-time of RFC
// 5322 section 3.3, with the obsolete syntax of section 4.3 that real
// mail uses:
//
//	[ day-of-week "," ] day month year hour ":" minute [ ":" second ] zone
//
// such as "Sat, 21 Nov 2026 11:18:25 +0000" or "21 Nov 26 11:18 EST".
// Comments and folding white space may stand before, after and between
// the parts (CFWS, section 4.3), and names match in any case (RFC 5234
// section 2.3). The day-of-week, if present, must be the day of the date
// (section 3.3). The day has 1 or 2 digits and must exist in its month.
// The year has 4 digits and is 1900 or later, or it has 2 or 3 digits
// (obs-year, section 4.3: 00 to 49 are 2000 to 2049, the others count
// from 1900); a year of more than 4 digits, which the grammar allows, is
// refused. Hour, minute and second have 2 digits each, the second is
// optional, and the time runs from 00:00 to 23:59:60 (a leap second).
// The zone is "+hhmm" or "-hhmm" after white space, with at most 59
// minutes, or an obs-zone: UT, GMT, EST, EDT, CST, CDT, MST, MDT, PST,
// PDT, or a military letter, which counts as -0000 (section 4.3).
//
// It returns the instant, in UTC, and whether v is a date-time. It reads
// v once from left to right, so that its work is linear in len(v), and
// it never panics.
func parseDateTime(v []byte) (time.Time, bool) {
	p := dateParser{s: v}
	p.cfws()
	weekday := -1 // none
	if p.i < len(p.s) && isLetter(p.s[p.i]) {
		weekday = p.name(dayNames[:])
		p.cfws()
		p.expect(',')
		p.cfws()
	}
	day, _ := p.number(1, 2)
	p.cfws()
	month := time.Month(p.name(monthNames[:]) + 1)
	p.cfws()
	year, yearDigits := p.number(2, 4)
	p.cfws()
	hour, _ := p.number(2, 2)
	p.cfws()
	p.expect(':')
	p.cfws()
	minute, _ := p.number(2, 2)
	ws := p.cfws()
	second := 0
	if p.consume(':') {
		p.cfws()
		second, _ = p.number(2, 2)
		ws = p.cfws()
	}
	zone := p.zone(ws)
	p.cfws()
	if p.bad || p.i != len(p.s) {
		return time.Time{}, false
	}

	switch {
	case yearDigits == 2 && year < 50:
		year += 2000
	case yearDigits < 4:
		year += 1900
	}
	date := time.Date(year, month, day, 0, 0, 0, 0, time.UTC)
	switch {
	case year < 1900, date.Day() != day, // e.g. 31 Nov, which time.Date makes 1 Dec
		weekday >= 0 && date.Weekday() != time.Weekday(weekday),
		hour > 23, minute > 59, second > 60:
		return time.Time{}, false
	}
	return date.Add(time.Duration(hour*3600+minute*60+second-zone*60) * time.Second), true
}

// The names of section 3.3, in the order of time.Weekday and time.Month.
var (
	dayNames   = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	monthNames = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// obsZones are the named zones of obs-zone (RFC 5322 section 4.3).
var obsZones = [...]struct {
	name  string
	hours int
}{
	{"UT", 0}, {"GMT", 0}, {"EST", -5}, {"EDT", -4}, {"CST", -6},
	{"CDT", -5}, {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7},
}

// dateParser reads a date-time. Its methods set bad, for good, when what
// they read is not what they expect, and then leave the rest to fail.
type dateParser struct {
	s   []byte
	i   int  // next byte to read
	bad bool // v is not a date-time
}

// cfws skips comments and folding white space (CFWS, RFC 5322 section
// 3.2.2) and reports whether white space was the last thing it skipped.
func (p *dateParser) cfws() (ws bool) {
	for !p.bad && p.i < len(p.s) {
		switch {
		case p.fws():
			ws = true
		case p.s[p.i] == '(':
			p.comment()
			ws = false
		default:
			return ws
		}
	}
	return ws
}

// fws skips one space or tab, or a CRLF that folds the line before one,
// and reports whether it did.
func (p *dateParser) fws() bool {
	s, i := p.s, p.i
	switch {
	case i < len(s) && isWSP(s[i]):
		p.i++
	case i+2 < len(s) && s[i] == '\r' && s[i+1] == '\n' && isWSP(s[i+2]):
		p.i += 3
	default:
		return false
	}
	return true
}

// comment skips the comment that starts at p.i. Comments nest and hold
// quoted-pairs and folding white space (RFC 5322 section 3.2.2).
func (p *dateParser) comment() {
	depth := 0
	for p.i < len(p.s) {
		if p.fws() {
			continue
		}
		switch p.s[p.i] {
		case '\\':
			p.i++ // the quoted byte, skipped below
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				p.i++
				return
			}
		case '\r', '\n':
			// Not a fold: no CR or LF stands alone in a field.
			p.i = len(p.s)
		}
		p.i++
	}
	p.i, p.bad = len(p.s), true // unclosed
}

// number reads a run of decimal digits, which must have from min to max
// of them, and returns its value and its length.
func (p *dateParser) number(min, max int) (n, digits int) {
	start := p.i
	for ; p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9'; p.i++ {
		if p.i-start < max {
			n = n*10 + int(p.s[p.i]-'0')
		}
	}
	if digits = p.i - start; digits < min || digits > max {
		p.bad = true
	}
	return n, digits
}

// name reads a run of letters, which must be one of names in any case,
// and returns its index there.
func (p *dateParser) name(names []string) int {
	w := p.word()
	for i, name := range names {
		if ascii.EqualFold(w, name) {
			return i
		}
	}
	p.bad = true
	return 0
}

// zone reads the zone (RFC 5322 sections 3.3 and 4.3) and returns its
// offset east of UTC in minutes. ws tells whether white space comes
// before it, which "+hhmm" and "-hhmm" need (zone = FWS sign 4DIGIT).
func (p *dateParser) zone(ws bool) int {
	if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
		sign := 1
		if p.s[p.i] == '-' {
			sign = -1
		}
		p.i++
		hhmm, _ := p.number(4, 4)
		if !ws || hhmm%100 > 59 {
			p.bad = true
		}
		return sign * (hhmm/100*60 + hhmm%100)
	}
	w := p.word()
	if len(w) == 1 && w[0]|0x20 != 'j' {
		return 0 // a military zone, A to Z but J
	}
	for _, z := range obsZones {
		if ascii.EqualFold(w, z.name) {
			return z.hours * 60
		}
	}
	p.bad = true
	return 0
}

// word reads a run of ASCII letters, perhaps empty.
func (p *dateParser) word() []byte {
	start := p.i
	for p.i < len(p.s) && isLetter(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// consume reads c if it is next, and reports whether it was.
func (p *dateParser) consume(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// expect reads c, which must be next.
func (p *dateParser) expect(c byte) {
	if !p.consume(c) {
		p.bad = true
	}
}

func isLetter(c byte) bool {
	c |= 0x20 // lower case
	return 'a' <= c && c <= 'z'
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }
