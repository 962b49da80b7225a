package send

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/dnstest"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// names returns "name addr,addr" per host, for comparisons.
func names(d destination) string {
	var b strings.Builder
	for _, h := range d.Hosts {
		fmt.Fprintf(&b, "%s", h.Name)
		for _, a := range h.Addrs {
			fmt.Fprintf(&b, " %s", a)
		}
		b.WriteString("; ")
	}
	return b.String()
}

// lookupDestination against a real DNS server and Go's resolver: MX
// order, implicit MX, null MX, NXDOMAIN, SERVFAIL, hosts without
// addresses, loops to ourselves, bracketed and named routes.
func TestLookupDestination(t *testing.T) {
	dns := dnstest.Start(t,
		"order.test. MX 20 mx2.order.test.", "order.test. MX 10 mx1.order.test.", "order.test. MX 30 mx3.order.test.",
		"mx1.order.test. A 127.0.0.2", "mx1.order.test. AAAA ::1", "mx2.order.test. A 127.0.0.3",
		"mx3.order.test. A 127.0.0.4",
		"implicit.test. A 127.0.0.5", "implicit.test. TXT \"no MX here\"",
		"null.test. MX 0 .", "localhost.test. MX 0 localhost.",
		"noaddr.test. MX 10 gone.noaddr.test.",
		"broken.test. MX 10 mx.broken.test.",
		"self.test. MX 10 mx1.self.test.", "self.test. MX 20 me.test.", "self.test. MX 30 mx3.self.test.",
		"mx1.self.test. A 127.0.0.6", "mx3.self.test. A 127.0.0.7",
		"onlyself.test. MX 10 me.test.",
		"relay.test. A 127.0.0.8",
	)
	dns.ServFail("servfail.test")
	dns.ServFail("mx.broken.test")
	res := NewResolver(dns.Addr)
	ctx := context.Background()
	for _, tc := range []struct {
		dom   string
		r     route.Route
		hosts string
		fail  string // enhanced code, "" for none
	}{
		{"order.test", route.Route{}, "mx1.order.test ::1 127.0.0.2; mx2.order.test 127.0.0.3; mx3.order.test 127.0.0.4; ", ""},
		{"implicit.test", route.Route{}, "implicit.test 127.0.0.5; ", ""},
		{"null.test", route.Route{}, "", "5.1.10"},
		{"localhost.test", route.Route{}, "", "5.1.10"},
		{"nxdomain.test", route.Route{}, "", "5.1.2"},
		{"servfail.test", route.Route{}, "", "4.4.3"},
		{"noaddr.test", route.Route{}, "gone.noaddr.test; ", "5.4.4"},
		{"broken.test", route.Route{}, "mx.broken.test; ", "4.4.3"},
		{"self.test", route.Route{}, "mx1.self.test 127.0.0.6; ", ""},
		{"onlyself.test", route.Route{}, "", "5.4.6"},
		{"anything.test", route.Route{Host: "order.test"}, "mx1.order.test ::1 127.0.0.2; mx2.order.test 127.0.0.3; mx3.order.test 127.0.0.4; ", ""},
		{"anything.test", route.Route{Host: "relay.test", Literal: true}, "relay.test 127.0.0.8; ", ""},
		{"anything.test", route.Route{Host: "192.0.2.1", Literal: true}, "192.0.2.1 192.0.2.1; ", ""},
		{"anything.test", route.Route{Host: "missing.test", Literal: true}, "", "4.4.3"},
		{"[192.0.2.9]", route.Route{}, "[192.0.2.9] 192.0.2.9; ", ""},
		{"[ipv6:2001:db8::9]", route.Route{}, "[ipv6:2001:db8::9] 2001:db8::9; ", ""},
		{"[2001:db8::9]", route.Route{}, "", "5.1.2"},
		{"[ipv6:192.0.2.9]", route.Route{}, "", "5.1.2"},
		{"[192.0.2.9", route.Route{}, "", "5.1.2"},
	} {
		d := lookupDestination(ctx, res, tc.r, tc.dom, "me.test")
		got := ""
		if d.Fail != nil {
			got = d.Fail.Enhanced
		}
		// Go orders a host's addresses itself (RFC 6724): compare as sets.
		if got != tc.fail || !sameWords(names(d), tc.hosts) {
			t.Errorf("%s via %q: hosts %q, failure %v; want %q, %q", tc.dom, tc.r.Nexthop(), names(d), d.Fail, tc.hosts, tc.fail)
		}
		if d.Fail != nil && d.Fail.Temporary() != (tc.fail[0] == '4') {
			t.Errorf("%s: %v temporary %v", tc.dom, d.Fail, d.Fail.Temporary())
		}
	}
	if d := lookupDestination(ctx, res, route.Route{}, "null.test", ""); d.Fail.Code != 556 {
		t.Errorf("null MX: %v", d.Fail)
	}
}

