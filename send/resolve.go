package send

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/ascii"
	"github.com/smtp-stdio/smtp-stdio/domain"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// Resolver answers the DNS questions of MX delivery. *net.Resolver is
// one; NewResolver makes one that asks a given server.
type Resolver interface {
	// LookupMX returns the MX records of name (RFC 5321 section 5.1).
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	// LookupNetIP returns the addresses (A and AAAA for network "ip")
	// of host.
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	// LookupTXT returns the TXT records of name (MTA-STS, RFC 8461
	// section 3.1).
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// NewResolver returns the resolver of MX delivery: Go's own DNS client
// (never the C library's), asking server ("host:port", SMTP_SEND_DNS)
// instead of the servers in /etc/resolv.conf when server is not "".
func NewResolver(server string) *net.Resolver {
	r := &net.Resolver{PreferGo: true}
	if server != "" {
		var d net.Dialer
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		}
	}
	return r
}

// maxMXHosts is the most MX hosts of a destination tried in one attempt,
// as chasquid and Postfix (smtp_mx_address_limit 5) cap them: a domain
// with more is served by its first ones.
const maxMXHosts = 5

// MXHost is one mail exchanger of a destination, in the order tried.
type MXHost struct {
	// Name is the host's name from the MX record (canonical, without the
	// root dot), the domain itself for an implicit MX, or the host of a
	// bracketed route.
	Name string
	// Pref is the MX preference (RFC 5321 section 5.1: lower first).
	Pref uint16
	// Implicit is true for a domain without MX records, whose own
	// address records are its implicit MX (RFC 5321 section 5.1).
	Implicit bool
	// Addrs are the host's addresses, in the order tried.
	Addrs []netip.Addr
	// Err is the error of looking its addresses up, if that failed.
	Err error
	// DANE describes the host's DANE records for --explain, "" when DANE
	// was not asked.
	DANE string
}

// destination is where the mail for a group of recipients goes: the
// hosts to try, in order, or why there are none.
type destination struct {
	// Hosts are the MX hosts (or the one bracketed host), in order.
	Hosts []MXHost
	// Fail is set when the mail cannot go anywhere: a permanent failure
	// (null MX, no such domain, a loop to ourselves) or a temporary one
	// (the DNS failed).
	Fail *Failure
}

// lookupDestination finds the hosts of route r for a recipient in the
// domain dom (canonical). self is our own name (SMTP_HOSTNAME): an MX
// host of that name and every one less preferred are dropped, as Postfix
// does (smtp_find_self), so that we never send mail to ourselves. DNS
// failures other than "not found" defer (4.4.3), never bounce.
func lookupDestination(ctx context.Context, res Resolver, r route.Route, dom, self string) destination {
	if r.Literal {
		h := MXHost{Name: r.Host}
		if ip, err := netip.ParseAddr(r.Host); err == nil {
			h.Addrs = []netip.Addr{ip.Unmap()}
			return destination{Hosts: []MXHost{h}}
		}
		addrs, err := res.LookupNetIP(ctx, "ip", fqdn(r.Host))
		if err != nil || len(addrs) == 0 {
			// A route names this host: it is our configuration, not the
			// recipient, that fails, so the mail waits.
			return destination{Fail: dnsFailure(fmt.Sprintf("route's host %s", r.Host), err, "4.4.3")}
		}
		h.Addrs = unmap(addrs)
		return destination{Hosts: []MXHost{h}}
	}
	name := dom
	if r.Host != "" {
		name = r.Host
	} else if strings.HasPrefix(dom, "[") {
		// An address literal (RFC 5321 section 4.1.3): that address, no
		// DNS at all.
		ip, err := addressLiteral(dom)
		if err != nil {
			return destination{Fail: localFailure("", "5.1.2", err.Error())}
		}
		return destination{Hosts: []MXHost{{Name: dom, Implicit: true, Addrs: []netip.Addr{ip}}}}
	}
	mxs, err := res.LookupMX(ctx, fqdn(name))
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		// No MX records (NODATA), or no such domain (NXDOMAIN): Go
		// tells them apart for neither, so the address lookup decides.
		addrs, err := res.LookupNetIP(ctx, "ip", fqdn(name))
		if err != nil || len(addrs) == 0 {
			return destination{Fail: dnsFailure(fmt.Sprintf("domain %s has no MX and no address records", name), err, "5.1.2")}
		}
		return destination{Hosts: []MXHost{{Name: name, Implicit: true, Addrs: unmap(addrs)}}}
	case err != nil:
		return destination{Fail: dnsFailure("MX lookup of "+name, err, "4.4.3")}
	}
	// RFC 7505 section 3: a single MX record "0 ." (Go returns it with
	// no error) says the domain takes no mail; so does OpenSMTPD's
	// "localhost" in its place.
	if len(mxs) == 1 && (mxs[0].Host == "." || ascii.Lower(mxs[0].Host) == "localhost" || ascii.Lower(mxs[0].Host) == "localhost.") {
		return destination{Fail: &Failure{Stage: StageLocal, Code: 556, Enhanced: "5.1.10",
			Text: "domain " + name + " does not accept mail (null MX, RFC 7505)"}}
	}
	// Go's resolver shuffles records of equal preference and sorts by
	// preference; a stable sort keeps that shuffle and does not depend on
	// it for the order.
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	var hosts []MXHost
	selfPref, loops := uint16(0), false
	for _, mx := range mxs {
		h, err := domain.Canonical(mx.Host)
		if err != nil || mx.Host == "." {
			continue // a "." among other records, or a name with no form
		}
		if self != "" && h == self && (!loops || mx.Pref < selfPref) {
			selfPref, loops = mx.Pref, true
		}
		hosts = append(hosts, MXHost{Name: h, Pref: mx.Pref})
	}
	if loops {
		// We are one of the MX hosts: only the more preferred ones may
		// take the mail (RFC 5321 section 5.1).
		hosts = slices.DeleteFunc(hosts, func(h MXHost) bool { return h.Pref >= selfPref })
		if len(hosts) == 0 {
			return destination{Fail: &Failure{Stage: StageLocal, Code: 554, Enhanced: "5.4.6",
				Text: "mail for " + name + " loops back to myself (" + self + " is its best MX host)"}}
		}
	}
	if len(hosts) == 0 {
		return destination{Fail: localFailure("", "5.1.2", "domain "+name+" has no usable MX record")}
	}
	hosts = hosts[:min(len(hosts), maxMXHosts)]
	var lastErr error
	usable := false
	for i := range hosts {
		addrs, err := res.LookupNetIP(ctx, "ip", fqdn(hosts[i].Name))
		hosts[i].Addrs, hosts[i].Err = unmap(addrs), err
		if len(addrs) > 0 {
			usable = true
		} else if err != nil && (lastErr == nil || !isNotFound(err)) {
			lastErr = err // a temporary error outranks "not found"
		}
	}
	if !usable {
		code := "5.4.4" // RFC 3463: unable to route
		if lastErr != nil && !isNotFound(lastErr) {
			code = "4.4.3"
		}
		return destination{Hosts: hosts, Fail: dnsFailure("no MX host of "+name+" has an address", lastErr, code)}
	}
	return destination{Hosts: hosts}
}

