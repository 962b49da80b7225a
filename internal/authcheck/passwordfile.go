// Package authcheck checks the credentials of SMTP AUTH (RFC 4954) for
// smtp-stdio: against a password file of bcrypt or argon2id hashes
// (PasswordFile), or with a program in the checkpassword interface of
// qmail and vpopmail (Checkpassword). Both implement
// protocol.Authenticator.
package authcheck

import (
	"bufio"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// ErrUnsafeFile is wrapped by PasswordFile.Check for a file that other
// users may read or change (mode bits 0o007, or 0o020 for the group).
var ErrUnsafeFile = errors.New("authcheck: password file is readable or writable by others")

// MaxFileSize bounds the password file, in bytes: it is read at each
// authentication, and no real file of users comes near.
const MaxFileSize = 16 << 20

// Argon2id parameters of HashPassword: RFC 9106 section 7.4's second
// recommendation scaled down as OWASP's password storage advice has it
// (19 MiB, 2 passes, 1 lane), so that one check costs a session tens of
// milliseconds and 19 MiB, not seconds and gigabytes.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonSaltLen = 16 // bytes
	argonKeyLen  = 32 // bytes
	// maxArgonMemory bounds the memory a hash in the file may ask for,
	// in KiB (1 GiB).
	maxArgonMemory = 1 << 20
)

// PasswordFile checks passwords against a file of lines "user:hash",
// where hash is a bcrypt hash ("$2a$", "$2b$" or "$2y$") or an argon2id
// hash in the PHC string format ("$argon2id$v=19$m=...,t=...,p=...$salt$key"),
// as HashPassword makes. Empty lines and lines starting with "#" are
// comments; the user name is everything before the first colon. The
// file is read at each authentication, so a change takes effect at the
// next.
type PasswordFile struct {
	// Path is the file's name.
	Path string
}

// entry is one line of the file.
type entry struct {
	user, hash string
	line       int
}

// Check reads the whole file and returns an error when it is unusable:
// unreadable, larger than MaxFileSize, readable or writable by other
// users (wrapping ErrUnsafeFile; group read is allowed, for a service
// group), or holding a line that is not "user:hash" with a hash of a
// known kind (the error names the line). smtp-stdio runs it before each
// session, so a bad file refuses the session with 421 rather than
// letting anyone in or no one.
func (f *PasswordFile) Check() error {
	_, err := f.read()
	return err
}

