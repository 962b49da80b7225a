package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// certHash returns the SHA-256 of the first certificate in a PEM file:
// of its SubjectPublicKeyInfo (spki) or of the whole certificate.
func certHash(t *testing.T, file string, spki bool) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	data := c.Raw
	if spki {
		data = c.RawSubjectPublicKeyInfo
	}
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// DANE (RFC 7672), end to end with the binary: the lab's DNS server is
// on loopback, so its AD bit (set for the zones marked secure, as a
// validating resolver sets it) is believed.
//
//   - DANE-EE(3) matching the MX's self-signed certificate: delivered
//     over TLS;
//   - DANE-TA(2) naming the CA of the MX's chain: delivered;
//   - a TLSA record that does not match: deferred, no clear text;
//   - TLSA records and no STARTTLS: deferred;
//   - the same mismatching record in a zone that is not validated: no
//     DANE, delivered by opportunistic TLS;
//   - --explain shows the records and the policy.
func TestDANE(t *testing.T) {
	pki := newPKI(t)
	l := newLab(t)
	port := strconv.Itoa(l.port)
	tlsa := func(host, rec string) string { return "_" + port + "._tcp." + host + ". TLSA " + rec }
	eeCert, eeKey := selfSigned(t, "mx.ee.test")
	badCert, badKey := selfSigned(t, "mx.bad.test")
	insCert, insKey := selfSigned(t, "mx.insecure.test")
	_, taLeaf, taKey := pki.issue("mx.ta.test")
	// The TA must be in the chain the server presents (RFC 7672 3.1.2).
	taChain := filepath.Join(t.TempDir(), "chain.pem")
	leafPEM, _ := os.ReadFile(taLeaf)
	caPEM, _ := os.ReadFile(pki.CAFile)
	os.WriteFile(taChain, append(leafPEM, caPEM...), 0o600)
	wrong := strings.Repeat("ab", 32)
	for _, d := range []struct{ dom, ip string }{{"ee", "31"}, {"bad", "32"}, {"notls", "33"}, {"insecure", "34"}, {"ta", "35"}} {
		l.dns.Add(t, d.dom+".test. MX 10 mx."+d.dom+".test.", "mx."+d.dom+".test. A 127.0.0."+d.ip)
		if d.dom != "insecure" {
			l.dns.Secure(d.dom + ".test")
		}
	}
	l.dns.Add(t,
		tlsa("mx.ee.test", "3 1 1 "+certHash(t, eeCert, true)),
		tlsa("mx.bad.test", "3 1 1 "+wrong),
		tlsa("mx.notls.test", "3 1 1 "+wrong),
		tlsa("mx.insecure.test", "3 1 1 "+wrong),
		tlsa("mx.ta.test", "2 0 1 "+certHash(t, pki.CAFile, false)))
	l.mx("127.0.0.31", "--tls", eeCert, eeKey)
	l.mx("127.0.0.32", "--tls", badCert, badKey)
	l.mx("127.0.0.33")
	l.mx("127.0.0.34", "--tls", insCert, insKey)
	l.mx("127.0.0.35", "--tls", taChain, taKey)
	id := queue(t, l.spool, "a@ee.test", "b@bad.test", "c@notls.test", "d@insecure.test", "e@ta.test")
	r := runBinary(t, l.env())
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	got := byRcpt(l.received())
	if len(got) != 3 || got["a@ee.test"].Host != "127.0.0.31" || !got["a@ee.test"].TLS ||
		got["e@ta.test"].Host != "127.0.0.35" || !got["e@ta.test"].TLS ||
		got["d@insecure.test"].Host != "127.0.0.34" || !got["d@insecure.test"].TLS {
		t.Fatalf("received %+v\n%s", got, r.stderr)
	}
	list := runBinary(t, l.env(), "--list").stdout
	for _, want := range []string{id + "  deferred",
		"pending  <b@bad.test>  tls: TLS handshake: dane: the certificate of mx.bad.test matches none of its 1 usable TLSA records",
		"pending  <c@notls.test>  tls: 4.7.10 STARTTLS not offered and DANE requires TLS"} {
		if !strings.Contains(list, want) {
			t.Errorf("--list lacks %q:\n%s", want, list)
		}
	}
	if len(l.bounces()) != 0 {
		t.Error("a DANE failure bounced")
	}
	e := runBinary(t, l.env(), "--explain", "x@ee.test", "x@insecure.test")
	for _, want := range []string{
		"  hosts:   MX 10 mx.ee.test  127.0.0.31\n             DANE: TLSA 3 1 1 " + certHash(t, eeCert, true) + "\n",
		"  mta-sts: not consulted: DANE takes precedence (RFC 8461 section 2)\n",
		"  tls:     dane (DANE (RFC 7672): DNSSEC-validated TLSA records of 1 MX host(s), from the validating resolver 127.0.0.1:",
		"<x@insecure.test>\n",
		"  tls:     may (the default",
	} {
		if !strings.Contains(e.stdout, want) {
			t.Errorf("--explain lacks %q:\n%s", want, e.stdout)
		}
	}
}
