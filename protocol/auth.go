package protocol

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
)

// SMTP authentication (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
// mechanisms. The session carries out the exchange; Config.Auth checks
// the credentials. A successful AUTH sets Envelope.AuthUser for the rest
// of the session (STARTTLS clears it with everything else): the Policy
// decides what that grants, and the Received: header says ESMTPA or
// ESMTPSA (RFC 3848).

// Authenticator checks the credentials of AUTH (RFC 4954). Config.Auth.
type Authenticator interface {
	// Authenticate returns nil when password is user's password, an
	// error wrapping ErrBadCredentials when it is not (or user does not
	// exist: the client is told the same), and any other error when the
	// check could not be made (the client gets 454 4.7.0 and may try
	// again later). It should take as long for an unknown user as for a
	// wrong password, and compare secrets in constant time. c is the
	// client, for logs and rate limits.
	Authenticate(c Client, user, password string) error
}

// ErrBadCredentials is what an Authenticator wraps for a user name and
// password that do not match: 535 5.7.8 (RFC 4954 section 6).
var ErrBadCredentials = errors.New("protocol: authentication credentials invalid")

// maxAuthLine is the longest line of a SASL exchange the session reads,
// in bytes, CRLF included: RFC 4954 section 4 asks servers for 12288.
const maxAuthLine = 12288

// maxAuthID is the longest user name or password accepted, in bytes;
// longer credentials are refused as wrong without asking Config.Auth.
const maxAuthID = 1024

// The mechanisms offered, in the EHLO reply's order (RFC 4954 section 3).
const authMechanisms = "PLAIN LOGIN"

// offersAuth reports whether the session carries out AUTH at all: it
// has an Authenticator. Whether AUTH may be used yet (TLS, EHLO) is
// auth's business, with its own replies.
func (s *Session) offersAuth() bool { return s.cfg.Auth != nil }

// advertisesAuth reports whether the EHLO reply lists AUTH: an
// Authenticator, no AUTH yet, and a channel where a password may pass:
// TLS, a local pipe session, or Config.AllowPlaintextAuth (RFC 4954
// section 4: a plaintext mechanism needs a secure channel).
func (s *Session) advertisesAuth() bool {
	return s.offersAuth() && s.env.AuthUser == "" && s.authChannelOK()
}

func (s *Session) authChannelOK() bool {
	return s.env.TLSVersion != "" || s.env.Client.Local || s.cfg.AllowPlaintextAuth
}

// parseAuth checks the arguments of AUTH: a mechanism name, then
// optionally an initial response (RFC 4954 section 4).
func parseAuth(cmd Command) (Command, error) {
	mech, ir, _ := strings.Cut(cmd.Arg, " ")
	if mech == "" || strings.Contains(ir, " ") {
		return cmd, replyAuthSyntax
	}
	return cmd, nil
}

// auth carries out AUTH (RFC 4954 section 4). Its checks, in order:
// after EHLO only (503 5.5.1), once per session (503 5.5.1), TLS first
// when Config.RequireTLS (530 5.7.0), a secure channel for a plaintext
// password (538 5.7.11), a known mechanism (504 5.5.4). Then the
// exchange: 334 challenges, "*" cancels (501 5.0.0), bad base64 is 501
// 5.5.2, and the Authenticator decides: 235 2.7.0, or 535 5.7.8 after
// Config.AuthFailureDelay, or 454 4.7.0.
func (s *Session) auth(cmd Command) (*Reply, error) {
	mech, ir, hasIR := strings.Cut(cmd.Arg, " ")
	mech = upperASCII(mech)
	switch {
	case s.env.Protocol != "ESMTP":
		return s.refuse(cmd.Verb, replyAuthNeedEHLO), nil
	case s.env.AuthUser != "":
		return s.refuse(cmd.Verb, replyAuthTwice), nil
	case s.cfg.RequireTLS && s.env.TLSVersion == "":
		return s.refuse(cmd.Verb, replyNeedTLS), nil
	case !s.authChannelOK():
		return s.refuse(cmd.Verb, replyAuthNeedTLS), nil
	case mech != "PLAIN" && mech != "LOGIN":
		return s.refuse(cmd.Verb, replyAuthMechanism), nil
	}
	var first []byte // the initial response, nil for none
	if hasIR {
		if ir == "=" { // RFC 4954 section 4: an empty initial response
			first = []byte{}
		} else {
			b, err := base64.StdEncoding.DecodeString(ir)
			if err != nil {
				return s.refuse(cmd.Verb, replyAuthDecode), nil
			}
			first = b
		}
	}
	var user, pass string
	var r *Reply
	var err error
	if mech == "PLAIN" {
		user, pass, r, err = s.plain(first)
	} else {
		user, pass, r, err = s.login(first)
	}
	if r != nil || err != nil {
		return r, err
	}
	return s.check(mech, user, pass), nil
}

// plain runs the PLAIN exchange (RFC 4616) with go-sasl's server: the
// initial response, or one 334 and the client's answer. It returns the
// user name and password, or the reply (and error) that ends the
// exchange. An authorization identity other than the user's own is
// refused as bad credentials: a user may act only as themself.
func (s *Session) plain(first []byte) (user, pass string, r *Reply, err error) {
	var identity string
	srv := sasl.NewPlainServer(func(id, u, p string) error {
		identity, user, pass = id, u, p
		return nil
	})
	resp := first
	for {
		challenge, done, serr := srv.Next(resp)
		if serr != nil {
			// Not three NUL-separated fields: no credentials at all.
			return "", "", s.authFailed("PLAIN", "", "malformed response"), nil
		}
		if done {
			break
		}
		resp, r, err = s.challenge(challenge)
		if r != nil || err != nil {
			return "", "", r, err
		}
	}
	if identity != "" && identity != user {
		return "", "", s.authFailed("PLAIN", user, "authorization identity differs"), nil
	}
	return user, pass, nil, nil
}

