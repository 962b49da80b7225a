package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// Entry is a policy as cached: RFC 8461 section 5.1 has a sender keep a
// policy until its max_age runs out, and fetch it again when the TXT
// record's id changes.
type Entry struct {
	// Domain is the policy domain (an A-label name, lower case).
	Domain string `json:"domain"`
	// ID is the TXT record's id when the policy was fetched.
	ID string `json:"id"`
	// Fetched is when it was fetched.
	Fetched time.Time `json:"fetched"`
	// Mode, MX and MaxAge are the policy's (MaxAge in seconds).
	Mode   string   `json:"mode"`
	MX     []string `json:"mx"`
	MaxAge int64    `json:"max_age"`
}

// Expires returns when the entry stops being valid: Fetched plus max_age.
func (e *Entry) Expires() time.Time { return e.Fetched.Add(time.Duration(e.MaxAge) * time.Second) }

// Policy returns the cached policy, or an error for an entry that does
// not hold a valid one (a damaged file).
func (e *Entry) Policy() (*Policy, error) {
	m, err := parseMode(e.Mode)
	if err != nil {
		return nil, err
	}
	p := &Policy{Mode: m, MaxAge: time.Duration(e.MaxAge) * time.Second}
	for _, x := range e.MX {
		pat, err := parsePattern(x)
		if err != nil {
			return nil, err
		}
		p.MX = append(p.MX, pat)
	}
	if e.MaxAge < 0 || e.MaxAge > MaxAge || len(p.MX) == 0 && m != ModeNone {
		return nil, errors.New("cached policy is not valid")
	}
	return p, nil
}

// Cache keeps one file per policy domain in Dir (made with mode 0700 on
// the first Put), each replaced atomically. The zero Dir keeps nothing.
type Cache struct {
	Dir string
}

// path returns the file of domain, or an error for a name that could
// leave the directory.
func (c *Cache) path(domain string) (string, error) {
	if domain == "" || strings.HasPrefix(domain, ".") || strings.Trim(domain, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
		return "", fmt.Errorf("mtasts: no cache file for domain %q", clip(domain))
	}
	return filepath.Join(c.Dir, domain), nil
}

// Get returns the cached entry of domain, or nil and no error when there
// is none. A file that cannot be read or parsed is an error.
func (c *Cache) Get(domain string) (*Entry, error) {
	if c == nil || c.Dir == "" {
		return nil, nil
	}
	p, err := c.path(domain)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil || e.Domain != domain {
		return nil, fmt.Errorf("mtasts: cache file %s is damaged", p)
	}
	return &e, nil
}

// Put stores e durably (renameio: a temporary file, fsync, rename).
func (c *Cache) Put(e *Entry) error {
	if c == nil || c.Dir == "" {
		return nil
	}
	p, err := c.path(e.Domain)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return renameio.WriteFile(p, append(b, '\n'), 0o600)
}

// Result is the policy in force for a domain, and where it came from.
type Result struct {
	// Policy is nil when the domain has no policy in force.
	Policy *Policy
	// ID is the policy's id (from its TXT record).
	ID string
	// Source says where the policy came from, or why there is none.
	Source string
	// Err is a failure met on the way (TXT lookup, fetch, cache), also
	// when a cached policy was used instead.
	Err error
}

// Getter finds the policy in force for a domain, as RFC 8461 section 5
// has a sender do it.
type Getter struct {
	// LookupTXT returns the TXT records of a name.
	LookupTXT func(ctx context.Context, name string) ([]string, error)
	// Client fetches policies (see Fetch).
	Client *http.Client
	// Cache keeps policies across runs; nil keeps none.
	Cache *Cache
	// ReadOnly leaves the cache unchanged (smtp-send --explain).
	ReadOnly bool
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Get returns the policy in force for domain (an A-label name):
//
//   - a cached policy still within its max_age whose id the TXT record
//     still gives, without fetching;
//   - otherwise, when the TXT record announces a policy (ParseTXT), the
//     policy fetched now, which replaces the cached one;
//   - a cached policy still within its max_age when the TXT record
//     cannot be had or the fetch fails (RFC 8461 section 5.1: a failure
//     to fetch must not undo a policy in force);
//   - otherwise none.
func (g *Getter) Get(ctx context.Context, domain string) Result {
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	t := now()
	cached, cerr := g.Cache.Get(domain)
	var cp *Policy
	if cached != nil && t.Before(cached.Expires()) {
		if p, err := cached.Policy(); err == nil {
			cp = p
		} else {
			cerr = err
		}
	}
	fromCache := func(why string, err error) Result {
		return Result{Policy: cp, ID: cached.ID, Err: err,
			Source: fmt.Sprintf("cached, fetched %s, expires %s (%s)",
				cached.Fetched.UTC().Format(time.RFC3339), cached.Expires().UTC().Format(time.RFC3339), why)}
	}
	txts, err := g.LookupTXT(ctx, "_mta-sts."+domain+".")
	id := ""
	if err == nil {
		id, err = ParseTXT(txts)
	}
	if err != nil {
		if cp != nil {
			return fromCache("no usable TXT record now", err)
		}
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return Result{Source: "no policy (no _mta-sts TXT record)", Err: cerr}
		}
		return Result{Source: "no policy: no usable _mta-sts TXT record", Err: errors.Join(err, cerr)}
	}
	if cp != nil && cached.ID == id {
		return fromCache("TXT id unchanged", nil)
	}
	p, err := Fetch(ctx, g.Client, domain)
	if err != nil {
		if cp != nil {
			return fromCache("the fetch of the new policy failed", err)
		}
		return Result{ID: id, Source: "no policy: the fetch failed", Err: err}
	}
	r := Result{Policy: p, ID: id, Source: "fetched from " + URL(domain)}
	if !g.ReadOnly {
		pats := append([]string(nil), p.MX...)
		e := &Entry{Domain: domain, ID: id, Fetched: t, Mode: p.Mode.String(), MX: pats, MaxAge: int64(p.MaxAge / time.Second)}
		if err := g.Cache.Put(e); err != nil {
			r.Err = fmt.Errorf("caching the policy: %w", err)
		}
	}
	return r
}
