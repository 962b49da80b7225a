package receiver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeKeyPair writes a throwaway self-signed certificate and its key
// into dir and returns their paths.
func writeKeyPair(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

func TestTLSSettings(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "a.example")
	cert2, _ := writeKeyPair(t, dir, "b.example")
	for _, tc := range []struct {
		cert, key, mode string
		require         bool
		err             string // in check or tlsConfig; "" for none
	}{
		{"", "", "starttls", false, ""},
		{cert, key, "starttls", true, ""},
		{cert, key, "implicit", false, ""},
		{cert, "", "starttls", false, "SMTP_TLS_KEY must be set"},
		{"", key, "starttls", false, "SMTP_TLS_CERT must be set"},
		{cert, key, "smtps", false, "SMTP_TLS_MODE"},
		{"", "", "implicit", false, "SMTP_TLS_MODE"},
		{"", "", "starttls", true, "SMTP_REQUIRE_TLS"},
		{filepath.Join(dir, "none"), key, "starttls", false, "SMTP_TLS_CERT: open"},
		{cert, filepath.Join(dir, "none"), "starttls", false, "SMTP_TLS_KEY: open"},
		{cert2, key, "starttls", false, "SMTP_TLS_CERT and SMTP_TLS_KEY"},
		{key, key, "starttls", false, "SMTP_TLS_CERT and SMTP_TLS_KEY"},
	} {
		c := &Config{TLSCert: tc.cert, TLSKey: tc.key, TLSMode: tc.mode, RequireTLS: tc.require}
		err := c.checkTLS()
		if err == nil {
			cfg, e := c.tlsConfig()
			err = e
			if err == nil && (cfg == nil) != (tc.cert == "") {
				t.Errorf("%+v: tlsConfig %v", tc, cfg)
			}
		}
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: error %v, want %q", tc, err, tc.err)
		}
	}
}
