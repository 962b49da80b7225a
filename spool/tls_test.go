package spool

import (
	"os"
	"strings"
	"testing"
)

// TestTLSFields: tls-version and tls-cipher are written only for a
// message over TLS and read back; a file without them (every file of
// before) reads as a message without TLS.
func TestTLSFields(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ version, cipher string }{
		{"TLSv1.3", "TLS_AES_128_GCM_SHA256"},
		{"", ""},
	} {
		env := testEnvelope(t)
		env.TLSVersion, env.TLSCipher = tc.version, tc.cipher
		w, err := s.Create(env)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("x\r\n"))
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		p := s.Path(QueueDir, env.QueueID)
		raw, _ := os.ReadFile(p)
		if has := strings.Contains(string(raw), "\ntls-version: "); has != (tc.version != "") {
			t.Errorf("%q: tls-version line present %v:\n%s", tc.version, has, raw)
		}
		m, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if m.TLSVersion != tc.version || m.TLSCipher != tc.cipher {
			t.Errorf("read TLS %q %q, want %q %q", m.TLSVersion, m.TLSCipher, tc.version, tc.cipher)
		}
		m.Close()
	}
	env := testEnvelope(t)
	env.TLSCipher = "X\nrcpt-to: <evil@example>"
	if err := env.Validate(); err == nil {
		t.Error("Validate took a tls-cipher with a line break")
	}
}
