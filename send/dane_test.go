package send

import (
	"context"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/dane"
	"github.com/smtp-stdio/smtp-stdio/internal/dnstest"
)

// The TLSA base domain (RFC 7672 section 2.2.2): an MX host name that is
// an alias, its chain validated, has its TLSA records looked up at the
// expanded name first, then at its own name; an alias that did not
// validate gives only the MX host name's own records.
func TestHostTLSABehindCNAME(t *testing.T) {
	rec := func(b string) string { return "3 1 1 " + strings.Repeat(b, 32) }
	srv := dnstest.Start(t,
		"mx.a.test. CNAME host.b.test.", "host.b.test. A 192.0.2.1", "_25._tcp.host.b.test. TLSA "+rec("bb"),
		"_25._tcp.mx.a.test. TLSA "+rec("aa"),
		"mx2.a.test. CNAME bare.b.test.", "bare.b.test. A 192.0.2.2", "_25._tcp.mx2.a.test. TLSA "+rec("aa"),
		"mx3.a.test. CNAME host.plain.test.", "host.plain.test. A 192.0.2.3", "_25._tcp.host.plain.test. TLSA "+rec("cc"),
		"mx4.a.test. CNAME gone.b.test.", "gone.b.test. A 192.0.2.4",
		"mx5.a.test. A 192.0.2.5", "_25._tcp.mx5.a.test. CNAME keys.b.test.", "keys.b.test. TLSA "+rec("dd"))
	srv.Secure("a.test")
	srv.Secure("b.test")
	dr := &dane.Resolver{Server: srv.Addr}
	for _, tc := range []struct{ host, base, recs string }{
		{"mx.a.test", "host.b.test", rec("bb")}, // the expanded name's records first
		{"mx2.a.test", "", rec("aa")},           // none there: the MX host name's own
		{"mx3.a.test", "", ""},                  // the chain is not validated: only mx3's own, none
		{"mx4.a.test", "", ""},                  // no records at either name: no DANE
		{"mx5.a.test", "", rec("dd")},           // the TLSA name an alias (RFC 7671 section 7)
	} {
		dh := hostTLSA(context.Background(), dr, tc.host, 25)
		got := ""
		if dh != nil && len(dh.recs) > 0 {
			got = dh.recs[0].String()
		}
		if got != tc.recs || dh != nil && dh.base != tc.base {
			t.Errorf("%s: %v, want base %q records %q", tc.host, dh, tc.base, tc.recs)
		}
	}
}
