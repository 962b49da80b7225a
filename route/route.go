// Package route reads smtp-send's route table (SMTP_SEND_ROUTES), in the
// spirit of Postfix's transport(5): which transport, and which next hop,
// carries the mail for a recipient.
//
// The table is a text file of lines
//
//	pattern  transport:nexthop  [option ...]
//
// with "#" starting a comment and blank lines ignored. A pattern is
// "user@domain" (that address), "domain" (the domain itself), ".domain"
// (every subdomain of domain, not domain itself) or "*" (every
// recipient). The most specific pattern wins, whatever the order of the
// lines: an address, then the domain, then the longest matching
// ".domain", then "*". Patterns are compared in one form: the domain in
// its canonical form (package domain: ASCII lower case, IDNA A-label),
// the local part folded to lower case in ASCII, as transport(5) does.
//
// Transports:
//
//	smtp:                the recipient domain's MX hosts (RFC 5321 section 5.1)
//	smtp:host[:port]     the MX hosts of host instead
//	smtp:[host][:port]   host itself, no MX lookup (Postfix's brackets)
//	error:5.x.y text     refuse at once: a bounce with that status (RFC 3463)
//	lmtp:unix:/path      LMTP (RFC 2033) to a unix socket
//	lmtp:[host][:port]   LMTP over TCP (port 24 unless given)
//	maildir:/template    a Maildir per recipient (see Route.Expand)
//	mbox:/template       an mbox file per recipient (see Route.Expand)
//	pipe:/cmd [arg ...]  a command, the message on its standard input
//
// The local transports (lmtp, maildir, pipe) are in local.go.
//
// Options, after the next hop, are key=value words:
//
//	tls=none|may|encrypt|verify   smtp: the TLS policy of the route (see TLSPolicy)
//	per=message|recipient         pipe: one run per message or per recipient
//	timeout=duration              pipe: the command's time limit
//	users=/path                   lmtp, maildir, mbox, pipe: the aliases(5)
//	                              file naming the local parts the route
//	                              delivers; any other fails with 5.1.1
//
// A pipe route's arguments follow its options (after "--", or from the
// first word that is not an option).
//
// Package route knows nothing of DNS or SMTP: it parses and matches.
package route

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/domain"
)

// MaxLine is the longest line of a table, in octets without the line end.
const MaxLine = 4096

// Kind is a route's transport. The zero value is SMTP.
type Kind int

const (
	// SMTP delivers over SMTP to MX hosts or to a named host.
	SMTP Kind = iota
	// Error refuses the recipient with a permanent failure.
	Error
	// LMTP delivers over LMTP (RFC 2033) to a unix socket or a host.
	LMTP
	// Maildir writes the message into a Maildir per recipient.
	Maildir
	// Pipe runs a command with the message on its standard input.
	Pipe
	// Mbox appends the message to an mbox file per recipient.
	Mbox
)

var kindNames = [...]string{SMTP: "smtp", Error: "error", LMTP: "lmtp", Maildir: "maildir", Pipe: "pipe", Mbox: "mbox"}

// String returns the transport's name as in the table: "smtp",
// "error", "lmtp", "maildir", "pipe" or "mbox".
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "kind(" + strconv.Itoa(int(k)) + ")"
	}
	return kindNames[k]
}

// Local reports whether the transport delivers on this machine (LMTP,
// Maildir, Pipe, Mbox): a final delivery, not a relay.
func (k Kind) Local() bool { return k == LMTP || k == Maildir || k == Pipe || k == Mbox }

// TLSPolicy is what a route requires of TLS (RFC 7435's terms). The zero
// value, TLSDefault, leaves the decision to the transport: opportunistic
// TLS for MX delivery.
type TLSPolicy int

const (
	// TLSDefault: the route sets no policy.
	TLSDefault TLSPolicy = iota
	// TLSNone: never STARTTLS.
	TLSNone
	// TLSMay: STARTTLS when offered, certificate not verified; clear text
	// when it is not offered or its handshake fails (RFC 7435 section 3).
	TLSMay
	// TLSEncrypt: STARTTLS required, certificate not verified; no clear
	// text.
	TLSEncrypt
	// TLSVerify: STARTTLS required and the certificate must verify for
	// the host's name (the MX host's name, or the bracketed host).
	TLSVerify
)

var policyNames = [...]string{TLSDefault: "default", TLSNone: "none", TLSMay: "may", TLSEncrypt: "encrypt", TLSVerify: "verify"}

