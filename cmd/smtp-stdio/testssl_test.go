package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestTestssl runs testssl.sh (Debian's testssl) against the STARTTLS
// and the implicit TLS endpoints, under tcpserver, with the throwaway
// CA added to its trust store: no finding may be rated HIGH or
// CRITICAL (protocols, ciphers, vulnerabilities, the certificate as the
// service presents it). Each run takes about a minute; the two run side
// by side.
func TestTestssl(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute per endpoint")
	}
	testssl := lookTestssl(t)
	pki := newPKI(t)
	for _, mode := range []string{"starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			addr := startTCPServer(t, newSpool(t), pki.env("SMTP_TLS_MODE="+mode, "SMTP_LOG=off")...)
			out := filepath.Join(t.TempDir(), "testssl.json")
			args := []string{"--quiet", "--color", "0", "--nodns", "min", "--warnings", "off",
				"--add-ca", pki.ca, "--jsonfile", out}
			if mode == "starttls" {
				args = append(args, "--starttls", "smtp")
			}
			cmd := exec.Command(testssl, append(args, addr)...)
			text, err := cmd.CombinedOutput()
			if cmd.ProcessState == nil {
				t.Fatalf("testssl: %v", err)
			}
			raw, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("no JSON from testssl (%v):\n%s", err, text)
			}
			var findings []struct{ ID, Severity, Finding string }
			if err := json.Unmarshal(raw, &findings); err != nil || len(findings) < 50 {
				t.Fatalf("testssl JSON: %v, %d findings:\n%s", err, len(findings), text)
			}
			seen := map[string]bool{}
			for _, f := range findings {
				seen[f.ID] = true
				if f.Severity == "HIGH" || f.Severity == "CRITICAL" {
					t.Errorf("%s %s: %s", f.Severity, f.ID, f.Finding)
				}
			}
			// The run covered what matters: protocols, the certificate
			// chain, and the known vulnerabilities.
			for _, id := range []string{"SSLv3", "TLS1", "TLS1_3", "cert_chain_of_trust", "heartbleed", "ROBOT", "BEAST"} {
				if !seen[id] {
					t.Errorf("testssl reported nothing on %s", id)
				}
			}
		})
	}
}

// lookTestssl finds testssl.sh: Debian installs it as testssl.
func lookTestssl(t *testing.T) string {
	for _, name := range []string{"testssl", "testssl.sh"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("testssl not installed (scripts/install-test-deps installs testssl.sh)")
	}
	t.Skip("testssl not installed")
	return ""
}