// read opens the file, checks its mode and returns its entries.
func (f *PasswordFile) read() ([]entry, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("authcheck: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("authcheck: %w", err)
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("authcheck: %s is not a regular file", f.Path)
	case st.Mode().Perm()&0o027 != 0:
		return nil, fmt.Errorf("%w: %s has mode %04o (want 0600 or 0640)", ErrUnsafeFile, f.Path, st.Mode().Perm())
	case st.Size() > MaxFileSize:
		return nil, fmt.Errorf("authcheck: %s is larger than %d bytes", f.Path, MaxFileSize)
	}
	var entries []entry
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(l, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("authcheck: %s line %d: not user:hash", f.Path, n)
		}
		if err := checkHash(hash); err != nil {
			return nil, fmt.Errorf("authcheck: %s line %d (user %q): %w", f.Path, n, user, err)
		}
		entries = append(entries, entry{user: user, hash: hash, line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("authcheck: reading %s: %w", f.Path, err)
	}
	return entries, nil
}

// Authenticate implements protocol.Authenticator: nil when pass matches
// the hash of user's line (the first, if there are several), an error
// wrapping protocol.ErrBadCredentials when it does not or there is no
// such line, and any other error when the file cannot be used. For an
// unknown user it hashes pass anyway, with the parameters of the file's
// first hash, so that the answer takes as long as for a wrong password;
// the comparison of the hashes is constant-time.
func (f *PasswordFile) Authenticate(_ protocol.Client, user, pass string) error {
	entries, err := f.read()
	if err != nil {
		return err
	}
	var found *entry
	for i := range entries {
		if entries[i].user == user {
			found = &entries[i]
			break
		}
	}
	if found == nil {
		if len(entries) > 0 {
			verify(dummyLike(entries[0].hash), pass) // the same cost, a certain no
		}
		return fmt.Errorf("%w: no user %q", protocol.ErrBadCredentials, user)
	}
	ok, err := verify(found.hash, pass)
	if err != nil {
		return fmt.Errorf("authcheck: %s line %d: %w", f.Path, found.line, err)
	}
	if !ok {
		return fmt.Errorf("%w: wrong password for %q", protocol.ErrBadCredentials, user)
	}
	return nil
}

// checkHash reports whether hash is a bcrypt or argon2id hash this
// package can verify.
func checkHash(hash string) error {
	switch {
	case isBcrypt(hash):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("bad bcrypt hash: %w", err)
		}
		return nil
	case strings.HasPrefix(hash, "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	}
	return errors.New("unknown hash: want bcrypt ($2b$...) or argon2id ($argon2id$...); make one with smtp-stdio --hash-password")
}

func isBcrypt(h string) bool {
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

// verify reports whether pass matches hash.
func verify(hash, pass string) (bool, error) {
	if isBcrypt(hash) {
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		return err == nil, err
	}
	a, err := parseArgon2id(hash)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(pass), a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
	return subtle.ConstantTimeCompare(key, a.key) == 1, nil
}

// dummyLike returns a hash of the same kind and cost as hash that no
// password matches in practice (its salt and key are zeros).
func dummyLike(hash string) string {
	if isBcrypt(hash) {
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			cost = bcrypt.DefaultCost
		}
		// 22 characters of salt and 31 of hash in bcrypt's base64.
		return fmt.Sprintf("$2b$%02d$%s", cost, strings.Repeat(".", 53))
	}
	a, err := parseArgon2id(hash)
	if err != nil {
		a = argonHash{memory: argonMemory, time: argonTime, threads: argonThreads,
			salt: make([]byte, argonSaltLen), key: make([]byte, argonKeyLen)}
	}
	return a.encode(make([]byte, len(a.salt)), make([]byte, len(a.key)))
}

// argonHash is a parsed argon2id PHC string.
type argonHash struct {
	memory    uint32 // KiB
	time      uint32
	threads   uint8
	salt, key []byte
}

var b64 = base64.RawStdEncoding

func (a argonHash) encode(salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		a.memory, a.time, a.threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// parseArgon2id parses "$argon2id$v=19$m=M,t=T,p=P$salt$key" (the PHC
// string format, with base64 without padding).
func parseArgon2id(h string) (argonHash, error) {
	var a argonHash
	f := strings.Split(h, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return a, errors.New("bad argon2id hash: want $argon2id$v=19$m=...,t=...,p=...$salt$key")
	}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return a, fmt.Errorf("bad argon2id parameter %q", kv)
		}
		switch k {
		case "m":
			a.memory = uint32(n)
		case "t":
			a.time = uint32(n)
		case "p":
			if n > 255 {
				return a, fmt.Errorf("bad argon2id parameter %q", kv)
			}
			a.threads = uint8(n)
		default:
			return a, fmt.Errorf("unknown argon2id parameter %q", kv)
		}
	}
	var err error
	if a.salt, err = b64.DecodeString(f[4]); err != nil || len(a.salt) < 8 {
		return a, errors.New("bad argon2id salt")
	}
	if a.key, err = b64.DecodeString(f[5]); err != nil || len(a.key) < 16 {
		return a, errors.New("bad argon2id key")
	}
	switch {
	case a.memory == 0 || a.time == 0 || a.threads == 0:
		return a, errors.New("argon2id hash lacks m, t or p")
	case a.memory > maxArgonMemory:
		return a, fmt.Errorf("argon2id memory %d KiB is over %d", a.memory, maxArgonMemory)
	case a.time > 100:
		return a, fmt.Errorf("argon2id time %d is over 100", a.time)
	}
	return a, nil
}