// String returns the policy's name as written in the table ("default"
// for TLSDefault).
func (p TLSPolicy) String() string {
	if p < 0 || int(p) >= len(policyNames) {
		return "tls(" + strconv.Itoa(int(p)) + ")"
	}
	return policyNames[p]
}

// ParseTLSPolicy parses "none", "may", "encrypt" or "verify" (ASCII case
// folded). It returns an error for anything else.
func ParseTLSPolicy(s string) (TLSPolicy, error) {
	for i, n := range policyNames {
		if i != int(TLSDefault) && ascii.EqualFold(s, n) {
			return TLSPolicy(i), nil
		}
	}
	return TLSDefault, fmt.Errorf("unknown TLS policy %q (want none, may, encrypt or verify)", s)
}

// Route is where the mail for one recipient goes, and why.
type Route struct {
	// Kind is the transport.
	Kind Kind
	// Host is the next hop of an SMTP route: "" for the recipient
	// domain's MX hosts, else a host name or address in canonical form.
	Host string
	// Literal is true for a bracketed host: dial Host, no MX lookup.
	Literal bool
	// Port is the TCP port, 0 for the transport's default.
	Port int
	// TLS is the route's TLS policy.
	TLS TLSPolicy
	// Status and Text are an error route's RFC 3463 status (5.x.y) and
	// reply text.
	Status, Text string
	// Socket is the unix socket of an LMTP route, "" for one over TCP
	// (Host, Literal and Port then).
	Socket string
	// Path is the path template of a maildir or mbox route (see
	// Expand).
	Path string
	// Pipe is the command of a pipe route.
	Pipe *Command
	// Users is the users= file of a local route, "" for none: an
	// aliases(5) file (package alias) whose names are the local parts
	// the route delivers; a recipient with another fails with 5.1.1.
	Users string
	// Pattern is the table's pattern that chose this route, as written;
	// Line is its line number (from 1) and File the table's name. A
	// route that no table line chose has Line 0.
	Pattern string
	Line    int
	File    string
}

// Nexthop returns the route's transport:nexthop as the table spells it
// ("smtp:", "smtp:[mx.example]:2525", "error:5.1.1").
func (r *Route) Nexthop() string {
	switch r.Kind {
	case Error:
		return "error:" + r.Status
	case Maildir, Mbox:
		return r.Kind.String() + ":" + r.Path
	case Pipe:
		return "pipe:" + r.Pipe.Path
	case LMTP:
		if r.Socket != "" {
			return "lmtp:unix:" + r.Socket
		}
	}
	h := r.Host
	if r.Literal {
		h = "[" + h + "]"
	}
	if r.Port != 0 {
		h += ":" + strconv.Itoa(r.Port)
	}
	return r.Kind.String() + ":" + h
}

// Table is a parsed route table. The zero value matches nothing.
type Table struct {
	file    string
	addrs   map[string]*Route // "local@domain"
	domains map[string]*Route // "domain"
	subs    map[string]*Route // "domain" of ".domain"
	def     *Route            // "*"
}

// LineError is a fault in a table line: File and Line name it.
type LineError struct {
	File string
	Line int
	Err  error
}

// Error returns "file line N: what".
func (e *LineError) Error() string {
	return fmt.Sprintf("%s line %d: %v", e.File, e.Line, e.Err)
}

// Unwrap returns the fault.
func (e *LineError) Unwrap() error { return e.Err }

