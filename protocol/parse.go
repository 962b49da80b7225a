package protocol

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/domain"
)

// Command is one parsed command line (RFC 5321 section 4.1.1).
type Command struct {
	// Verb is the verb in upper case. It is set whenever the verb is
	// known, even when the arguments are bad, so that the session can
	// check the order of commands first.
	Verb Verb
	// Arg is the text after the verb, without surrounding spaces: the
	// domain of EHLO/HELO, the string of VRFY, the raw argument of MAIL
	// and RCPT.
	Arg string
	// Path is the address of MAIL FROM or RCPT TO without angle brackets
	// or source route: "" for the null reverse-path <>, "postmaster" for
	// RCPT TO:<postmaster> in any case (RFC 5321 section 4.5.1).
	Path string
	// Params is true when MAIL FROM carried any ESMTP parameter (RFC 5321
	// section 4.1.2, Mail-parameters); the session refuses them after HELO.
	Params bool
	// Size is the SIZE= parameter of MAIL FROM in bytes (RFC 1870), 0
	// when absent; an estimate beyond int64 is math.MaxInt64.
	Size int64
	// Body is the BODY= parameter of MAIL FROM in upper case: "", "7BIT"
	// or "8BITMIME" (RFC 6152).
	Body string
	// SMTPUTF8 is true when MAIL FROM carried SMTPUTF8 (RFC 6531 section
	// 3.4).
	SMTPUTF8 bool
	// Auth is the AUTH= parameter of MAIL FROM (RFC 4954 section 5),
	// decoded from xtext: a mailbox, or "<>"; "" when absent. The
	// session checks it and passes it on to no one: it does not know
	// the client well enough to trust who it says submitted the
	// message.
	Auth string
	// Ret is the RET= parameter of MAIL FROM in upper case, "FULL" or
	// "HDRS" (RFC 3461 section 4.3); "" when absent.
	Ret string
	// EnvID is the ENVID= parameter of MAIL FROM decoded from xtext (RFC
	// 3461 section 4.4): printable ASCII or space, at most 100
	// characters; "" when absent.
	EnvID string
	// Notify is the NOTIFY= parameter of RCPT TO (RFC 3461 section 4.1);
	// zero when absent.
	Notify Notify
	// ORcpt is the ORCPT= parameter of RCPT TO (RFC 3461 section 4.2) in
	// the form of RcptDSN.ORcpt; "" when absent.
	ORcpt string
	// Chunk is true when BDAT's chunk-size read (RFC 3030 section 2),
	// even if the rest of its arguments did not: the session then reads
	// the chunk, whatever the reply. False for every other verb.
	Chunk bool
	// ChunkSize is BDAT's chunk-size in octets, when Chunk is true.
	ChunkSize int64
	// Last is true for BDAT with the end-marker LAST: the chunk ends the
	// message.
	Last bool
}

// Length limits of RFC 5321 section 4.5.3.1, in octets.
const (
	maxLocalPart = 64  // section 4.5.3.1.1
	maxDomain    = 255 // section 4.5.3.1.2
	maxPath      = 256 // section 4.5.3.1.3, with the angle brackets
	maxLabel     = 63  // RFC 1035 section 2.3.4
)

// ParseCommand parses one command line given without its line ending. It
// checks syntax only; whether the command may come now is the session's
// business. The error is always a *Reply to send: 500 5.5.2 for a NUL, a
// CR, an LF or invalid UTF-8 anywhere in the line, or an unknown verb;
// 502 5.5.1 for a verb this server does not carry out; 501 or 555 for bad
// arguments; 553 5.6.7 for a non-ASCII MAIL FROM address without the
// SMTPUTF8 parameter (RFC 6531 section 3.4).
func ParseCommand(line []byte) (Command, error) {
	if bytes.ContainsAny(line, "\x00\r\n") || !utf8.Valid(line) {
		return Command{}, replyBadCharacter
	}
	word, arg, _ := strings.Cut(strings.TrimRight(string(line), " \t"), " ")
	v := Verb(upperASCII(word))
	c := lookup(v)
	switch {
	case c == nil:
		return Command{}, replyUnrecognized
	case c.run == nil:
		return Command{Verb: v}, replyNotImpl
	}
	return c.args(Command{Verb: v, Arg: strings.TrimLeft(arg, " ")})
}

