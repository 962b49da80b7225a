// Package alias reads smtp-send's alias file (SMTP_SEND_ALIASES), in the
// syntax of aliases(5), and expands a local recipient into the addresses
// it stands for.
//
// The file is a text file of entries
//
//	name: address, address, ...
//
// A line whose first non-blank character is "#" is a comment; blank
// lines are ignored; a line that starts with a space or a tab continues
// the entry above it. A name is a local part, matched in ASCII lower
// case (as Postfix's local(8) and sendmail do), and applies in every
// domain that the route table sends to a local transport. An address
// without "@" is a name in the recipient's own domain ("postmaster:
// root" sends postmaster@example.org to root@example.org); one with "@"
// is used as it is, and expanded again if its domain is local.
//
// An entry that names itself ("alice: alice") is a mailbox, not an
// alias: the recipient is delivered as it is. So is a name met again
// further down its own expansion ("alice: alice, bob"). Every other
// cycle (a: b, b: a) is a configuration error, found when the file is
// read.
//
// What aliases(5) does with "|command", "/file" and ":include:/file" is
// not done here: each is a configuration error naming the line. A
// command or a file as a delivery target runs with the privileges of the
// delivery agent and with a recipient that a remote client chose; the
// route table says it instead, where the administrator sees it
// (pipe:/command and maildir:/path or mbox:/path routes for an address,
// docs/send.md). A quoted local part is not supported either.
//
// Package alias knows nothing of routes or of the queue: it parses and
// expands.
package alias

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// MaxLine is the longest line of an alias file, in octets without the
// line end (route.MaxLine's limit).
const MaxLine = 4096

// MaxEntry is the longest entry, its continuation lines joined, in
// octets.
const MaxEntry = 64 * 1024

// MaxDepth is the most aliases one expansion passes through, from the
// recipient to a final address: sendmail's MAXRCRSN is 10, Postfix's
// local(8) stops at 100. A deeper expansion is a failure (ErrTooDeep).
const MaxDepth = 10

// MaxFanOut is the most final addresses one recipient expands to, after
// duplicates are removed (Postfix's expansion_size_limit is 1000, and a
// message holds at most spool.MaxRecipients recipients). More is a
// failure (ErrTooMany).
const MaxFanOut = 1000

// Errors of Expand, tested with errors.Is.
var (
	// ErrTooDeep: the expansion passes through more than MaxDepth
	// aliases (RFC 3463 5.4.6, routing loop).
	ErrTooDeep = errors.New("alias: expansion deeper than the limit")
	// ErrTooMany: the expansion gives more than MaxFanOut addresses
	// (RFC 3463 5.5.3, too many recipients).
	ErrTooMany = errors.New("alias: expansion gives more addresses than the limit")
)

// Table is a parsed alias file. The zero value and nil have no alias.
type Table struct {
	file    string
	entries map[string]*entry // by name in ASCII lower case
}

// entry is one name's line: its targets as written.
type entry struct {
	line    int
	targets []string
}

// LineError is a fault in an alias file: File and Line name it.
type LineError struct {
	File string
	Line int
	Err  error
}

// Error returns "file line N: what".
func (e *LineError) Error() string { return fmt.Sprintf("%s line %d: %v", e.File, e.Line, e.Err) }

// Unwrap returns the fault.
func (e *LineError) Unwrap() error { return e.Err }

