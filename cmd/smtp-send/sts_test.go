package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPKI is a CA of the test and certificates it signs, as PEM files:
// smtp-send trusts the CA through SSL_CERT_FILE, which Go reads for the
// system's roots.
type testPKI struct {
	t      *testing.T
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtp-send test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: t.TempDir(), ca: ca, caKey: key}
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	os.WriteFile(p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return p
}

// issue returns a certificate for names signed by the CA, as a
// tls.Certificate and as PEM files.
func (p *testPKI) issue(names ...string) (tls.Certificate, string, string) {
	p.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: names,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	cert := filepath.Join(p.dir, names[0]+".pem")
	keyFile := filepath.Join(p.dir, names[0]+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, cert, keyFile
}

// policyServer is the HTTPS server of the MTA-STS policies, on port 443
// of a random loopback address (RFC 8461 fixes the port, so the test
// needs root, as CI has; the address is random so that concurrent test
// runs on one machine do not collide), which the lab's DNS gives for
// each mta-sts.<domain>. It answers with policies[domain] and counts the
// fetches.
type policyServer struct {
	mu       sync.Mutex
	policies map[string]string
	fetches  map[string]int
}

func startPolicyServer(t *testing.T, pki *testPKI, l *mxLab, domains ...string) *policyServer {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("MTA-STS tests serve policies on port 443: run as root")
		}
		t.Fatal("MTA-STS tests need root in CI")
	}
	var names []string
	for _, d := range domains {
		names = append(names, "mta-sts."+d)
	}
	cert, _, _ := pki.issue(names...)
	ps := &policyServer{policies: map[string]string{}, fetches: map[string]int{}}
	var ln net.Listener
	var ip string
	for try := 0; ln == nil; try++ {
		b := make([]byte, 3)
		rand.Read(b)
		ip = net.IPv4(127, 1+b[0]%250, b[1], 1+b[2]%250).String()
		var err error
		if ln, err = net.Listen("tcp", net.JoinHostPort(ip, "443")); err != nil && try > 10 {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		l.dns.Add(t, n+". A "+ip)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := strings.TrimPrefix(r.Host, "mta-sts.")
			ps.mu.Lock()
			body, ok := ps.policies[d]
			ps.fetches[d]++
			ps.mu.Unlock()
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(body))
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ps
}

func (ps *policyServer) set(domain, policy string) {
	ps.mu.Lock()
	ps.policies[domain] = policy
	ps.mu.Unlock()
}

func (ps *policyServer) count(domain string) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.fetches[domain]
}

// byRcpt keys messages by their recipients, joined by spaces.
func byRcpt(ms []mxReceived) map[string]mxReceived {
	out := map[string]mxReceived{}
	for _, m := range ms {
		out[strings.Join(m.To, " ")] = m
	}
	return out
}

func policy(mode string, mx ...string) string {
	s := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, m := range mx {
		s += "mx: " + m + "\r\n"
	}
	return s + "max_age: 86400\r\n"
}