// parseMail parses "FROM:<reverse-path> [params]" (RFC 5321 section
// 4.1.1.2). Like Postfix it allows spaces after the colon.
func parseMail(cmd Command) (Command, error) {
	rest, ok := cutPrefixFold(cmd.Arg, "FROM:")
	if !ok {
		return cmd, replyMailSyntax
	}
	path, params, err := parsePath(strings.TrimLeft(rest, " "), true, false)
	switch {
	case errors.Is(err, errPathLong):
		return cmd, replySenderLong
	case err != nil || params != "" && params[0] != ' ':
		return cmd, replyBadSender
	}
	cmd.Path = path
	if params != "" {
		if r := parseMailParams(&cmd, params); r != nil {
			return cmd, r
		}
	}
	if !cmd.SMTPUTF8 && !isASCII(path) {
		return cmd, replyNeedSMTPUTF8
	}
	return cmd, nil
}

// parseRcpt parses "TO:<forward-path> [params]" (RFC 5321 section
// 4.1.1.3); the parameters are DSN's (RFC 3461 section 4), NOTIFY= and
// ORCPT=.
func parseRcpt(cmd Command) (Command, error) {
	rest, ok := cutPrefixFold(cmd.Arg, "TO:")
	if !ok {
		return cmd, replyRcptSyntax
	}
	path, params, err := parsePath(strings.TrimLeft(rest, " "), false, true)
	switch {
	case errors.Is(err, errPathLong):
		return cmd, replyRecipientLong
	case err != nil || params != "" && params[0] != ' ':
		return cmd, replyBadRecipient
	}
	cmd.Path = path
	if params != "" {
		if r := parseRcptParams(&cmd, params); r != nil {
			return cmd, r
		}
	}
	return cmd, nil
}

// parseRcptParams parses the Rcpt-parameters after the forward-path
// (RFC 5321 section 4.1.2), as eachParam does.
func parseRcptParams(cmd *Command, s string) *Reply {
	return eachParam(cmd, s, func(key, val string, hasVal bool) *Reply {
		var ok bool
		switch key {
		case "NOTIFY": // RFC 3461 section 4.1
			cmd.Notify, ok = ParseNotify(val)
			if !ok {
				return replyNotifySyntax
			}
		case "ORCPT": // RFC 3461 section 4.2
			cmd.ORcpt, ok = parseORcpt(val)
			if !ok {
				return replyORcptSyntax
			}
		default:
			return replyParamUnknown
		}
		return nil
	})
}

// eachParam runs set on each parameter of s, which starts with a space:
// esmtp-keyword ["=" esmtp-value], separated by spaces (RFC 5321 section
// 4.1.2), the keyword in upper case. A parameter that is not of that
// form, or comes twice, is refused here; set returns nil or the reply
// that refuses its value.
func eachParam(cmd *Command, s string, set func(key, val string, hasVal bool) *Reply) *Reply {
	seen := map[string]bool{}
	for _, p := range strings.Split(s, " ") {
		if p == "" {
			continue
		}
		cmd.Params = true
		key, val, hasVal := strings.Cut(p, "=")
		if !validKeyword(key) || hasVal && !validValue(val) {
			return replyParamSyntax
		}
		key = upperASCII(key)
		if seen[key] {
			return replyParamTwice
		}
		seen[key] = true
		if r := set(key, val, hasVal); r != nil {
			return r
		}
	}
	return nil
}