// login runs the LOGIN exchange (draft-murchison-sasl-login): the user
// name, as the initial response or after "334 VXNlcm5hbWU6"
// ("Username:"), then the password after "334 UGFzc3dvcmQ6"
// ("Password:"). go-sasl no longer has a server for it.
func (s *Session) login(first []byte) (user, pass string, r *Reply, err error) {
	u := first
	if u == nil {
		if u, r, err = s.challenge([]byte("Username:")); r != nil || err != nil {
			return "", "", r, err
		}
	}
	p, r, err := s.challenge([]byte("Password:"))
	if r != nil || err != nil {
		return "", "", r, err
	}
	return string(u), string(p), nil, nil
}

// challenge sends a 334 reply with the base64 of c and reads the
// client's base64 answer within Config.CommandTimeout. It returns the
// decoded answer, or the reply that ends the exchange: 501 5.0.0 for
// "*" (the client cancels, RFC 4954 section 4), 501 5.5.2 for bad
// base64, 500 5.5.6 for a line over 12288 bytes; a read error or
// timeout ends the session as in any other command.
func (s *Session) challenge(c []byte) ([]byte, *Reply, error) {
	if err := s.send(&Reply{Code: 334, Lines: []string{base64.StdEncoding.EncodeToString(c)}}); err != nil {
		return nil, nil, err
	}
	if err := s.flush(); err != nil {
		return nil, nil, err
	}
	s.setDeadline(s.cfg.CommandTimeout)
	line, err := readLine(s.r, s.line, maxAuthLine)
	s.line = line
	switch {
	case errors.Is(err, errLineTooLong):
		return nil, s.refuse(VerbAUTH, replyAuthLineTooLong), nil
	case err != nil:
		r, err := s.readError(err, "AUTH response")
		return nil, r, err
	case string(line) == "*":
		s.log.Info("auth cancelled by the client")
		return nil, s.refuse(VerbAUTH, replyAuthCancelled), nil
	}
	b, err := base64.StdEncoding.DecodeString(string(line))
	if err != nil {
		return nil, s.refuse(VerbAUTH, replyAuthDecode), nil
	}
	return b, nil, nil
}

// check asks Config.Auth about user and pass and returns the reply: 235
// 2.7.0 and Envelope.AuthUser set; 535 5.7.8 after
// Config.AuthFailureDelay for credentials that do not match, whether the
// user exists or not; 454 4.7.0 when the check failed. A user name or
// password that is empty, too long, not UTF-8 or holds a control
// character is refused as wrong without asking: no checker ever sees a
// NUL, a newline or a colon's worth of surprise in a name.
func (s *Session) check(mech, user, pass string) *Reply {
	if !goodCredential(user) || pass == "" || len(pass) > maxAuthID || strings.ContainsRune(pass, 0) {
		return s.authFailed(mech, user, "unusable user name or password")
	}
	err := s.cfg.Auth.Authenticate(s.env.Client, user, pass)
	switch {
	case err == nil:
		s.env.AuthUser = user
		s.log.Info("auth", "mechanism", mech, "user", user, "code", replyAuthOK.Code)
		return replyAuthOK
	case errors.Is(err, ErrBadCredentials):
		return s.authFailed(mech, user, "bad credentials")
	default:
		s.log.Warn("auth check failed", "mechanism", mech, "user", user, "err", err, "code", replyAuthTempFail.Code)
		return replyAuthTempFail
	}
}

// authFailed logs a failed authentication with the client and the user
// name (never the password), waits Config.AuthFailureDelay (as
// Postfix's smtpd_error_sleep_time, so a guesser gets one try per
// delay), and returns 535 5.7.8. The reply counts toward
// Config.MaxErrors like every refusal.
func (s *Session) authFailed(mech, user, why string) *Reply {
	if len(user) > 256 {
		user = user[:256]
	}
	s.log.Warn("auth failed", "mechanism", mech, "user", user, "reason", why, "code", replyAuthFailed.Code)
	if d := s.cfg.AuthFailureDelay; d > 0 {
		if dl := s.cfg.Deadline; !dl.IsZero() {
			d = min(d, max(0, time.Until(dl)))
		}
		time.Sleep(d)
	}
	return replyAuthFailed
}

// goodCredential reports whether a user name can be checked: 1 to
// maxAuthID bytes of UTF-8 with no control character.
func goodCredential(v string) bool {
	if v == "" || len(v) > maxAuthID || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// decodeXtext decodes an xtext value (RFC 3461 section 4): "+" and two
// upper-case hex digits stand for one byte; "+" and "=" otherwise, and
// bytes outside "!" to "~", may not appear. It is for the AUTH=
// parameter of MAIL FROM (RFC 4954 section 5).
func decodeXtext(v string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '+':
			if i+2 >= len(v) {
				return "", false
			}
			h, ok := unhex(v[i+1], v[i+2])
			if !ok {
				return "", false
			}
			b.WriteByte(h)
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// unhex decodes two upper-case hex digits (RFC 3461 section 4 allows no
// lower case).
func unhex(a, b byte) (byte, bool) {
	d := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	x, ok1 := d(a)
	y, ok2 := d(b)
	return x<<4 | y, ok1 && ok2
}
