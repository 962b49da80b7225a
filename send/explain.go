package send

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/domain"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// Plan is how a run would deliver to one recipient, found without
// sending anything (smtp-send --explain): the route and why, the hosts
// in the order tried, and the TLS policy and where it came from.
type Plan struct {
	// Rcpt is the recipient as given.
	Rcpt string
	// Smarthost is true when the recipient goes to Config.Smarthosts.
	Smarthost bool
	// Route is the route (when not Smarthost).
	Route route.Route
	// Why says which table line, or which rule, chose the route.
	Why string
	// Target says where the route leads, in words.
	Target string
	// Hosts are the MX hosts (or the bracketed host) in the order tried,
	// with their addresses; empty for the smarthost and error routes.
	Hosts []MXHost
	// Port is the TCP port the hosts are dialled on.
	Port int
	// TLS and TLSWhy are the TLS policy in force and its source.
	TLS, TLSWhy string
	// STS is the MTA-STS policy of the domain and its source, "" when
	// none was asked for.
	STS string
	// Outcome is what a run would do: deliver, bounce at once or defer.
	Outcome string
	// Limit is the most connections a run makes at once to the
	// destination (Config.DestinationConcurrency), for a route by MX or
	// to a bracketed host whose outcome is delivery; 0 otherwise (the
	// smarthost takes every connection).
	Limit int
}

// Explain returns the plan for recipient rcpt under cfg, asking res the
// DNS questions a run would ask. It sends nothing and writes nothing.
func Explain(ctx context.Context, cfg Config, res Resolver, rcpt string) Plan {
	cfg = cfg.withDefaults()
	p := Plan{Rcpt: rcpt}
	r, toSmarthost := cfg.Route(rcpt)
	switch {
	case r.Line > 0:
		p.Why = fmt.Sprintf("%s line %d: pattern %s", r.File, r.Line, r.Pattern)
	case cfg.Routes != nil:
		p.Why = "no line of " + cfg.Routes.File() + " matches"
	default:
		p.Why = "no route table (SMTP_SEND_ROUTES)"
	}
	if toSmarthost {
		p.Smarthost = true
		var hs []string
		for _, h := range cfg.Smarthosts {
			hs = append(hs, h.Addr)
		}
		p.Target = "smarthost " + strings.Join(hs, ", ") + " (SMTP_SMARTHOST, tried in order)"
		p.Why += "; SMTP_SMARTHOST is set"
		p.TLS, p.TLSWhy = cfg.TLS.String(), "SMTP_SMARTHOST_TLS"
		if cfg.TLS != TLSNone {
			p.TLS += ", certificate verified"
		}
		p.Outcome = "deliver to the first smarthost that takes it"
		return p
	}
	p.Route = r
	if r.Kind == route.Error {
		p.Target = "refused by the route table"
		p.Outcome = "bounce at once: " + r.Status + " " + r.Text
		return p
	}
	if r.Kind.Local() {
		p.Target, p.Outcome = localTarget(r, rcpt)
		if o := cfg.explainLocal(r, rcpt); o != "" {
			p.Outcome = o
		}
		return p
	}
	if r.Line == 0 {
		p.Why += " and no SMTP_SMARTHOST: the domain's MX hosts"
	}
	raw, _ := domain.Of(rcpt)
	dom, _ := domain.Canonical(raw)
	switch {
	case r.Literal:
		p.Target = r.Host + " itself, no MX lookup (" + r.Nexthop() + ")"
	case r.Host != "":
		p.Target = "the MX hosts of " + r.Host + " (" + r.Nexthop() + ")"
	default:
		p.Target = "the MX hosts of " + dom + " (" + r.Nexthop() + ")"
	}
	p.Port = r.Port
	if p.Port == 0 {
		p.Port = cfg.MXPort
	}
	pol, why := policyOf(r)
	p.TLS, p.TLSWhy = pol.String(), why
	if dom == "" && r.Host == "" {
		p.Outcome = "bounce at once: 5.1.2 recipient has no domain to look up"
		return p
	}
	self, _ := domain.Canonical(cfg.Hostname)
	d := lookupDestination(ctx, res, r, dom, self)
	if !cfg.MXLoopback {
		dropLoopback(&d, r, dom)
	}
	discard := slog.New(slog.DiscardHandler)
	dr := newDANE(&cfg)
	if daneHosts := applyDANE(ctx, dr, r, mxName(r, dom), p.Port, &d, discard); daneHosts != nil {
		p.TLS, p.TLSWhy = "dane", daneWhy(dr, daneHosts)
		p.STS = "not consulted: DANE takes precedence (RFC 8461 section 2)"
		for i := range d.Hosts {
			if dh := daneHosts[d.Hosts[i].Name]; dh != nil {
				d.Hosts[i].DANE = dh.describe()
			} else {
				d.Hosts[i].DANE = "no DANE: opportunistic TLS"
			}
		}
	} else if d.Fail == nil {
		var dial net.Dialer
		g := newSTSGetter(&cfg, res, dial.DialContext, true)
		plan := applyPolicy(ctx, g, r, dom, &d, discard)
		p.TLS, p.TLSWhy = plan.tls.String(), plan.why
		if s := plan.sts; s != nil {
			p.STS = s.Source
			if s.Policy != nil {
				p.STS = fmt.Sprintf("id %s, %s; %s", s.ID, s.Policy, s.Source)
			}
			if s.Err != nil {
				p.STS += " (" + oneLine(dnsErrText(s.Err)) + ")"
			}
			if len(plan.skipped) > 0 {
				p.STS += "; not named by it: " + strings.Join(plan.skipped, " ")
			}
		}
	}
	p.Hosts = d.Hosts
	switch {
	case d.Fail == nil:
		p.Outcome = "deliver to the first host that takes it, in the order above"
		p.Limit = cfg.DestinationConcurrency
	case d.Fail.Temporary():
		p.Outcome = "defer (try again later): " + failureText(d.Fail)
	default:
		p.Outcome = "bounce at once: " + failureText(d.Fail)
	}
	return p
}

