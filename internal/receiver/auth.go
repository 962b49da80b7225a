package receiver

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/authcheck"
	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// AUTH for smtp-stdio (RFC 4954): the settings' checks, and the
// protocol.Authenticator made of them, which feeds failures to the
// velocity limit.

// checkAuth checks the AUTH settings: at most one checker, a
// checkpassword given by an absolute path, a password file that exists,
// parses and is not open to other users (authcheck.PasswordFile.Check),
// positive durations, and no SMTP_AUTH_REQUIRED without a checker (no
// client could ever send mail).
func (c *Config) checkAuth() error {
	bad := func(name, why string) error {
		return fmt.Errorf("config: %s_%s %s", Prefix, name, why)
	}
	switch {
	case c.AuthPasswordFile != "" && c.AuthCheckpassword != "":
		return bad("AUTH_CHECKPASSWORD", "and SMTP_AUTH_PASSWORD_FILE are both set; choose one")
	case c.AuthCheckpassword != "" && !filepath.IsAbs(strings.Fields(c.AuthCheckpassword)[0]):
		return bad("AUTH_CHECKPASSWORD", "must start with an absolute path (the program runs with PATH=/usr/bin:/bin)")
	case c.AuthRequired && c.AuthPasswordFile == "" && c.AuthCheckpassword == "":
		return bad("AUTH_REQUIRED", "needs SMTP_AUTH_PASSWORD_FILE or SMTP_AUTH_CHECKPASSWORD")
	case c.AuthTimeout <= 0:
		return bad("AUTH_TIMEOUT", "must be positive")
	case c.AuthFailureDelay < 0 || c.AuthFailureDelay > time.Minute:
		return bad("AUTH_FAILURE_DELAY", "must be from 0 to 1m")
	}
	if c.AuthPasswordFile != "" {
		f := &authcheck.PasswordFile{Path: c.AuthPasswordFile}
		if err := f.Check(); err != nil {
			return fmt.Errorf("config: %s_AUTH_PASSWORD_FILE: %w", Prefix, err)
		}
	}
	return nil
}

// authenticator returns the checker of the settings, nil when AUTH is
// not configured. A failure is fed to the velocity limit by onFailure.
func (c *Config) authenticator(onFailure func()) protocol.Authenticator {
	var a protocol.Authenticator
	switch {
	case c.AuthPasswordFile != "":
		a = &authcheck.PasswordFile{Path: c.AuthPasswordFile}
	case c.AuthCheckpassword != "":
		a = &authcheck.Checkpassword{Argv: strings.Fields(c.AuthCheckpassword), Timeout: c.AuthTimeout}
	default:
		return nil
	}
	return feedFailures{a, onFailure}
}

// feedFailures calls onFailure after each answer of bad credentials.
type feedFailures struct {
	protocol.Authenticator
	onFailure func()
}

// Authenticate implements protocol.Authenticator.
func (f feedFailures) Authenticate(c protocol.Client, user, pass string) error {
	err := f.Authenticator.Authenticate(c, user, pass)
	if errors.Is(err, protocol.ErrBadCredentials) && f.onFailure != nil {
		f.onFailure()
	}
	return err
}

// countAuthFailure returns the onFailure of an untrusted client: each
// failed AUTH counts as one more session of it toward the velocity
// limits (SMTP_RATE_MAX_PER_CLIENT), so that a password guesser that
// reconnects after SMTP_MAX_ERRORS soon gets 421 4.7.0 at the greeting.
func countAuthFailure(rc *receiver, client protocol.Client, log *slog.Logger) func() {
	return func() {
		if _, err := rc.rate(client.Addr.Addr(), time.Now()); err != nil {
			log.Warn("velocity count of an AUTH failure failed", "err", err)
		}
	}
}

// hashPassword is smtp-stdio --hash-password: it reads a password from
// the terminal (twice, without echo) or one line of standard input, and
// writes its argon2id hash to standard output, for a line "user:hash"
// of SMTP_AUTH_PASSWORD_FILE. It returns 0, or 1 after a message on
// standard error.
func hashPassword(name string) int {
	pass, err := authcheck.ReadPassword(os.Stdin, os.Stderr)
	if err == nil {
		var h string
		if h, err = authcheck.HashPassword(pass); err == nil {
			fmt.Println(h)
			return exitOK
		}
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	return exitSession
}
