// Package mtasts reads SMTP MTA Strict Transport Security policies (RFC
// 8461): the "_mta-sts" TXT record that announces one and its id, the
// policy file served at https://mta-sts.<domain>/.well-known/mta-sts.txt,
// and the match of an MX host against the policy's "mx" patterns. It
// fetches a policy over HTTPS with the rules of RFC 8461 section 3.3 and
// keeps policies in a directory cache (cache.go). It knows nothing of
// SMTP: package send applies a policy to its MX hosts.
package mtasts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// Mode is a policy's mode (RFC 8461 section 3.2). The zero value is
// ModeNone.
type Mode int

const (
	// ModeNone: the domain has no active policy.
	ModeNone Mode = iota
	// ModeTesting: deliver as without a policy, but report failures.
	ModeTesting
	// ModeEnforce: deliver only to MX hosts that match the policy and
	// present a valid certificate for their name over TLS.
	ModeEnforce
)

var modeNames = [...]string{ModeNone: "none", ModeTesting: "testing", ModeEnforce: "enforce"}

// String returns "none", "testing" or "enforce".
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return "mode(" + strconv.Itoa(int(m)) + ")"
	}
	return modeNames[m]
}

// MaxPolicySize is the largest policy file read, in octets; a larger one
// is refused (RFC 8461 section 3.3 leaves the limit to the sender; 64 KiB
// as Postfix's resolvers and chasquid take).
const MaxPolicySize = 64 << 10

// MaxAge is the largest max_age a policy may give, in seconds (RFC 8461
// section 3.2: about one year).
const MaxAge = 31557600

// Policy is a parsed policy file.
type Policy struct {
	// Mode is the policy's mode.
	Mode Mode
	// MX are the "mx" patterns, lower case, without a final dot: a host
	// name, or "*." and a domain for any one label in front of it.
	MX []string
	// MaxAge is how long the policy may be cached (max_age).
	MaxAge time.Duration
}

// ParsePolicy parses a policy file (RFC 8461 section 3.2): "key: value"
// lines ending in CRLF or LF; version must be STSv1, mode one of
// enforce, testing, none, max_age a number of seconds up to MaxAge, and
// at least one mx unless the mode is none. Unknown keys are ignored.
// It returns an error naming the first fault.
func ParsePolicy(r io.Reader) (*Policy, error) {
	cr := &countReader{r: io.LimitReader(r, MaxPolicySize+1)}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 0, 1024), MaxPolicySize+1)
	p := &Policy{}
	var version, mode, age bool
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("policy line %q is not key: value", clip(line))
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch ascii.Lower(k) {
		case "version":
			if v != "STSv1" || version {
				return nil, fmt.Errorf("policy version %q (want STSv1, once)", clip(v))
			}
			version = true
		case "mode":
			if mode {
				return nil, errors.New("policy mode given twice")
			}
			m, err := parseMode(v)
			if err != nil {
				return nil, err
			}
			p.Mode, mode = m, true
		case "max_age":
			if age {
				return nil, errors.New("policy max_age given twice")
			}
			s, err := strconv.ParseUint(v, 10, 32)
			if err != nil || len(v) > 10 || s > MaxAge {
				return nil, fmt.Errorf("policy max_age %q (want 0 to %d seconds)", clip(v), MaxAge)
			}
			p.MaxAge, age = time.Duration(s)*time.Second, true
		case "mx":
			pat, err := parsePattern(v)
			if err != nil {
				return nil, err
			}
			p.MX = append(p.MX, pat)
		}
	}
	if err := sc.Err(); err != nil || cr.n > MaxPolicySize {
		if err == nil || errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("policy longer than %d octets", MaxPolicySize)
		}
		return nil, fmt.Errorf("reading the policy: %w", err)
	}
	switch {
	case !version:
		return nil, errors.New("policy without version: STSv1")
	case !mode:
		return nil, errors.New("policy without mode")
	case !age:
		return nil, errors.New("policy without max_age")
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return nil, errors.New("policy without mx")
	}
	return p, nil
}