// failureText is "code enhanced text" of a failure without its stage.
func failureText(f *Failure) string {
	var b strings.Builder
	if f.Code != 0 {
		b.WriteString(strconv.Itoa(f.Code) + " ")
	}
	if f.Enhanced != "" {
		b.WriteString(f.Enhanced + " ")
	}
	b.WriteString(f.Text)
	return b.String()
}

// WriteTo writes the plan as a few indented "key: value" lines after
// the recipient in angle brackets. It returns the bytes written and w's
// error.
func (p *Plan) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "<%s>\n", p.Rcpt)
	line := func(k, v string) { fmt.Fprintf(&b, "  %-8s %s\n", k+":", v) }
	if p.Smarthost {
		line("route", "smarthost")
	} else {
		line("route", p.Route.Nexthop())
	}
	line("why", p.Why)
	line("to", p.Target)
	for i, h := range p.Hosts {
		k := ""
		if i == 0 {
			k = "hosts"
		}
		var addrs []string
		for _, a := range h.Addrs {
			addrs = append(addrs, a.String())
		}
		desc := h.Name
		switch {
		case h.Implicit:
			desc += " (no MX records: the domain's own addresses, RFC 5321 5.1)"
		case !p.Route.Literal:
			desc = fmt.Sprintf("MX %d %s", h.Pref, h.Name)
		}
		switch {
		case len(addrs) > 0:
			desc += "  " + strings.Join(addrs, ", ")
		case h.Err != nil:
			desc += "  (no address: " + oneLine(dnsErrText(h.Err)) + ")"
		default:
			desc += "  (no address)"
		}
		if k == "" {
			fmt.Fprintf(&b, "  %-8s %s\n", "", desc)
		} else {
			line(k, desc)
		}
		if h.DANE != "" {
			fmt.Fprintf(&b, "  %-8s   %s\n", "", h.DANE)
		}
	}
	if p.Port != 0 {
		line("port", strconv.Itoa(p.Port))
	}
	if p.STS != "" {
		line("mta-sts", p.STS)
	}
	if p.TLS != "" {
		line("tls", p.TLS+" ("+p.TLSWhy+")")
	}
	if p.Limit > 0 {
		line("limit", fmt.Sprintf("%d connections at once to this destination (SMTP_SEND_DESTINATION_CONCURRENCY)", p.Limit))
	}
	line("outcome", p.Outcome)
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}