// dropLoopback takes the loopback and unspecified addresses (127/8, ::1,
// 0.0.0.0, ::) out of a destination of route r found in the recipient
// domain's own DNS: a domain whose MX points at them would have us send
// its mail to this machine, a loop or a way into local services, which
// Postfix refuses as "mail loops back to myself". A route that names a
// host is the administrator's, and keeps them. A destination left
// without an address fails with 554 5.4.6.
func dropLoopback(d *destination, r route.Route, dom string) {
	if d.Fail != nil || r.Host != "" || r.Literal {
		return
	}
	usable := false
	for i := range d.Hosts {
		h := &d.Hosts[i]
		kept := h.Addrs[:0:0]
		var dropped []string
		for _, a := range h.Addrs {
			if a.IsLoopback() || a.IsUnspecified() {
				dropped = append(dropped, a.String())
			} else {
				kept = append(kept, a)
			}
		}
		if len(dropped) > 0 {
			h.Err = fmt.Errorf("loopback or unspecified addresses not used: %s", strings.Join(dropped, ", "))
		}
		h.Addrs = kept
		usable = usable || len(kept) > 0
	}
	if !usable {
		d.Fail = &Failure{Stage: StageLocal, Code: 554, Enhanced: "5.4.6",
			Text: "the MX hosts of " + dom + " are on loopback addresses: mail would loop back to this machine"}
	}
}

// addressLiteral parses "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321
// section 4.1.3).
func addressLiteral(d string) (netip.Addr, error) {
	in, ok := strings.CutSuffix(strings.TrimPrefix(d, "["), "]")
	v6, isV6 := strings.CutPrefix(in, "ipv6:") // canonical form: lower case
	ip, err := netip.ParseAddr(v6)
	if !ok || err != nil || isV6 != ip.Is6() || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("bad address literal %s", d)
	}
	return ip.Unmap(), nil
}

// fqdn returns name with the root dot, so that no search domain of
// /etc/resolv.conf is ever appended to it.
func fqdn(name string) string { return strings.TrimSuffix(name, ".") + "." }

// dnsFailure is the failure of a lookup: what failed, the error, and the
// RFC 3463 code to use unless the error is a temporary one (then 4.4.3:
// directory server failure).
func dnsFailure(what string, err error, code string) *Failure {
	text := what
	if err != nil {
		text += ": " + dnsErrText(err)
		if code[0] == '5' && !isNotFound(err) {
			code = "4.4.3"
		}
	} else {
		text += ": no address"
	}
	return &Failure{Stage: StageLocal, Enhanced: code, Text: oneLine(text), Err: err}
}

// dnsErrText is the text of a lookup's error: for a *net.DNSError the
// name and the error without the server, which Go takes from
// /etc/resolv.conf even when another server was asked.
func dnsErrText(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.Name + ": " + de.Err
	}
	return err.Error()
}

// isNotFound reports whether err says the name or its records do not
// exist (NXDOMAIN or NODATA), as opposed to a failure to find out.
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// unmap turns IPv4-mapped IPv6 addresses into IPv4 ones.
func unmap(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap())
	}
	return out
}

// hostsOf returns the smarthost-style host list of a destination: one
// entry per address of each MX host, in order, dialled on port.
// mxHostList is the hostList of d's addresses (hostsOf), each with its
// host's MX preference, for spreadTier.
func mxHostList(d destination, port int) *hostList {
	hl := newHostList(hostsOf(d, port))
	for _, h := range d.Hosts {
		for range h.Addrs {
			hl.prefs = append(hl.prefs, h.Pref)
		}
	}
	return hl
}

func hostsOf(d destination, port int) []Host {
	var hs []Host
	for _, h := range d.Hosts {
		for _, a := range h.Addrs {
			hs = append(hs, Host{Addr: net.JoinHostPort(a.String(), strconv.Itoa(port)), Name: h.Name})
		}
	}
	return hs
}
