package dane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/dnstest"
)

// chain returns a CA and a leaf for name signed by it, valid until
// notAfter.
func chain(t *testing.T, name string, notAfter time.Time) (leaf, ca *x509.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "TA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(der)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{name},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err = x509.CreateCertificate(rand.Reader, lt, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	return leaf, ca
}

func sum256(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
func sum512(b []byte) []byte { h := sha512.Sum512(b); return h[:] }

func TestVerify(t *testing.T) {
	leaf, ca := chain(t, "mx.example.test", time.Now().Add(time.Hour))
	expired, eca := chain(t, "mx.example.test", time.Now().Add(-time.Hour))
	other, _ := chain(t, "other.test", time.Now().Add(time.Hour))
	now := time.Now()
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		host  string
		recs  []TLSA
		ok    bool
	}{
		{"EE SPKI sha256", []*x509.Certificate{leaf, ca}, "mx.example.test", []TLSA{{3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}}, true},
		{"EE cert sha512", []*x509.Certificate{leaf}, "x.test", []TLSA{{3, 0, 2, sum512(leaf.Raw)}}, true},
		{"EE full cert", []*x509.Certificate{leaf}, "x.test", []TLSA{{3, 0, 0, leaf.Raw}}, true},
		{"EE ignores dates", []*x509.Certificate{expired}, "mx.example.test", []TLSA{{3, 1, 1, sum256(expired.RawSubjectPublicKeyInfo)}}, true},
		{"EE mismatch", []*x509.Certificate{other}, "mx.example.test", []TLSA{{3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}}, false},
		{"TA", []*x509.Certificate{leaf, ca}, "mx.example.test", []TLSA{{2, 0, 1, sum256(ca.Raw)}}, true},
		{"TA SPKI", []*x509.Certificate{leaf, ca}, "mx.example.test", []TLSA{{2, 1, 1, sum256(ca.RawSubjectPublicKeyInfo)}}, true},
		{"TA wrong name", []*x509.Certificate{leaf, ca}, "other.test", []TLSA{{2, 0, 1, sum256(ca.Raw)}}, false},
		{"TA expired leaf", []*x509.Certificate{expired, eca}, "mx.example.test", []TLSA{{2, 0, 1, sum256(eca.Raw)}}, false},
		{"TA not in chain", []*x509.Certificate{leaf}, "mx.example.test", []TLSA{{2, 0, 1, sum256(ca.Raw)}}, false},
		{"PKIX-EE unusable", []*x509.Certificate{leaf}, "mx.example.test", []TLSA{{1, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}}, false},
		{"bad length unusable", []*x509.Certificate{leaf}, "mx.example.test", []TLSA{{3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)[:31]}}, false},
		{"second record matches", []*x509.Certificate{leaf}, "mx.example.test", []TLSA{{3, 1, 1, make([]byte, 32)}, {3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}}, true},
		{"no chain", nil, "mx.example.test", []TLSA{{3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}}, false},
	} {
		if err := Verify(tc.chain, tc.host, tc.recs, now); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// RFC 7672 section 3.2.2: behind a CNAME, the expanded name (the
	// TLSA base domain) is a reference identifier too.
	ta := []TLSA{{2, 0, 1, sum256(ca.Raw)}}
	if err := Verify([]*x509.Certificate{leaf, ca}, "alias.test", ta, now, "mx.example.test"); err != nil {
		t.Errorf("TA, the leaf valid for the expanded name: %v", err)
	}
	if err := Verify([]*x509.Certificate{leaf, ca}, "alias.test", ta, now, "elsewhere.test"); err == nil {
		t.Error("TA, the leaf valid for neither name: passed")
	}
	if c := TLSConfig("alias.test", ta, "mx.example.test"); c.ServerName != "mx.example.test" {
		t.Errorf("SNI %q, want the TLSA base domain (RFC 7672 section 8.1)", c.ServerName)
	}
	if (TLSA{3, 1, 1, make([]byte, 32)}).String() != "3 1 1 "+strings.Repeat("00", 32) {
		t.Error("String")
	}
}