// countReader counts the octets read through it.
type countReader struct {
	r io.Reader
	n int64
}

// Read implements io.Reader.
func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// parseMode parses a mode's name.
func parseMode(v string) (Mode, error) {
	for i, n := range modeNames {
		if v == n {
			return Mode(i), nil
		}
	}
	return ModeNone, fmt.Errorf("policy mode %q (want enforce, testing or none)", clip(v))
}

// parsePattern checks an mx pattern: a host name of letters, digits,
// hyphens and dots, or "*." and one (RFC 8461 section 3.2).
func parsePattern(v string) (string, error) {
	p := ascii.Lower(strings.TrimSuffix(v, "."))
	name := strings.TrimPrefix(p, "*.")
	if name == "" || strings.Contains("."+name+".", "..") || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
		return "", fmt.Errorf("policy mx pattern %q is not a host name or *.domain", clip(v))
	}
	return p, nil
}

// Match reports whether the MX host name host matches one of the
// policy's mx patterns (RFC 8461 section 4.1): equal, ASCII case
// ignored, or for "*.domain" one label followed by domain. host is an
// A-label name, with or without the final dot.
func (p *Policy) Match(host string) bool {
	h := ascii.Lower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			if i := strings.IndexByte(h, '.'); i > 0 && h[i+1:] == rest {
				return true
			}
		} else if h == pat {
			return true
		}
	}
	return false
}

// String returns the policy as "mode, max_age Ns, mx a b".
func (p *Policy) String() string {
	return fmt.Sprintf("mode %s, max_age %ds, mx %s", p.Mode, int64(p.MaxAge/time.Second), strings.Join(p.MX, " "))
}

// ParseTXT returns the id of a domain's "_mta-sts" TXT records (RFC 8461
// section 3.1): the records that begin with "v=STSv1;" must be exactly
// one, with an id of 1 to 32 letters and digits. It returns an error
// otherwise, which means the domain has no policy on offer.
func ParseTXT(records []string) (string, error) {
	var ours []string
	for _, r := range records {
		if strings.HasPrefix(r, "v=STSv1;") || r == "v=STSv1" {
			ours = append(ours, r)
		}
	}
	if len(ours) != 1 {
		return "", fmt.Errorf("%d MTA-STS TXT records (want 1)", len(ours))
	}
	id := ""
	for _, f := range strings.Split(ours[0], ";")[1:] {
		f = strings.Trim(f, " \t")
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return "", fmt.Errorf("MTA-STS TXT field %q is not key=value", clip(f))
		}
		if k == "id" {
			if id != "" || v == "" || len(v) > 32 || strings.Trim(ascii.Lower(v), "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
				return "", fmt.Errorf("MTA-STS TXT id %q (want 1 to 32 letters and digits, once)", clip(v))
			}
			id = v
		}
	}
	if id == "" {
		return "", errors.New("MTA-STS TXT record without id")
	}
	return id, nil
}

// URL returns the address of domain's policy file.
func URL(domain string) string {
	return "https://mta-sts." + strings.TrimSuffix(domain, ".") + "/.well-known/mta-sts.txt"
}

// Fetch gets and parses the policy of domain (an A-label name) with c
// (RFC 8461 section 3.3): over HTTPS, whose certificate c verifies for
// mta-sts.<domain>; a redirect is refused, as is a status other than 200,
// a media type other than text/plain, or a body over MaxPolicySize. c's
// CheckRedirect is replaced for the request. It returns an error naming
// the fault.
func Fetch(ctx context.Context, c *http.Client, domain string) (*Policy, error) {
	u := URL(domain)
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error {
		return errors.New("redirected (RFC 8461 section 3.3: redirects are not followed)")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := cc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: HTTP status %d (want 200)", u, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("fetching %s: Content-Type %q (want text/plain)", u, clip(resp.Header.Get("Content-Type")))
	}
	p, err := ParsePolicy(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return p, nil
}

// clip cuts s to 64 octets for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