// Load reads and parses the alias file path. It returns the file's
// error, or a *LineError naming the first bad line.
func Load(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse parses an alias file from r; name is the file's name in errors.
// It returns a *LineError naming the first bad line (no colon, an empty
// or bad name or address, a name given twice, a command, file or
// :include: target, a line longer than MaxLine, an entry longer than
// MaxEntry, a cycle of aliases), or r's error.
func Parse(r io.Reader, name string) (*Table, error) {
	t := &Table{file: name, entries: map[string]*entry{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), MaxLine+2)
	var cur strings.Builder
	start, n := 0, 0
	flush := func() error {
		if start == 0 {
			return nil
		}
		err := t.add(cur.String(), start)
		cur.Reset()
		start = 0
		return err
	}
	for sc.Scan() {
		n++
		l := strings.TrimSuffix(sc.Text(), "\r")
		if len(l) > MaxLine {
			return nil, &LineError{name, n, fmt.Errorf("line longer than %d octets", MaxLine)}
		}
		trimmed := strings.TrimSpace(l)
		switch {
		case trimmed == "" || trimmed[0] == '#':
			// A comment or blank line ends nothing: aliases(5) lets
			// continuation lines follow it, and so do we.
			continue
		case l[0] == ' ' || l[0] == '\t':
			if start == 0 {
				return nil, &LineError{name, n, errors.New("continuation line without an entry above it")}
			}
			if cur.Len()+1+len(trimmed) > MaxEntry {
				return nil, &LineError{name, start, fmt.Errorf("entry longer than %d octets", MaxEntry)}
			}
			cur.WriteByte(' ')
			cur.WriteString(trimmed)
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		start = n
		cur.WriteString(trimmed)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{name, n + 1, fmt.Errorf("line longer than %d octets", MaxLine)}
		}
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if err := t.checkCycles(); err != nil {
		return nil, err
	}
	return t, nil
}

// add parses one entry, its continuation lines joined, starting at line n.
func (t *Table) add(s string, n int) error {
	lerr := func(format string, a ...any) error { return &LineError{t.file, n, fmt.Errorf(format, a...)} }
	name, list, ok := strings.Cut(s, ":")
	if !ok {
		return lerr("no colon: want name: address, address")
	}
	name = strings.TrimSpace(name)
	if !validName(name) {
		return lerr("bad alias name %q (a local part without @, quotes or spaces)", name)
	}
	key := ascii.Lower(name)
	if prev, ok := t.entries[key]; ok {
		return lerr("alias %q given twice (first on line %d)", name, prev.line)
	}
	e := &entry{line: n}
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		switch {
		case a == "":
			if strings.TrimSpace(list) == "" {
				return lerr("alias %q has no address", name)
			}
			return lerr("alias %q: empty address in the list", name)
		case a[0] == '|' || a[0] == '"':
			return lerr("alias %q: %q: commands are not run from the alias file; use a pipe:/command route in SMTP_SEND_ROUTES for an address (docs/send.md)", name, a)
		case a[0] == '/':
			return lerr("alias %q: %q: files are not written from the alias file; use a maildir: or mbox: route in SMTP_SEND_ROUTES (docs/send.md)", name, a)
		case len(a) >= 9 && ascii.EqualFold(a[:9], ":include:"):
			return lerr("alias %q: %q: :include: is not supported; list the addresses in the alias file", name, a)
		}
		if !validAddress(a) {
			return lerr("alias %q: bad address %q (want local-part or local-part@domain)", name, a)
		}
		e.targets = append(e.targets, a)
	}
	t.entries[key] = e
	return nil
}

// validName: a dot-atom-ish local part (RFC 5321 section 4.1.2) without
// "@", quotes, spaces or control characters; UTF-8 is allowed (RFC
// 6531).
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte("@\"(),:;<>[\\]", c) >= 0 {
			return false
		}
	}
	return true
}

// validAddress: a name, or name@domain with a domain of visible
// characters.
func validAddress(s string) bool {
	local, dom, at := strings.Cut(s, "@")
	if !validName(local) {
		return false
	}
	if !at {
		return true
	}
	if dom == "" || len(dom) > 255 || strings.Contains(dom, "@") {
		return false
	}
	for i := 0; i < len(dom); i++ {
		if c := dom[i]; c <= ' ' || c == 0x7f || strings.IndexByte("\"(),:;<>\\", c) >= 0 {
			return false
		}
	}
	return true
}