func TestTrusted(t *testing.T) {
	for s, want := range map[string]bool{"127.0.0.1:53": true, "[::1]:5301": true, "127.9.9.9:53": true,
		"192.0.2.1:53": false, "localhost:53": false, "127.0.0.1": false} {
		if Trusted(s) != want {
			t.Errorf("Trusted(%q) = %v", s, !want)
		}
	}
}

// LookupTLSA against a DNS server: the records and the AD bit of a
// signed zone, no AD from an unsigned one, SERVFAIL as ErrBogus.
func TestLookupTLSA(t *testing.T) {
	h := hex.EncodeToString(make([]byte, 32))
	dns := dnstest.Start(t, "_25._tcp.mx.signed.test. TLSA 3 1 1 "+h, "_25._tcp.mx.signed.test. TLSA 2 0 1 "+h,
		"_25._tcp.mx.plain.test. TLSA 3 1 1 "+h, "signed.test. MX 10 mx.signed.test.")
	dns.Secure("signed.test")
	dns.ServFail("_25._tcp.mx.bogus.test")
	r := &Resolver{Server: dns.Addr}
	ctx := context.Background()
	recs, ad, err := r.LookupTLSA(ctx, "mx.signed.test", 25)
	if err != nil || !ad || len(recs) != 2 || recs[0].String() != "3 1 1 "+h || !recs[1].Usable() {
		t.Errorf("signed: %v %v %v", recs, ad, err)
	}
	if recs, ad, err := r.LookupTLSA(ctx, "mx.plain.test.", 25); err != nil || ad || len(recs) != 1 {
		t.Errorf("plain: %v %v %v", recs, ad, err)
	}
	if recs, ad, err := r.LookupTLSA(ctx, "mx.none.test", 25); err != nil || ad || len(recs) != 0 {
		t.Errorf("none: %v %v %v", recs, ad, err)
	}
	if _, _, err := r.LookupTLSA(ctx, "mx.bogus.test", 25); err != ErrBogus {
		t.Errorf("bogus: %v", err)
	}
	if ok, err := r.Secure(ctx, "signed.test", "MX"); !ok || err != nil {
		t.Errorf("Secure MX: %v %v", ok, err)
	}
	if ok, err := r.Secure(ctx, "plain.test", "mx"); ok || err != nil {
		t.Errorf("insecure MX: %v %v", ok, err)
	}
}

// Expand follows the CNAME chain of a host's address records: the
// expanded name, secure only when every link is signed; no chain, the
// name itself; SERVFAIL, ErrBogus.
func TestExpand(t *testing.T) {
	dns := dnstest.Start(t, "mx.a.test. CNAME mid.b.test.", "mid.b.test. CNAME host.b.test.", "host.b.test. A 192.0.2.1",
		"mx.c.test. CNAME host.plain.test.", "host.plain.test. A 192.0.2.2", "direct.b.test. A 192.0.2.3")
	dns.Secure("a.test")
	dns.Secure("b.test")
	dns.Secure("c.test")
	dns.ServFail("bogus.b.test")
	r := &Resolver{Server: dns.Addr}
	ctx := context.Background()
	for _, tc := range []struct {
		host, final     string
		secure, aliased bool
	}{
		{"mx.a.test", "host.b.test", true, true},
		{"mx.c.test.", "host.plain.test", false, true},
		{"direct.b.test", "direct.b.test", true, false},
	} {
		final, secure, aliased, err := r.Expand(ctx, tc.host)
		if err != nil || final != tc.final || secure != tc.secure || aliased != tc.aliased {
			t.Errorf("%s: %q secure %v aliased %v, %v", tc.host, final, secure, aliased, err)
		}
	}
	if _, _, _, err := r.Expand(ctx, "bogus.b.test"); err != ErrBogus {
		t.Errorf("bogus: %v", err)
	}
}