// parseMailParams parses the Mail-parameters after the reverse-path (RFC
// 5321 section 4.1.2), as eachParam does.
func parseMailParams(cmd *Command, s string) *Reply {
	return eachParam(cmd, s, func(key, val string, hasVal bool) *Reply {
		switch key {
		case "SIZE": // RFC 1870: size-value = 1*20DIGIT
			if !hasVal || len(val) > 20 || strings.Trim(val, "0123456789") != "" {
				return replySizeSyntax
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				n = math.MaxInt64 // all digits: only out of range
			}
			cmd.Size = n
		case "BODY": // RFC 6152 section 2
			switch v := upperASCII(val); v {
			case "7BIT", "8BITMIME":
				cmd.Body = v
			default:
				return replyBodySyntax
			}
		case "SMTPUTF8": // RFC 6531 section 3.4
			if hasVal {
				return replyUTF8Syntax
			}
			cmd.SMTPUTF8 = true
		case "AUTH": // RFC 4954 section 5: AUTH=<mailbox> in xtext, or AUTH=<>
			v, ok := decodeXtext(val)
			if !hasVal || !ok || v == "" {
				return replyAuthParamSyntax
			}
			cmd.Auth = v
		case "RET": // RFC 3461 section 4.3
			v, ok := parseRet(val)
			if !ok {
				return replyRetSyntax
			}
			cmd.Ret = v
		case "ENVID": // RFC 3461 section 4.4
			v, ok := parseEnvID(val)
			if !ok {
				return replyEnvIDSyntax
			}
			cmd.EnvID = v
		default:
			return replyParamUnknown
		}
		return nil
	})
}

var (
	errPathSyntax = errors.New("bad path syntax")
	errPathLong   = errors.New("path too long")
)

// parsePath parses the Path at the start of s (RFC 5321 section 4.1.2):
//
//	Path = "<" [ A-d-l ":" ] Mailbox ">"
//	Mailbox = Local-part "@" ( Domain / address-literal )
//
// with the SMTPUTF8 extensions of RFC 6531 section 3.3. It accepts "<>"
// when null is true and a bare "<postmaster>" when postmaster is true.
// The source route (A-d-l) is accepted and dropped (RFC 5321 section
// 4.1.1.3 and appendix C). It returns the mailbox and the text after the
// closing bracket.
func parsePath(s string, null, postmaster bool) (mailbox, rest string, err error) {
	if at(s, 0) != '<' {
		return "", "", errPathSyntax
	}
	i := 1
	if null && at(s, i) == '>' {
		return "", s[i+1:], nil
	}
	if at(s, i) == '@' { // A-d-l = At-domain *( "," At-domain )
		for {
			n := domainLen(s[i+1:])
			if n == 0 {
				return "", "", errPathSyntax
			}
			i += 1 + n
			if at(s, i) == ':' {
				i++
				break
			}
			if at(s, i) != ',' || at(s, i+1) != '@' {
				return "", "", errPathSyntax
			}
			i++
		}
	}
	start := i
	nl := localPartLen(s[i:])
	if nl == 0 {
		return "", "", errPathSyntax
	}
	i += nl
	if postmaster && at(s, i) == '>' && ascii.EqualFold(s[start:i], "postmaster") {
		return "postmaster", s[i+1:], nil
	}
	if at(s, i) != '@' {
		return "", "", errPathSyntax
	}
	i++
	nd := domainLen(s[i:])
	if at(s, i) == '[' {
		nd = addressLiteralLen(s[i:])
	}
	if nd == 0 || at(s, i+nd) != '>' {
		return "", "", errPathSyntax
	}
	i += nd
	if nl > maxLocalPart || nd > maxDomain || i+1 > maxPath {
		return "", "", errPathLong
	}
	return s[start:i], s[i+1:], nil
}