// Load reads and parses the table in the file path. It returns the
// file's error, or a *LineError naming the first bad line.
func Load(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse parses a table from r; name is the table's name in errors and
// in each Route's File. It returns a *LineError naming the first bad
// line (an unknown transport or option, a bad pattern, status or port, a
// pattern given twice, a line longer than MaxLine), or r's error.
func Parse(r io.Reader, name string) (*Table, error) {
	t := &Table{file: name, addrs: map[string]*Route{}, domains: map[string]*Route{}, subs: map[string]*Route{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), MaxLine+2)
	n := 0
	for sc.Scan() {
		n++
		if l := strings.TrimSuffix(sc.Text(), "\r"); len(l) > MaxLine {
			return nil, &LineError{File: name, Line: n, Err: fmt.Errorf("line longer than %d octets", MaxLine)}
		}
		if err := t.parseLine(sc.Text(), n); err != nil {
			return nil, &LineError{File: name, Line: n, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{File: name, Line: n + 1, Err: fmt.Errorf("line longer than %d octets", MaxLine)}
		}
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return t, nil
}

// parseLine adds line n to t.
func (t *Table) parseLine(line string, n int) error {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil
	}
	if len(f) < 2 {
		return fmt.Errorf("pattern %q without a transport", f[0])
	}
	r, err := parseTransport(f[1], f[2:])
	if err != nil {
		return err
	}
	r.Pattern, r.Line, r.File = f[0], n, t.file
	m, key, err := t.slot(f[0])
	if err != nil {
		return err
	}
	if m == nil {
		if t.def != nil {
			return fmt.Errorf("pattern * given again (first on line %d)", t.def.Line)
		}
		t.def = r
		return nil
	}
	if old, ok := m[key]; ok {
		return fmt.Errorf("pattern %s given again (first on line %d)", f[0], old.Line)
	}
	m[key] = r
	return nil
}

// slot returns the map and key of pattern p, or a nil map for "*".
func (t *Table) slot(p string) (map[string]*Route, string, error) {
	switch {
	case p == "*":
		return nil, "", nil
	case strings.Contains(p, "@"):
		local, dom, _ := strings.Cut(p, "@")
		if local == "" || strings.Contains(dom, "@") {
			return nil, "", fmt.Errorf("bad address pattern %q (want user@domain)", p)
		}
		d, err := canonicalDomain(dom)
		if err != nil {
			return nil, "", err
		}
		return t.addrs, ascii.Lower(local) + "@" + d, nil
	case strings.HasPrefix(p, "."):
		d, err := canonicalDomain(p[1:])
		if err != nil {
			return nil, "", err
		}
		return t.subs, d, nil
	}
	d, err := canonicalDomain(p)
	if err != nil {
		return nil, "", err
	}
	return t.domains, d, nil
}

// canonicalDomain checks a domain of a pattern or a next hop.
func canonicalDomain(d string) (string, error) {
	if d == "" || strings.HasPrefix(d, ".") || strings.Contains(d, "*") || strings.Contains(d, "..") {
		return "", fmt.Errorf("bad domain %q", d)
	}
	c, err := domain.Canonical(d)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(c, "[]@:/\\") {
		return "", fmt.Errorf("bad domain %q", d)
	}
	return c, nil
}

// parseTransport parses "transport:nexthop" and what follows it.
func parseTransport(tr string, rest []string) (*Route, error) {
	kind, hop, ok := strings.Cut(tr, ":")
	if !ok {
		return nil, fmt.Errorf("transport %q without a colon (want smtp:, error:, lmtp:, maildir:, mbox: or pipe:)", tr)
	}
	var users string
	switch k := ascii.Lower(kind); k {
	case "lmtp", "maildir", "mbox", "pipe":
		var err error
		if users, rest, err = cutUsers(rest); err != nil {
			return nil, err
		}
		r, err := parseLocal(k, hop, rest)
		if err != nil {
			return nil, err
		}
		r.Users = users
		return r, nil
	}
	switch ascii.Lower(kind) {
	case "error":
		return parseError(hop, rest)
	case "smtp":
		return parseSMTP(hop, rest)
	case "lmtp":
		return parseLMTP(hop, rest)
	case "maildir":
		return parseTemplate(Maildir, hop, rest)
	case "mbox":
		return parseTemplate(Mbox, hop, rest)
	case "pipe":
		return parsePipe(hop, rest)
	}
	return nil, fmt.Errorf("unknown transport %q (want smtp:, error:, lmtp:, maildir:, mbox: or pipe:)", kind+":")
}

// parseLocal parses the next hop and options of a local transport.
func parseLocal(kind, hop string, rest []string) (*Route, error) {
	switch kind {
	case "lmtp":
		return parseLMTP(hop, rest)
	case "maildir":
		return parseTemplate(Maildir, hop, rest)
	case "mbox":
		return parseTemplate(Mbox, hop, rest)
	}
	return parsePipe(hop, rest)
}

// cutUsers takes the users= option out of the option words of a local
// route: those before "--" or the first word that is not key=value with
// a key of a local route (a pipe's arguments follow its options). It
// returns the file, "" for none, and the other words in their order; an
// error for a path that is not absolute and clean, or users= twice.
func cutUsers(words []string) (string, []string, error) {
	users, out := "", make([]string, 0, len(words))
	for i, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if w == "--" || !ok || (k != "users" && k != "per" && k != "timeout") {
			out = append(out, words[i:]...)
			break
		}
		if k != "users" {
			out = append(out, w)
			continue
		}
		if users != "" {
			return "", nil, errors.New("option users= given twice")
		}
		if !strings.HasPrefix(v, "/") || filepath.Clean(v) != v {
			return "", nil, fmt.Errorf("users=%s: want the absolute, clean path of an aliases(5) file", v)
		}
		users = v
	}
	return users, out, nil
}

// Routes returns every route of the table, in the order of its lines.
func (t *Table) Routes() []Route {
	if t == nil {
		return nil
	}
	var out []Route
	for _, m := range []map[string]*Route{t.addrs, t.domains, t.subs} {
		for _, r := range m {
			out = append(out, *r)
		}
	}
	if t.def != nil {
		out = append(out, *t.def)
	}
	slices.SortFunc(out, func(a, b Route) int { return a.Line - b.Line })
	return out
}

// parseError parses "5.x.y" and the text of an error route.
func parseError(status string, text []string) (*Route, error) {
	if !isPermanentStatus(status) {
		return nil, fmt.Errorf("error: needs a permanent RFC 3463 status 5.x.y, not %q", status)
	}
	r := &Route{Kind: Error, Status: status, Text: strings.Join(text, " ")}
	if r.Text == "" {
		r.Text = "delivery to this address is refused by the route table"
	}
	return r, nil
}

// isPermanentStatus reports whether s is "5.x.y" with x of 1 to 3 digits
// and y of 1 to 3 digits (RFC 3463 section 2).
func isPermanentStatus(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || p[0] != "5" {
		return false
	}
	for _, q := range p[1:] {
		if len(q) < 1 || len(q) > 3 || strings.Trim(q, "0123456789") != "" {
			return false
		}
	}
	return true
}

// parseSMTP parses the next hop and options of an smtp route.
func parseSMTP(hop string, opts []string) (*Route, error) {
	r := &Route{Kind: SMTP}
	if hop != "" {
		host, port := hop, ""
		if strings.HasPrefix(hop, "[") {
			end := strings.IndexByte(hop, ']')
			if end < 0 {
				return nil, fmt.Errorf("next hop %q lacks its ]", hop)
			}
			host, r.Literal = hop[1:end], true
			switch rest := hop[end+1:]; {
			case rest == "":
			case strings.HasPrefix(rest, ":"):
				port = rest[1:]
			default:
				return nil, fmt.Errorf("bad next hop %q", hop)
			}
		} else if i := strings.LastIndexByte(hop, ':'); i >= 0 {
			host, port = hop[:i], hop[i+1:]
		}
		if port != "" || strings.HasSuffix(hop, ":") {
			p, err := strconv.Atoi(port)
			if err != nil || p < 1 || p > 65535 || port[0] == '0' || port[0] == '+' {
				return nil, fmt.Errorf("bad port %q in next hop %q", port, hop)
			}
			r.Port = p
		}
		if ip := net.ParseIP(host); r.Literal && ip != nil {
			r.Host = ip.String()
		} else {
			h, err := canonicalDomain(host)
			if err != nil {
				return nil, fmt.Errorf("next hop %q: %w", hop, err)
			}
			r.Host = h
		}
	}
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return nil, fmt.Errorf("option %q is not key=value", o)
		}
		switch ascii.Lower(k) {
		case "tls":
			if r.TLS != TLSDefault {
				return nil, fmt.Errorf("option tls= given twice")
			}
			p, err := ParseTLSPolicy(v)
			if err != nil {
				return nil, err
			}
			r.TLS = p
		default:
			return nil, fmt.Errorf("unknown option %q (known: tls=)", k)
		}
	}
	return r, nil
}

// Lookup returns the route of the recipient addr and true, or false when
// no line matches it. The most specific pattern wins: the address, the
// domain, the longest ".domain" that the domain is a subdomain of, then
// "*". An address whose domain has no canonical form matches only "*".
func (t *Table) Lookup(addr string) (Route, bool) {
	if t == nil {
		return Route{}, false
	}
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		if d, err := domain.Canonical(addr[i+1:]); err == nil {
			if r, ok := t.addrs[ascii.Lower(addr[:i])+"@"+d]; ok {
				return *r, true
			}
			if r, ok := t.domains[d]; ok {
				return *r, true
			}
			for s := d; ; {
				j := strings.IndexByte(s, '.')
				if j < 0 {
					break
				}
				s = s[j+1:]
				if r, ok := t.subs[s]; ok {
					return *r, true
				}
			}
		}
	}
	if t.def != nil {
		return *t.def, true
	}
	return Route{}, false
}

// File returns the table's name, as given to Parse.
func (t *Table) File() string { return t.file }
