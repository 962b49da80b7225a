package route

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/domain"
)

// The local transports: lmtp:, maildir:, mbox: and pipe:. Package route only
// parses them and expands their templates; package send delivers.

// DefaultLMTPPort is the port of an LMTP route over TCP that names none.
// RFC 2033 section 5 forbids port 25 and assigns none; 24 ("any private
// mail system") is what Dovecot, Cyrus and Postfix's examples use.
const DefaultLMTPPort = 24

// DefaultPipeTimeout is the time limit of a pipe command without
// timeout= (Postfix's command_time_limit is 1000 s; a delivery agent
// that takes over 5 minutes is stuck).
const DefaultPipeTimeout = 5 * time.Minute

// MaxPipeTimeout is the largest timeout= of a pipe route.
const MaxPipeTimeout = time.Hour

// parseLMTP parses "unix:/path" or "[host][:port]" and refuses options.
func parseLMTP(hop string, opts []string) (*Route, error) {
	if len(opts) > 0 {
		return nil, fmt.Errorf("lmtp: takes no options, not %q", opts[0])
	}
	if path, ok := strings.CutPrefix(hop, "unix:"); ok {
		if !filepath.IsAbs(path) || filepath.Clean(path) != path {
			return nil, fmt.Errorf("lmtp:unix: needs an absolute, clean socket path, not %q", path)
		}
		return &Route{Kind: LMTP, Socket: path}, nil
	}
	if !strings.HasPrefix(hop, "[") {
		return nil, fmt.Errorf("lmtp: needs unix:/path or [host]:port, not %q (LMTP has no MX records)", hop)
	}
	r, err := parseSMTP(hop, nil)
	if err != nil {
		return nil, err
	}
	r.Kind = LMTP
	return r, nil
}

// parseTemplate parses the path template of a maildir or mbox route.
func parseTemplate(kind Kind, tmpl string, opts []string) (*Route, error) {
	if len(opts) > 0 {
		return nil, fmt.Errorf("%s: takes no options, not %q", kind, opts[0])
	}
	if !strings.HasPrefix(tmpl, "/") {
		return nil, fmt.Errorf("%s: needs an absolute path template, not %q", kind, tmpl)
	}
	if kind == Mbox && strings.HasSuffix(tmpl, "/") {
		return nil, fmt.Errorf("mbox: the template %q names a directory, not a file", tmpl)
	}
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '%' {
			continue
		}
		if i+1 == len(tmpl) || !strings.ContainsRune("dur%", rune(tmpl[i+1])) {
			return nil, fmt.Errorf("%s: template %q: %% must be followed by d, u, r or %%", kind, tmpl)
		}
		i++
	}
	for _, c := range strings.Split(tmpl, "/") {
		if c == ".." {
			return nil, fmt.Errorf("%s: template %q has a .. component", kind, tmpl)
		}
	}
	return &Route{Kind: kind, Path: tmpl}, nil
}

// Expand returns the maildir or mbox file of recipient addr under the
// route's template: %d is the domain (its canonical form: ASCII lower case, the
// IDNA A-label), %u the local part in ASCII lower case, %r the whole
// address so folded, %% a percent sign. Each is made safe to be a part of
// a path: "/", NUL and control characters become "_", a leading "." does
// too (so no "..", no hidden directory), and an empty value is "_". It
// returns an error for an address without a usable domain when the
// template needs one.
func (r *Route) Expand(addr string) (string, error) {
	local, dom := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, dom = addr[:i], addr[i+1:]
	}
	local = ascii.Lower(local)
	if strings.Contains(r.Path, "%d") || strings.Contains(r.Path, "%r") {
		c, err := domain.Canonical(dom)
		if err != nil || c == "" {
			return "", fmt.Errorf("recipient %q has no domain for the maildir template", addr)
		}
		dom = c
	}
	var b strings.Builder
	t := r.Path
	for i := 0; i < len(t); i++ {
		if t[i] != '%' || i+1 == len(t) {
			b.WriteByte(t[i])
			continue
		}
		i++
		switch t[i] {
		case 'd':
			b.WriteString(safePart(dom))
		case 'u':
			b.WriteString(safePart(local))
		case 'r':
			b.WriteString(safePart(local + "@" + dom))
		default:
			b.WriteByte(t[i])
		}
	}
	return b.String(), nil
}

// safePart makes s one safe component of a path.
func safePart(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, c := range b {
		if c == '/' || c < 0x20 || c == 0x7f {
			b[i] = '_'
		}
	}
	if b[0] == '.' {
		b[0] = '_'
	}
	return string(b)
}

// Command is the command of a pipe route: run without a shell, its
// arguments split in the table and expanded per delivery (Args).
type Command struct {
	// Path is the program, an absolute path.
	Path string
	// PerRecipient runs the command once per recipient (per=recipient);
	// otherwise once per message for all the route's recipients.
	PerRecipient bool
	// Timeout is the longest run of the command (timeout=).
	Timeout time.Duration
	args    [][]part
}

// part is a piece of an argument: literal text, or a variable.
type part struct {
	text string
	v    string // "" for literal text
}