// localPartLen returns the length of the Local-part at the start of s
// (Dot-string or Quoted-string, RFC 5321 section 4.1.2), 0 if none.
func localPartLen(s string) int {
	if at(s, 0) == '"' {
		for i := 1; ; {
			switch c := at(s, i); {
			case c == '"':
				return i + 1
			case c == '\\': // quoted-pairSMTP = %d92 %d32-126
				if c2 := at(s, i+1); c2 < 32 || c2 > 126 {
					return 0
				}
				i += 2
			case c >= 32 && c <= 126, c >= utf8.RuneSelf: // qtextSMTP
				i++
			default: // control character or end of s
				return 0
			}
		}
	}
	for i := 0; ; i++ { // Dot-string = Atom *("." Atom)
		n := 0
		for isAtext(at(s, i+n)) {
			n++
		}
		if n == 0 {
			return 0
		}
		i += n
		if at(s, i) != '.' {
			return i
		}
	}
}

// domainLen returns the length of the Domain at the start of s (RFC 5321
// section 4.1.2; U-labels per RFC 6531 section 3.3), 0 if none.
func domainLen(s string) int {
	for i := 0; ; i++ {
		n := 0
		for isLetDig(at(s, i+n)) || at(s, i+n) == '-' {
			n++
		}
		// sub-domain = Let-dig [Ldh-str]: no hyphen at either end.
		if n == 0 || n > maxLabel || s[i] == '-' || s[i+n-1] == '-' {
			return 0
		}
		i += n
		if at(s, i) != '.' {
			return i
		}
	}
}

// ValidDomain reports whether d is a Domain of RFC 5321 section 4.1.2
// (U-labels allowed, RFC 6531 section 3.3) of at most 255 octets
// (section 4.5.3.1.2) that has a canonical form (domain.Canonical): a
// domain the session can put in a forward-path and compare.
func ValidDomain(d string) bool {
	if _, err := domain.Canonical(d); err != nil {
		return false
	}
	return utf8.ValidString(d) && len(d) <= maxDomain && domainLen(d) == len(d)
}

// addressLiteralLen returns the length of the IPv4 or IPv6 address
// literal at the start of s (RFC 5321 section 4.1.3), 0 if none. The
// General-address-literal has no registered tag, so it is refused.
func addressLiteralLen(s string) int {
	end := strings.IndexByte(s, ']')
	if at(s, 0) != '[' || end < 0 {
		return 0
	}
	lit, ok := s[1:end], false
	if v6, isV6 := cutPrefixFold(lit, "IPv6:"); isV6 {
		a, err := netip.ParseAddr(v6)
		ok = err == nil && a.Is6() && a.Zone() == ""
	} else {
		a, err := netip.ParseAddr(lit)
		ok = err == nil && a.Is4()
	}
	if !ok {
		return 0
	}
	return end + 1
}

// at returns s[i], or 0 past the end; a NUL never reaches the parser.
func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// isAtext reports whether c may be in an Atom (RFC 5322 section 3.2.3),
// including the bytes of UTF-8 non-ASCII characters (RFC 6531).
func isAtext(c byte) bool {
	return isLetDig(c) || c != 0 && strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// isLetDig reports whether c is a letter, a digit or part of a UTF-8
// non-ASCII character.
func isLetDig(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c >= utf8.RuneSelf
}

// validKeyword reports whether s is an esmtp-keyword: (ALPHA / DIGIT)
// *(ALPHA / DIGIT / "-") (RFC 5321 section 4.1.2).
func validKeyword(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || !isLetDig(c) && c != '-' {
			return false
		}
	}
	return true
}

// validValue reports whether s is an esmtp-value: 1*(%d33-60 / %d62-126)
// (RFC 5321 section 4.1.2), plus UTF-8 (RFC 6531 section 3.3).
func validValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c == '=' || c == 127 {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// upperASCII upper-cases ASCII letters only: strings.ToUpper would map
// "maıl" (dotless i) to "MAIL".
func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// cutPrefixFold is strings.CutPrefix with an ASCII case-insensitive
// prefix.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !ascii.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}
