package authcheck

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

var client = protocol.Client{Addr: netip.MustParseAddrPort("192.0.2.7:4567")}

func writeFile(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPasswordFile(t *testing.T) {
	argon, err := HashPassword("argon pass")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("bcrypt pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f := &PasswordFile{Path: writeFile(t, "# users\n\nalice:"+argon+"\nbob:"+string(bc)+"\nalice:"+string(bc)+"\n", 0o600)}
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "argon pass", true},
		{"alice", "bcrypt pass", false}, // the first line of a user counts
		{"alice", "argon pas", false},
		{"bob", "bcrypt pass", true},
		{"bob", "argon pass", false},
		{"Bob", "bcrypt pass", false},
		{"carol", "argon pass", false},
		{"# users", "x", false},
	} {
		err := f.Authenticate(client, tc.user, tc.pass)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, protocol.ErrBadCredentials) {
			t.Errorf("%s/%s: %v, want ok=%v", tc.user, tc.pass, err, tc.ok)
		}
	}
}

// TestPasswordFileRefused: a file others may read or change, or with a
// line that is no user:hash, is refused with the line named; so is a
// missing file, and Authenticate then says so (454, never 235).
func TestPasswordFileRefused(t *testing.T) {
	argon, _ := HashPassword("p")
	for _, tc := range []struct {
		body string
		mode os.FileMode
		want string
	}{
		{"a:" + argon + "\n", 0o644, "readable or writable by others"},
		{"a:" + argon + "\n", 0o660, "readable or writable by others"},
		{"a:" + argon + "\n", 0o602, "readable or writable by others"},
		{"a:" + argon + "\nb\n", 0o600, "line 2: not user:hash"},
		{"a:" + argon + "\n:" + argon + "\n", 0o600, "line 2: not user:hash"},
		{"a:plaintext\n", 0o600, "line 1 (user \"a\"): unknown hash"},
		{"a:$2b$10$short\n", 0o600, "line 1 (user \"a\"): bad bcrypt hash"},
		{"a:$argon2id$v=19$m=99999999,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 0o600, "memory"},
		{"a:$argon2i$v=19$m=1024,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 0o600, "unknown hash"},
	} {
		f := &PasswordFile{Path: writeFile(t, tc.body, tc.mode)}
		err := f.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q mode %o: %v, want %q", tc.body, tc.mode, err, tc.want)
		}
		if aerr := f.Authenticate(client, "a", "p"); aerr == nil || errors.Is(aerr, protocol.ErrBadCredentials) {
			t.Errorf("%q mode %o: Authenticate = %v, want a temporary failure", tc.body, tc.mode, aerr)
		}
	}
	f := &PasswordFile{Path: filepath.Join(t.TempDir(), "none")}
	if err := f.Check(); err == nil {
		t.Error("missing file accepted")
	}
}

// TestUnknownUserCostsAHash: the answer for a user not in the file takes
// as long as for a wrong password: a hash of the same cost is computed.
// Without it the answer would be thousands of times quicker. The bounds
// are wide, for a shared machine: the two are the same work.
func TestUnknownUserCostsAHash(t *testing.T) {
	bc, _ := bcrypt.GenerateFromPassword([]byte("right"), 10)
	argon, _ := HashPassword("right")
	for _, hash := range []string{string(bc), argon} {
		f := &PasswordFile{Path: writeFile(t, "alice:"+hash+"\n", 0o600)}
		median := func(user string) time.Duration {
			var d []time.Duration
			for range 5 {
				start := time.Now()
				f.Authenticate(client, user, "wrong")
				d = append(d, time.Since(start))
			}
			slices.Sort(d)
			return d[2]
		}
		known, unknown := median("alice"), median("mallory")
		if r := float64(unknown) / float64(known); r < 0.3 || r > 3 {
			t.Errorf("%.12s: wrong password %v, unknown user %v", hash, known, unknown)
		}
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	h1, _ := HashPassword("same")
	h2, _ := HashPassword("same")
	if h1 == h2 || !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hashes %q %q: want different salts and the package's parameters", h1, h2)
	}
	for _, h := range []string{h1, h2} {
		if ok, err := verify(h, "same"); !ok || err != nil {
			t.Errorf("verify(%q) = %v, %v", h, ok, err)
		}
		if ok, _ := verify(h, "Same"); ok {
			t.Errorf("verify(%q) took another password", h)
		}
	}
}

func TestReadPasswordFromPipe(t *testing.T) {
	for in, want := range map[string]string{"pw one\n": "pw one", "pw\r\n": "pw", "last": "last", "\n": ""} {
		r, w, _ := os.Pipe()
		w.WriteString(in)
		w.Close()
		got, err := ReadPassword(r, nil)
		r.Close()
		if got != want || (err != nil) != (want == "") {
			t.Errorf("ReadPassword(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// checker writes a checkpassword program that records its arguments,
// environment and descriptor 3, and answers by the user name: alice
// with password "pw" is 0, "slow" sleeps, "broken" exits 111, anyone
// else 1.
func checker(t *testing.T) (argv []string, record string) {
	t.Helper()
	dir := t.TempDir()
	record = filepath.Join(dir, "record")
	prog := filepath.Join(dir, "checkpassword")
	script := `#!/bin/sh
input=$(head -c 600 <&3 | tr '\000' '|')
{ printf 'args: %s\n' "$*"; printf 'input: %s\n' "$input"; env | sort; } > ` + record + `
case "$input" in
"alice|pw||") exec "$1" ;;
slow*) sleep 10 ;;
broken*) echo "database down" >&2; exit 111 ;;
esac
exit 1
`
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{prog}, record
}

func TestCheckpassword(t *testing.T) {
	argv, record := checker(t)
	t.Setenv("SMTP_SECRET", "leaked")
	c := &Checkpassword{Argv: argv, Timeout: 5 * time.Second}
	if err := c.Authenticate(client, "alice", "pw"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	rec, _ := os.ReadFile(record)
	for _, want := range []string{"args: /bin/true\n", "input: alice|pw||\n", "PATH=/usr/bin:/bin\n", "TCPREMOTEIP=192.0.2.7\n"} {
		if !strings.Contains(string(rec), want) {
			t.Errorf("checkpassword saw no %q:\n%s", want, rec)
		}
	}
	if strings.Contains(string(rec), "SMTP_SECRET") {
		t.Errorf("checkpassword inherited the environment:\n%s", rec)
	}
	if err := c.Authenticate(client, "alice", "wrong"); !errors.Is(err, protocol.ErrBadCredentials) {
		t.Errorf("wrong password: %v", err)
	}
	err := c.Authenticate(client, "broken", "x")
	if err == nil || errors.Is(err, protocol.ErrBadCredentials) || !strings.Contains(err.Error(), "database down") {
		t.Errorf("exit 111: %v, want a temporary failure with its stderr", err)
	}
	c.Timeout = 300 * time.Millisecond
	start := time.Now()
	err = c.Authenticate(client, "slow", "x")
	if err == nil || errors.Is(err, protocol.ErrBadCredentials) || time.Since(start) > 5*time.Second {
		t.Errorf("slow checker: %v after %v, want a temporary failure at the timeout", err, time.Since(start))
	}
	if err := (&Checkpassword{Argv: []string{"/nonexistent/checkpassword"}}).Authenticate(client, "a", "b"); err == nil || errors.Is(err, protocol.ErrBadCredentials) {
		t.Errorf("missing program: %v", err)
	}
}

// FuzzParseArgon2id: the parser of the password file's argon2id hashes
// refuses or accepts without panicking, holds its bounds, and what it
// accepts encodes to a string it parses to the same values.
func FuzzParseArgon2id(f *testing.F) {
	h, _ := HashPassword("x")
	f.Add(h)
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=0,t=0,p=0$$")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := parseArgon2id(h)
		if err != nil {
			return
		}
		if a.memory == 0 || a.memory > maxArgonMemory || a.time == 0 || a.time > 100 || a.threads == 0 || len(a.salt) < 8 || len(a.key) < 16 {
			t.Fatalf("%q parsed out of bounds: %+v", h, a)
		}
		b, err := parseArgon2id(a.encode(a.salt, a.key))
		if err != nil || b.memory != a.memory || b.time != a.time || b.threads != a.threads ||
			string(b.salt) != string(a.salt) || string(b.key) != string(a.key) {
			t.Fatalf("%q: re-encoded %+v, %v", h, b, err)
		}
	})
}
