package send

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/dane"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// daneHost is what DNSSEC says of one MX host's TLS (RFC 7672 section
// 2.2): its usable TLSA records, that it has TLSA records but none
// usable (then TLS is required but not authenticated), or that the TLSA
// lookup failed validation (then the host is not used).
type daneHost struct {
	recs  []dane.TLSA
	bogus error
	// base is the CNAME-expanded name whose TLSA records these are,
	// "" when they are the MX host name's own (RFC 7672 section 2.2.2).
	base string
}

// policy returns the TLS policy DANE gives the host: verify (by its TLSA
// records) or encrypt.
func (d *daneHost) policy() route.TLSPolicy {
	if len(d.recs) > 0 {
		return route.TLSVerify
	}
	return route.TLSEncrypt
}

// describe says it in words, for --explain.
func (d *daneHost) describe() string {
	switch {
	case d.bogus != nil:
		return "DANE: TLSA lookup failed validation, host not used (" + d.bogus.Error() + ")"
	case len(d.recs) == 0:
		return "DANE: TLSA records, none usable: TLS required, not authenticated"
	}
	var rs []string
	for _, r := range d.recs {
		rs = append(rs, r.String())
	}
	at := ""
	if d.base != "" {
		at = " (at " + d.base + ", the CNAME-expanded name)"
	}
	return "DANE: TLSA " + strings.Join(rs, "; ") + at
}

// newDANE returns the DNSSEC resolver of DANE, or nil when DANE is off:
// the AD bit is believed only from a resolver on loopback named by
// SMTP_SEND_DNS (dane.Trusted).
func newDANE(cfg *Config) *dane.Resolver {
	if cfg.DNS == "" || !dane.Trusted(cfg.DNS) {
		return nil
	}
	return &dane.Resolver{Server: cfg.DNS}
}

// applyDANE looks up, through a validating resolver, whether the MX
// hosts of destination d (of route r, whose MX records are name's) are
// authenticated by DANE (RFC 7672): only when the MX records (or, for an
// implicit MX, the address records) are DNSSEC-validated, and for each
// host whose TLSA records at _port._tcp are. It returns the hosts with a
// DANE policy, by name; none when r names its own TLS policy or a
// bracketed host, or DANE is off. A DNS failure of the MX records' check
// leaves DANE out, as for an unsigned zone; a TLSA lookup that fails
// validation makes its host unusable.
func applyDANE(ctx context.Context, dr *dane.Resolver, r route.Route, name string, port int, d *destination, log *slog.Logger) map[string]*daneHost {
	if dr == nil || r.TLS != route.TLSDefault || r.Literal || d.Fail != nil || len(d.Hosts) == 0 {
		return nil
	}
	qtype := "MX"
	if d.Hosts[0].Implicit {
		qtype = "A"
	}
	secure, err := dr.Secure(ctx, fqdn(name), qtype)
	if err != nil || !secure {
		if err != nil {
			log.Debug("DANE: MX records not validated", "domain", name, "err", err)
		}
		return nil
	}
	out := map[string]*daneHost{}
	seen := map[string]bool{}
	for _, h := range d.Hosts {
		if seen[h.Name] {
			continue // another address of the same host
		}
		seen[h.Name] = true
		if dh := hostTLSA(ctx, dr, h.Name, port); dh != nil {
			out[h.Name] = dh
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// hostTLSA looks up the TLSA records of MX host name (RFC 7672 section
// 2.2.2): when its address records come through a CNAME chain that
// validated, those of the expanded name (the TLSA base domain) first,
// and when there are none there, those of name itself; otherwise only
// name's. It returns nil when DANE does not speak for the host: no
// validated records, or the resolver unreachable.
func hostTLSA(ctx context.Context, dr *dane.Resolver, name string, port int) *daneHost {
	bases := []string{""}
	final, secure, aliased, err := dr.Expand(ctx, name)
	if errors.Is(err, dane.ErrBogus) {
		return &daneHost{bogus: err}
	}
	if err == nil && secure && aliased {
		bases = []string{final, ""}
	}
	for _, base := range bases {
		at := name
		if base != "" {
			at = base
		}
		recs, ad, err := dr.LookupTLSA(ctx, at, port)
		switch {
		case errors.Is(err, dane.ErrBogus):
			return &daneHost{bogus: err}
		case err != nil, !ad, len(recs) == 0:
			// Not signed, no records, or the resolver unreachable:
			// the next name, if any.
			continue
		}
		dh := &daneHost{base: base}
		for _, rec := range recs {
			if rec.Usable() {
				dh.recs = append(dh.recs, rec)
			}
		}
		return dh
	}
	return nil
}

// daneWhy says where a DANE policy came from, for logs and --explain.
func daneWhy(dr *dane.Resolver, hosts map[string]*daneHost) string {
	return fmt.Sprintf("DANE (RFC 7672): DNSSEC-validated TLSA records of %d MX host(s), from the validating resolver %s; it takes precedence over MTA-STS", len(hosts), dr.Server)
}