// MTA-STS (RFC 8461), end to end with the binary: a policy fetched over
// HTTPS from port 443 of a loopback address (its certificate from the test CA, trusted
// through SSL_CERT_FILE) and cached in the spool.
//
//   - enforce, MX named by the policy, certificate valid for its name:
//     delivered over TLS; the MX host the policy does not name is skipped
//     although it is more preferred;
//   - enforce, no MX named: deferred (4.7.5), nothing sent;
//   - enforce, the MX's certificate not valid (self-signed): deferred, no
//     clear-text retry;
//   - testing, MX not named: delivered all the same;
//   - the next run uses the cached policy without fetching while the TXT
//     id is unchanged, fetches again when it changes, and keeps enforcing
//     the cached policy when the fetch fails.
func TestMTASTS(t *testing.T) {
	pki := newPKI(t)
	l := newLab(t,
		"good.test. MX 10 rogue.good.test.", "good.test. MX 20 mx.good.test.",
		"rogue.good.test. A 127.0.0.22", "mx.good.test. A 127.0.0.21",
		"_mta-sts.good.test. TXT \"v=STSv1; id=one\"",
		"nomatch.test. MX 10 mx.nomatch.test.", "mx.nomatch.test. A 127.0.0.23",
		"_mta-sts.nomatch.test. TXT \"v=STSv1; id=1\"",
		"selfsigned.test. MX 10 mx.selfsigned.test.", "mx.selfsigned.test. A 127.0.0.24",
		"_mta-sts.selfsigned.test. TXT \"v=STSv1; id=1\"",
		"testing.test. MX 10 mx.testing.test.", "mx.testing.test. A 127.0.0.25",
		"_mta-sts.testing.test. TXT \"v=STSv1; id=1\"")
	ps := startPolicyServer(t, pki, l, "good.test", "nomatch.test", "selfsigned.test", "testing.test")
	ps.set("good.test", policy("enforce", "mx.good.test"))
	ps.set("nomatch.test", policy("enforce", "other.nomatch.test"))
	ps.set("selfsigned.test", policy("enforce", "*.selfsigned.test"))
	ps.set("testing.test", policy("testing", "other.testing.test"))
	_, goodCert, goodKey := pki.issue("mx.good.test")
	_, rogueCert, rogueKey := pki.issue("rogue.good.test")
	ssCert, ssKey := selfSigned(t, "mx.selfsigned.test")
	l.mx("127.0.0.21", "--tls", goodCert, goodKey)
	l.mx("127.0.0.22", "--tls", rogueCert, rogueKey)
	l.mx("127.0.0.23")
	l.mx("127.0.0.24", "--tls", ssCert, ssKey)
	l.mx("127.0.0.25")
	env := l.env("SSL_CERT_FILE=" + pki.CAFile)
	id := queue(t, l.spool, "a@good.test", "b@nomatch.test", "c@selfsigned.test", "d@testing.test")
	r := runBinary(t, env)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	got := byRcpt(l.received())
	if len(got) != 2 || got["a@good.test"].Host != "127.0.0.21" || !got["a@good.test"].TLS ||
		got["d@testing.test"].Host != "127.0.0.25" {
		t.Fatalf("received %+v\n%s", got, r.stderr)
	}
	list := runBinary(t, env, "--list").stdout
	for _, want := range []string{id + "  deferred", "pending  <b@nomatch.test>  local: 4.7.5 no MX host of nomatch.test matches its MTA-STS policy",
		"pending  <c@selfsigned.test>  tls: TLS handshake: tls: failed to verify certificate"} {
		if !strings.Contains(list, want) {
			t.Errorf("--list lacks %q:\n%s", want, list)
		}
	}
	if !strings.Contains(r.stderr, `msg="MTA-STS enforce: MX hosts the policy does not name are not used" domain=good.test hosts=[rogue.good.test]`) ||
		!strings.Contains(r.stderr, `msg="MTA-STS testing: MX hosts the policy does not name`) {
		t.Errorf("log:\n%s", r.stderr)
	}
	if n := ps.count("good.test"); n != 1 {
		t.Errorf("good.test's policy fetched %d times", n)
	}
	if _, err := os.Stat(filepath.Join(l.spool, "mta-sts", "good.test")); err != nil {
		t.Errorf("policy not cached: %v", err)
	}

	// The cache: with the id unchanged, --explain and a run use the
	// cached policy without fetching it.
	queue(t, l.spool, "e@good.test")
	e := runBinary(t, env, "--explain", "e@good.test")
	for _, want := range []string{
		"  hosts:   MX 20 mx.good.test  127.0.0.21\n",
		"  mta-sts: id one, mode enforce, max_age 86400s, mx mx.good.test; cached, fetched ",
		"(TXT id unchanged); not named by it: rogue.good.test\n",
		"  tls:     verify (MTA-STS policy of good.test, mode enforce (id one, cached, fetched ",
	} {
		if !strings.Contains(e.stdout, want) {
			t.Errorf("--explain lacks %q:\n%s", want, e.stdout)
		}
	}
	r = runBinary(t, env, "--all")
	if n := ps.count("good.test"); n != 1 || len(l.received()) != 3 {
		t.Errorf("with the id unchanged: %d fetches, %d received\n%s", n, len(l.received()), r.stderr)
	}
	// A new id fetches again: the new policy names only the rogue host.
	l.dns.Remove("_mta-sts.good.test", "TXT")
	l.dns.Add(t, "_mta-sts.good.test. TXT \"v=STSv1; id=two\"")
	ps.set("good.test", policy("enforce", "rogue.good.test"))
	queue(t, l.spool, "f@good.test")
	r = runBinary(t, env, "--all")
	got = byRcpt(l.received())
	if n := ps.count("good.test"); n != 2 || len(got) != 4 || got["f@good.test"].Host != "127.0.0.22" || !got["f@good.test"].TLS {
		t.Errorf("after the id changed: %d fetches, received %+v\n%s", n, got, r.stderr)
	}
	// A new id whose fetch fails: the cached policy (rogue only) stays in
	// force, and the mail still goes to the rogue host alone.
	l.dns.Remove("_mta-sts.good.test", "TXT")
	l.dns.Add(t, "_mta-sts.good.test. TXT \"v=STSv1; id=three\"")
	ps.mu.Lock()
	delete(ps.policies, "good.test")
	ps.mu.Unlock()
	queue(t, l.spool, "g@good.test")
	r = runBinary(t, env, "--all")
	got = byRcpt(l.received())
	if n := ps.count("good.test"); n < 3 || len(got) != 5 || got["g@good.test"].Host != "127.0.0.22" {
		t.Errorf("after a failed fetch: %d fetches, received %+v\n%s", n, got, r.stderr)
	}
}
