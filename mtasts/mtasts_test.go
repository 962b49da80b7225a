package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const good = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mx.example.test\r\nmax_age: 86400\r\n"

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(strings.NewReader(good))
	if err != nil || p.Mode != ModeEnforce || p.MaxAge != 24*time.Hour || len(p.MX) != 2 {
		t.Fatalf("%+v %v", p, err)
	}
	if p.String() != "mode enforce, max_age 86400s, mx mx1.example.test *.mx.example.test" {
		t.Errorf("String %q", p.String())
	}
	for host, want := range map[string]bool{
		"mx1.example.test": true, "MX1.Example.Test.": true, "a.mx.example.test": true,
		"mx.example.test": false, "a.b.mx.example.test": false, "mx2.example.test": false, "": false,
	} {
		if p.Match(host) != want {
			t.Errorf("Match(%q) = %v", host, !want)
		}
	}
	// LF line ends, extra blanks, unknown keys, mode none without mx.
	if p, err := ParsePolicy(strings.NewReader("version:STSv1\nmode:  none\n\nfoo: bar\nmax_age: 0\n")); err != nil || p.Mode != ModeNone {
		t.Errorf("none: %+v %v", p, err)
	}
	for _, bad := range []string{
		"", "mode: enforce\nmx: a.test\nmax_age: 1\n",
		"version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
		"version: STSv1\nmode: enforcing\nmx: a.test\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a.test\n",
		"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
		"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
		"version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a_b.test\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 1\n",
		"version: STSv1\nno colon\n",
		good + strings.Repeat("x: y\n", MaxPolicySize/5),
	} {
		if p, err := ParsePolicy(strings.NewReader(bad)); err == nil {
			t.Errorf("ParsePolicy(%.60q) = %+v", bad, p)
		}
	}
}

func TestParseTXT(t *testing.T) {
	for _, tc := range []struct {
		recs []string
		id   string
	}{
		{[]string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z"},
		{[]string{"v=spf1 -all", "v=STSv1;id=abc"}, "abc"},
		{[]string{"v=STSv1; id=abc; ext=1"}, "abc"},
		{[]string{"v=STSv1; id=a", "v=STSv1; id=b"}, ""},
		{[]string{"v=STSv1;"}, ""},
		{[]string{"v=STSv1; id=" + strings.Repeat("a", 33)}, ""},
		{[]string{"v=STSv1; id=a-b"}, ""},
		{[]string{"id=abc; v=STSv1"}, ""},
		{nil, ""},
	} {
		id, err := ParseTXT(tc.recs)
		if id != tc.id || (err == nil) != (tc.id != "") {
			t.Errorf("ParseTXT(%q) = %q, %v", tc.recs, id, err)
		}
	}
}

// policyServer serves body at the policy address of pol.test over HTTPS
// with a certificate for mta-sts.pol.test from a test CA, and returns a
// client that trusts the CA and dials the server whatever the name.
func policyServer(t *testing.T, h http.HandlerFunc) *http.Client {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{"mta-sts.pol.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	var d net.Dialer
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, srv.Listener.Addr().String())
		},
	}}
}

func TestFetch(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		want string // "" for success
	}{
		{"ok", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.pol.test" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte(good))
		}, ""},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://mta-sts.pol.test/other", http.StatusFound)
		}, "redirects are not followed"},
		{"type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(good))
		}, "Content-Type"},
		{"status", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "status 404"},
		{"bad policy", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("version: STSv1\n"))
		}, "without mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := policyServer(t, tc.h)
			p, err := Fetch(context.Background(), c, "pol.test")
			if tc.want == "" && (err != nil || p.Mode != ModeEnforce) || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("%+v %v", p, err)
			}
		})
	}
	// A certificate for another name is refused.
	c := policyServer(t, func(w http.ResponseWriter, r *http.Request) {})
	if _, err := Fetch(context.Background(), c, "other.test"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("wrong name: %v", err)
	}
}

// The cache: a policy within its max_age and with the same TXT id is not
// fetched again; a new id fetches it again; a failed fetch or a missing
// TXT record keeps a cached policy in force; after max_age it is gone.
func TestGetterCache(t *testing.T) {
	var fetches atomic.Int32
	var body atomic.Value
	body.Store(good)
	fail := atomic.Bool{}
	c := policyServer(t, func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body.Load().(string)))
	})
	txt := atomic.Value{}
	txt.Store([]string{"v=STSv1; id=one"})
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	g := &Getter{Client: c, Cache: &Cache{Dir: t.TempDir() + "/mta-sts"}, Now: func() time.Time { return now },
		LookupTXT: func(_ context.Context, name string) ([]string, error) {
			if name != "_mta-sts.pol.test." {
				t.Errorf("TXT lookup of %q", name)
			}
			recs := txt.Load().([]string)
			if recs == nil {
				return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
			}
			return recs, nil
		}}
	ctx := context.Background()
	step := func(name string, wantFetches int32, wantMode Mode, wantSource string) {
		t.Helper()
		r := g.Get(ctx, "pol.test")
		mode := ModeNone
		if r.Policy != nil {
			mode = r.Policy.Mode
		}
		if fetches.Load() != wantFetches || mode != wantMode || !strings.Contains(r.Source, wantSource) {
			t.Errorf("%s: %d fetches, %+v", name, fetches.Load(), r)
		}
	}
	step("first", 1, ModeEnforce, "fetched from https://mta-sts.pol.test/.well-known/mta-sts.txt")
	step("same id", 1, ModeEnforce, "TXT id unchanged")
	body.Store(strings.Replace(good, "enforce", "testing", 1))
	txt.Store([]string{"v=STSv1; id=two"})
	step("new id", 2, ModeTesting, "fetched")
	fail.Store(true)
	txt.Store([]string{"v=STSv1; id=three"})
	step("fetch fails", 3, ModeTesting, "the fetch of the new policy failed")
	txt.Store([]string(nil))
	step("no TXT", 3, ModeTesting, "no usable TXT record now")
	now = now.Add(25 * time.Hour)
	step("expired", 3, ModeNone, "no policy")
	// A read-only getter does not write the cache.
	fail.Store(false)
	txt.Store([]string{"v=STSv1; id=four"})
	g.ReadOnly = true
	step("read-only", 4, ModeTesting, "fetched")
	e, err := g.Cache.Get("pol.test")
	if err != nil || e.ID != "two" {
		t.Errorf("cache after a read-only fetch: %+v %v", e, err)
	}
	if _, err := g.Cache.Get("../x"); err == nil {
		t.Error("a cache path out of the directory")
	}
	if err := g.Cache.Put(&Entry{Domain: "a/b"}); err == nil {
		t.Error("put out of the directory")
	}
}
