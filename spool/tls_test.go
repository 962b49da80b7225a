package spool

import (
	"os"
	"strings"
	"testing"
)

// TestTLSFields: tls-version, tls-cipher and auth-user are written only
// for a message over TLS or after AUTH and read back; a file without
// them (every file of before) reads as a message without TLS or AUTH.
func TestTLSFields(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ version, cipher, user string }{
		{"TLSv1.3", "TLS_AES_128_GCM_SHA256", "alice"},
		{"", "", ""},
	} {
		env := testEnvelope(t)
		env.TLSVersion, env.TLSCipher, env.AuthUser = tc.version, tc.cipher, tc.user
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
		if has := strings.Contains(string(raw), "\nauth-user: "); has != (tc.user != "") {
			t.Errorf("%q: auth-user line present %v:\n%s", tc.user, has, raw)
		}
		m, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if m.TLSVersion != tc.version || m.TLSCipher != tc.cipher || m.AuthUser != tc.user {
			t.Errorf("read TLS %q %q user %q, want %q %q %q", m.TLSVersion, m.TLSCipher, m.AuthUser, tc.version, tc.cipher, tc.user)
		}
		m.Close()
	}
	env := testEnvelope(t)
	env.TLSCipher = "X\nrcpt-to: <evil@example>"
	if err := env.Validate(); err == nil {
		t.Error("Validate took a tls-cipher with a line break")
	}
	env = testEnvelope(t)
	env.AuthUser = "alice\nrcpt-to: <evil@example>"
	if err := env.Validate(); err == nil {
		t.Error("Validate took an auth-user with a line break")
	}
}