// Equal preferences are tried in a random order: over 50 lookups more
// than one order shows up, and the preferred host is always first.
func TestEqualPreferenceShuffled(t *testing.T) {
	dns := dnstest.Start(t, "eq.test. MX 5 best.eq.test.", "best.eq.test. A 127.0.0.9")
	for i := 1; i <= 3; i++ {
		dns.Add(t, fmt.Sprintf("eq.test. MX 10 mx%d.eq.test.", i), fmt.Sprintf("mx%d.eq.test. A 127.0.1.%d", i, i))
	}
	res := NewResolver(dns.Addr)
	seen := map[string]bool{}
	for range 50 {
		d := lookupDestination(context.Background(), res, route.Route{}, "eq.test", "")
		if d.Fail != nil || len(d.Hosts) != 4 || d.Hosts[0].Name != "best.eq.test" {
			t.Fatalf("%s %v", names(d), d.Fail)
		}
		seen[names(d)] = true
	}
	if len(seen) < 2 {
		t.Errorf("one order in 50 lookups: %v", seen)
	}
}

// sameWords reports whether a and b have the same words in each
// "; "-separated part, in any order within a part.
func sameWords(a, b string) bool {
	pa, pb := strings.Split(a, "; "), strings.Split(b, "; ")
	if len(pa) != len(pb) {
		return false
	}
	for i := range pa {
		wa, wb := strings.Fields(pa[i]), strings.Fields(pb[i])
		if len(wa) != len(wb) || len(wa) > 0 && wa[0] != wb[0] {
			return false
		}
		for _, w := range wa {
			if !strings.Contains(" "+pb[i]+" ", " "+w+" ") {
				return false
			}
		}
	}
	return true
}

// MX addresses on loopback are left out unless allowed: a host with
// others keeps those, a domain with none left fails with 554 5.4.6; a
// route that names a host keeps them.
func TestDropLoopback(t *testing.T) {
	dns := dnstest.Start(t,
		"loop.test. MX 10 mx.loop.test.", "mx.loop.test. A 127.0.0.1", "mx.loop.test. AAAA ::1",
		"mixed.test. MX 10 a.mixed.test.", "mixed.test. MX 20 b.mixed.test.",
		"a.mixed.test. A 0.0.0.0", "b.mixed.test. A 192.0.2.7", "b.mixed.test. A 127.0.0.9")
	res := NewResolver(dns.Addr)
	ctx := context.Background()
	d := lookupDestination(ctx, res, route.Route{}, "loop.test", "")
	dropLoopback(&d, route.Route{}, "loop.test")
	if d.Fail == nil || d.Fail.Enhanced != "5.4.6" || d.Fail.Code != 554 || d.Fail.Temporary() {
		t.Errorf("loop.test: %v", d.Fail)
	}
	d = lookupDestination(ctx, res, route.Route{}, "mixed.test", "")
	dropLoopback(&d, route.Route{}, "mixed.test")
	if d.Fail != nil || names(d) != "a.mixed.test; b.mixed.test 192.0.2.7; " || d.Hosts[0].Err == nil {
		t.Errorf("mixed.test: %q %v", names(d), d.Fail)
	}
	r := route.Route{Host: "mx.loop.test"}
	d = lookupDestination(ctx, res, r, "any.test", "")
	dropLoopback(&d, r, "any.test")
	// mx.loop.test has no MX of its own: its addresses are its implicit MX.
	if d.Fail != nil || len(d.Hosts) != 1 || len(d.Hosts[0].Addrs) != 2 {
		t.Errorf("named route: %q %v", names(d), d.Fail)
	}
}
