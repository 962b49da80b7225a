package send

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/smtp-stdio/smtp-stdio/mtasts"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// stsFetchTimeout bounds the fetch of one MTA-STS policy, connection
// included (RFC 8461 section 3.3 asks for a timeout, without a figure).
const stsFetchTimeout = 30 * time.Second

// newSTSGetter returns the MTA-STS getter of MX delivery: TXT records from
// res, policies over HTTPS to the addresses res gives for
// mta-sts.<domain>, dialled with dial (so SMTP_SEND_DNS applies to the
// fetch too), verified against the system's roots; cached in cfg's
// MTASTSCache unless readOnly.
func newSTSGetter(cfg *Config, res Resolver, dial func(ctx context.Context, network, addr string) (net.Conn, error), readOnly bool) *mtasts.Getter {
	tr := &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			addrs, err := res.LookupNetIP(ctx, "ip", fqdn(host))
			if err != nil {
				return nil, err
			}
			errs := []error{fmt.Errorf("%s has no address", host)}
			for _, a := range addrs {
				c, err := dial(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
		DisableKeepAlives: true,
	}
	return &mtasts.Getter{
		LookupTXT: res.LookupTXT,
		Client:    &http.Client{Transport: tr, Timeout: stsFetchTimeout},
		Cache:     &mtasts.Cache{Dir: cfg.MTASTSCache},
		ReadOnly:  readOnly,
	}
}

// stsPlan is what the TLS policy of a destination is, and why.
type stsPlan struct {
	tls     route.TLSPolicy
	why     string
	sts     *mtasts.Result // nil when MTA-STS was not asked
	skipped []string       // MX hosts left out by an enforce policy
}

// applyPolicy decides the TLS policy of a destination for route r and
// domain dom, and under an MTA-STS policy in enforce mode (RFC 8461
// section 4) keeps only the MX hosts its mx patterns match, each then
// needing TLS with a certificate valid for its name (the verify policy).
// MTA-STS is asked only for a route to the recipient domain's own MX
// hosts with no tls= option: a route that names a host or a policy is
// the administrator's decision. A destination left without hosts fails
// temporarily (4.7.5): the policy may be fixed, or the MX records.
func applyPolicy(ctx context.Context, g *mtasts.Getter, r route.Route, dom string, d *destination, log *slog.Logger) stsPlan {
	pol, why := policyOf(r)
	p := stsPlan{tls: pol, why: why}
	if g == nil || r.TLS != route.TLSDefault || r.Host != "" || r.Literal || dom == "" {
		return p
	}
	res := g.Get(ctx, dom)
	p.sts = &res
	if res.Err != nil {
		log.Debug("MTA-STS", "domain", dom, "source", res.Source, "err", res.Err)
	}
	if res.Policy == nil || res.Policy.Mode == mtasts.ModeNone {
		return p
	}
	var kept []MXHost
	for _, h := range d.Hosts {
		if res.Policy.Match(h.Name) {
			kept = append(kept, h)
		} else {
			p.skipped = append(p.skipped, h.Name)
		}
	}
	if res.Policy.Mode == mtasts.ModeTesting {
		if len(p.skipped) > 0 {
			log.Warn("MTA-STS testing: MX hosts the policy does not name (delivered to all the same)",
				"domain", dom, "hosts", p.skipped, "policy_id", res.ID)
		}
		p.why += fmt.Sprintf("; MTA-STS policy of %s in testing mode (id %s, %s): not enforced", dom, res.ID, res.Source)
		return p
	}
	p.tls = route.TLSVerify
	p.why = fmt.Sprintf("MTA-STS policy of %s, mode enforce (id %s, %s)", dom, res.ID, res.Source)
	if len(p.skipped) > 0 {
		log.Warn("MTA-STS enforce: MX hosts the policy does not name are not used", "domain", dom, "hosts", p.skipped, "policy_id", res.ID)
	}
	d.Hosts = kept
	if len(kept) == 0 && d.Fail == nil {
		d.Fail = &Failure{Stage: StageLocal, Enhanced: "4.7.5",
			Text: fmt.Sprintf("no MX host of %s matches its MTA-STS policy (mx %v, id %s)", dom, res.Policy.MX, res.ID)}
	}
	return p
}