// checkCycles refuses a cycle of names (without "@") other than a name
// that lists itself: a: b, b: a would be undeliverable. Names with a
// domain are checked when expanded (the file does not know which
// domains are local).
func (t *Table) checkCycles() error {
	const (
		unseen = iota
		onPath
		finished
	)
	mark := map[string]int{}
	var visit func(k string) error
	visit = func(k string) error {
		mark[k] = onPath
		e := t.entries[k]
		for _, a := range e.targets {
			if strings.Contains(a, "@") {
				continue
			}
			c := ascii.Lower(a)
			if c == k {
				continue
			}
			if _, ok := t.entries[c]; !ok {
				continue
			}
			switch mark[c] {
			case onPath:
				return &LineError{t.file, e.line, fmt.Errorf("alias %q is part of a cycle through %q", k, c)}
			case unseen:
				if err := visit(c); err != nil {
					return err
				}
			}
		}
		mark[k] = finished
		return nil
	}
	keys := make([]string, 0, len(t.entries))
	for k := range t.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same error for the same file
	for _, k := range keys {
		if mark[k] == unseen {
			if err := visit(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// File returns the table's name, as given to Parse.
func (t *Table) File() string {
	if t == nil {
		return ""
	}
	return t.file
}

// Len returns the number of names in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Has reports whether local is a name of the table (ASCII case folded):
// an alias or a mailbox listed as itself.
func (t *Table) Has(local string) bool {
	if t == nil {
		return false
	}
	_, ok := t.entries[ascii.Lower(local)]
	return ok
}

// Line returns the line of name local's entry, 0 if it has none.
func (t *Table) Line(local string) int {
	if t == nil {
		return 0
	}
	if e, ok := t.entries[ascii.Lower(local)]; ok {
		return e.line
	}
	return 0
}

// Expand returns the final addresses that recipient addr (local@domain)
// stands for, in the order of the file, each once (compared with the
// local part in ASCII lower case), and whether addr is an alias at all:
// false (and nil) when its local part is not a name of the table, or its
// entry lists only itself. isLocal reports whether a domain is one the
// table applies to (a local route); an address in such a domain is
// expanded again, one elsewhere is final. A name met again on its own
// path is final (it is the mailbox of that name). It returns an error
// wrapping ErrTooDeep past MaxDepth aliases, or ErrTooMany past
// MaxFanOut addresses.
func (t *Table) Expand(addr string, isLocal func(domain string) bool) ([]string, bool, error) {
	if t == nil {
		return nil, false, nil
	}
	local, dom := split(addr)
	e, ok := t.entries[ascii.Lower(local)]
	if !ok || len(e.targets) == 1 && ascii.EqualFold(e.targets[0], local) {
		return nil, false, nil
	}
	x := expansion{t: t, isLocal: isLocal, seen: map[string]bool{}}
	if err := x.walk(local, dom, map[string]bool{}, 0); err != nil {
		return nil, true, fmt.Errorf("%s: %w", addr, err)
	}
	return x.out, true, nil
}

// expansion is the state of one Expand.
type expansion struct {
	t       *Table
	isLocal func(string) bool
	seen    map[string]bool // final addresses, folded, already in out
	out     []string
}

// walk expands name local in domain dom; path holds the folded
// addresses of the aliases above it.
func (x *expansion) walk(local, dom string, path map[string]bool, depth int) error {
	if depth >= MaxDepth {
		return fmt.Errorf("%w of %d at %s", ErrTooDeep, MaxDepth, local)
	}
	self := fold(local, dom)
	path[self] = true
	defer delete(path, self)
	for _, a := range x.t.entries[ascii.Lower(local)].targets {
		l, d := split(a)
		if !strings.Contains(a, "@") {
			d = dom
		}
		k := fold(l, d)
		_, isAlias := x.t.entries[ascii.Lower(l)]
		if isAlias && !path[k] && (d == dom || x.isLocal != nil && x.isLocal(d)) {
			if err := x.walk(l, d, path, depth+1); err != nil {
				return err
			}
			continue
		}
		if x.seen[k] {
			continue
		}
		if len(x.out) == MaxFanOut {
			return fmt.Errorf("%w of %d", ErrTooMany, MaxFanOut)
		}
		x.seen[k] = true
		x.out = append(x.out, l+"@"+d)
	}
	return nil
}

// split cuts an address at its last "@".
func split(addr string) (local, dom string) {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

// fold is the comparison form of an address: ASCII lower case.
func fold(local, dom string) string { return ascii.Lower(local) + "@" + ascii.Lower(dom) }