// Vars are the values that ${name} in a pipe route's arguments expand
// to. They come from the envelope: a remote sender chose them, and they
// are only ever single arguments, never seen by a shell.
type Vars struct {
	Sender  string
	QueueID string
	// Rcpts are the recipients of this run of the command: one with
	// per=recipient, else all the route's recipients of the message.
	Rcpts []string
}

// varNames are the variables of a pipe route's arguments. recipient,
// user and domain have one value per recipient.
var varNames = map[string]bool{"sender": false, "queue_id": false, "recipient": true, "user": true, "domain": true}

// parsePipe parses "pipe:/path", its options (per=message|recipient,
// timeout=duration) and its arguments. Option words come first; the
// first word that is not one, or the word after "--", starts the
// arguments.
func parsePipe(path string, words []string) (*Route, error) {
	if !filepath.IsAbs(path) || strings.Contains(path, "${") {
		return nil, fmt.Errorf("pipe: needs the command's absolute path, not %q", path)
	}
	c := &Command{Path: path, Timeout: DefaultPipeTimeout}
	seen := map[string]bool{}
	for len(words) > 0 {
		w := words[0]
		if w == "--" {
			words = words[1:]
			break
		}
		k, v, ok := strings.Cut(w, "=")
		if !ok || (k != "per" && k != "timeout") {
			break
		}
		if seen[k] {
			return nil, fmt.Errorf("option %s= given twice", k)
		}
		seen[k] = true
		words = words[1:]
		switch k {
		case "per":
			switch v {
			case "message":
			case "recipient":
				c.PerRecipient = true
			default:
				return nil, fmt.Errorf("per=%s: want per=message or per=recipient", v)
			}
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > MaxPipeTimeout {
				return nil, fmt.Errorf("timeout=%s: want a duration from 1s to %s", v, MaxPipeTimeout)
			}
			c.Timeout = d
		}
	}
	for _, w := range words {
		ps, err := parseArg(w)
		if err != nil {
			return nil, err
		}
		if !c.PerRecipient && len(ps) > 1 {
			for _, p := range ps {
				if varNames[p.v] {
					return nil, fmt.Errorf("argument %q: with per=message, ${%s} must be a whole argument (it gives one argument per recipient)", w, p.v)
				}
			}
		}
		c.args = append(c.args, ps)
	}
	return &Route{Kind: Pipe, Pipe: c}, nil
}

// parseArg splits an argument into literal text and ${name} variables.
func parseArg(w string) ([]part, error) {
	var ps []part
	for w != "" {
		i := strings.Index(w, "${")
		if i < 0 {
			ps = append(ps, part{text: w})
			break
		}
		if i > 0 {
			ps = append(ps, part{text: w[:i]})
		}
		end := strings.IndexByte(w[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("argument %q: ${ without }", w)
		}
		name := w[i+2 : i+end]
		if _, ok := varNames[name]; !ok {
			return nil, fmt.Errorf("argument %q: unknown variable ${%s} (known: sender, recipient, user, domain, queue_id)", w, name)
		}
		ps = append(ps, part{v: name})
		w = w[i+end+1:]
	}
	if len(ps) == 0 {
		ps = append(ps, part{})
	}
	return ps, nil
}

// Args returns the command's arguments (without the program) for the
// values v. An argument that is exactly ${recipient}, ${user} or
// ${domain} gives one argument per recipient of v.Rcpts (Postfix's
// pipe(8) does the same); inside a longer argument such a variable is
// the first recipient's (per=recipient has only one). ${user} is the
// local part, ${domain} the domain, both as the envelope has them.
func (c *Command) Args(v Vars) []string {
	var out []string
	for _, ps := range c.args {
		if len(ps) == 1 && varNames[ps[0].v] {
			for _, rc := range v.Rcpts {
				out = append(out, varValue(ps[0].v, v, rc))
			}
			continue
		}
		first := ""
		if len(v.Rcpts) > 0 {
			first = v.Rcpts[0]
		}
		var b strings.Builder
		for _, p := range ps {
			if p.v == "" {
				b.WriteString(p.text)
			} else {
				b.WriteString(varValue(p.v, v, first))
			}
		}
		out = append(out, b.String())
	}
	return out
}

// varValue is variable name's value for recipient rc.
func varValue(name string, v Vars, rc string) string {
	local, dom := rc, ""
	if i := strings.LastIndexByte(rc, '@'); i >= 0 {
		local, dom = rc[:i], rc[i+1:]
	}
	switch name {
	case "sender":
		return v.Sender
	case "queue_id":
		return v.QueueID
	case "recipient":
		return rc
	case "user":
		return local
	case "domain":
		return dom
	}
	return ""
}

// UserDomain splits a recipient into its local part and domain as the
// envelope has them (at the last "@"), for ${user}, ${domain} and the
// USER and DOMAIN of a pipe command's environment.
func UserDomain(rc string) (user, dom string) {
	return varValue("user", Vars{}, rc), varValue("domain", Vars{}, rc)
}
