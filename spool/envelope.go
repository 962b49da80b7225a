// Package spool owns the on-disk mail spool's contract between the two
// programs: the message file format (one immutable file per accepted
// message, envelope then message bytes), the atomic and durable writer
// used by smtp-stdio, the reader used by smtp-send, and the one way files
// and directories in the spool are opened and checked. It knows nothing
// of SMTP replies (callers classify its errors) nor of delivery state,
// which is smtp-send's own (package queue).
//
// The file format is described in FORMAT.md beside this file.
package spool

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version is the newest spool file format version, the one this package
// writes for an envelope that needs it. The first line of every message
// file is Magic, a space and its version. The writer writes the oldest
// version that holds the envelope: VersionDSN when it carries a DSN
// parameter, else Version1, so that a reader of version 1 still reads
// every file that it would not misread. The reader reads both.
const Version = VersionDSN

// The versions of the format (FORMAT.md).
const (
	// Version1 is the first format.
	Version1 = 1
	// VersionDSN adds the DSN parameters (RFC 3461): ret and envid per
	// message, notify and orcpt per recipient after its rcpt-to line. A
	// reader of version 1 would drop a NOTIFY=NEVER and bounce, so such a
	// file is version 2.
	VersionDSN = 2
)

// Magic is the first word of every message file.
const Magic = "smtp-spool"

// Envelope is the SMTP envelope of one message (RFC 5321 section 2.3.1) plus
// the facts about its reception that the sender and the trace need.
type Envelope struct {
	// QueueID names the message in the spool and in logs. See NewQueueID.
	QueueID string
	// Received is when the message was accepted (arrival time, RFC 3464
	// Arrival-Date). Stored in UTC with nanoseconds.
	Received time.Time
	// Client is the client address as "ip:port", "ip", or "" for a local
	// (pipe) session.
	Client string
	// Helo is the domain or address literal the client gave in EHLO/HELO,
	// already sanitised by the receiver.
	Helo string
	// Protocol is "SMTP" (HELO) or "ESMTP" (EHLO), as in the Received: header
	// WITH clause (RFC 5321 section 4.4).
	Protocol string
	// Body is the MAIL FROM BODY= parameter (RFC 6152): "", "7BIT" or
	// "8BITMIME".
	Body string
	// SMTPUTF8 is true when MAIL FROM carried the SMTPUTF8 parameter
	// (RFC 6531 section 3.4).
	SMTPUTF8 bool
	// From is the reverse-path without angle brackets; "" is the null
	// reverse-path <> (RFC 5321 section 4.5.5).
	From string
	// To lists the forward-paths without angle brackets, in RCPT TO order.
	To []string
	// TLSVersion is the TLS version the message came over, "TLSv1.3",
	// or "" without TLS (RFC 3207). Optional in the file: written only
	// when set, so that older readers and files need no new version.
	TLSVersion string
	// TLSCipher is the IANA name of the TLS cipher suite, such as
	// "TLS_AES_128_GCM_SHA256"; "" without TLS. Optional as TLSVersion.
	TLSCipher string
	// AuthUser is the user name the client authenticated as with AUTH
	// (RFC 4954), "" without. Optional as TLSVersion.
	AuthUser string

	// Ret is MAIL FROM's RET= (RFC 3461 section 4.3): "FULL", "HDRS", or
	// "" when absent (the reporting MTA then chooses).
	Ret string
	// EnvID is MAIL FROM's ENVID= decoded from xtext (RFC 3461 section
	// 4.4), at most MaxEnvIDLen octets; "" when absent. It goes into
	// every notice about the message as Original-Envelope-Id (RFC 3464
	// section 2.2.1) and, xtext-encoded again, to the next hop.
	EnvID string
	// DSN holds the recipients' DSN parameters: DSN[i] is those of To[i].
	// It may be shorter than To, nil when no recipient gave any: read it
	// through RcptDSN.
	DSN []RcptDSN
}

// RcptDSN is the DSN parameters of one recipient (RFC 3461 sections 4.1
// and 4.2); the zero value is a recipient that gave none.
type RcptDSN struct {
	// Notify is RCPT TO's NOTIFY= (RFC 3461 section 4.1): "NEVER", or
	// one or more of "SUCCESS", "FAILURE" and "DELAY" joined by commas in
	// that order; "" when absent, where the default holds (a notice of
	// failure, and of delay at the MTA's choice).
	Notify string
	// ORcpt is RCPT TO's ORCPT= (RFC 3461 section 4.2): the addr-type in
	// lower case, ";", and the original address decoded (from xtext, or
	// for "utf-8" from RFC 6533's form), as "rfc822;bob@example.org";
	// "" when absent. It goes into notices as Original-Recipient (RFC
	// 3464 section 2.3.1) and, encoded again for its type, to the next
	// hop.
	ORcpt string
}

// RcptDSN returns the DSN parameters of To[i]: the zero RcptDSN (none
// given) when DSN does not reach that far.
func (e *Envelope) RcptDSN(i int) RcptDSN {
	if i >= 0 && i < len(e.DSN) {
		return e.DSN[i]
	}
	return RcptDSN{}
}

// hasDSN reports whether e carries any DSN parameter: its file is then
// VersionDSN.
func (e *Envelope) hasDSN() bool {
	if e.Ret != "" || e.EnvID != "" {
		return true
	}
	for _, d := range e.DSN {
		if d != (RcptDSN{}) {
			return true
		}
	}
	return false
}

// validNotify reports whether s is a Notify value of RcptDSN.
func validNotify(s string) bool {
	switch s {
	case "", "NEVER", "SUCCESS", "FAILURE", "DELAY", "SUCCESS,FAILURE", "SUCCESS,DELAY",
		"FAILURE,DELAY", "SUCCESS,FAILURE,DELAY":
		return true
	}
	return false
}

// Limits of the envelope. The writer (Create) refuses an envelope over
// them and the reader (Open) a file over them, so both agree on what a
// message file can hold; the limits of smtp-send's state files derive
// from these (package queue).
const (
	// MaxRecipients is the most recipients of one message file. RFC 5321
	// section 4.5.3.1.8 asks a server to take at least 100 per message;
	// Postfix takes 1,000 (smtpd_recipient_limit). smtp-stdio never
	// accepts more, whatever SMTP_MAX_RECIPIENTS says.
	MaxRecipients = 1000
	// MaxAddrLen is the longest reverse- or forward-path stored, in
	// octets, without angle brackets: a local part of 64 octets, '@' and
	// a domain of 255 (RFC 5321 sections 4.5.3.1.1 and 4.5.3.1.2). The
	// receiver takes paths of at most 256 octets with the brackets
	// (section 4.5.3.1.3); the rest is room for addresses it qualifies.
	MaxAddrLen = 64 + 1 + 255
	// MaxEnvIDLen is the longest ENVID, in octets (RFC 3461 section 4.4:
	// 100 characters).
	MaxEnvIDLen = 100
	// MaxORcptLen is the longest ORCPT value stored, addr-type and ";"
	// included, in octets: RFC 3461 section 4.2 bounds the parameter at
	// 500 characters.
	MaxORcptLen = 600
)

// Validate reports whether e can be written into a message file: every
// field must be free of CR, LF and NUL so that the envelope section stays
// one field per line, there must be from one to MaxRecipients recipients,
// and no path may be longer than MaxAddrLen. It returns an error naming
// the first bad field.
func (e *Envelope) Validate() error {
	if e.QueueID == "" || !ValidQueueID(e.QueueID) {
		return fmt.Errorf("spool: invalid queue id %q", e.QueueID)
	}
	if len(e.To) == 0 {
		return errors.New("spool: envelope has no recipients")
	}
	if len(e.To) > MaxRecipients {
		return fmt.Errorf("spool: envelope has %d recipients, more than %d", len(e.To), MaxRecipients)
	}
	if len(e.From) > MaxAddrLen {
		return fmt.Errorf("spool: mail-from is longer than %d octets", MaxAddrLen)
	}
	for _, r := range e.To {
		if len(r) > MaxAddrLen {
			return fmt.Errorf("spool: rcpt-to is longer than %d octets", MaxAddrLen)
		}
	}
	if err := e.validateDSN(); err != nil {
		return err
	}
	check := func(name, v string) error {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c == '\r' || c == '\n' || c == 0 {
				return fmt.Errorf("spool: envelope field %s contains CR, LF or NUL", name)
			}
		}
		return nil
	}
	for _, f := range [][2]string{
		{"client", e.Client}, {"helo", e.Helo}, {"protocol", e.Protocol},
		{"body", e.Body}, {"mail-from", e.From},
		{"tls-version", e.TLSVersion}, {"tls-cipher", e.TLSCipher},
		{"auth-user", e.AuthUser}, {"envid", e.EnvID},
	} {
		if err := check(f[0], f[1]); err != nil {
			return err
		}
	}
	for _, r := range e.To {
		if err := check("rcpt-to", r); err != nil {
			return err
		}
	}
	for _, d := range e.DSN {
		if err := check("orcpt", d.ORcpt); err != nil {
			return err
		}
	}
	return nil
}

// validateDSN checks the DSN fields of e (see Validate).
func (e *Envelope) validateDSN() error {
	switch {
	case e.Ret != "" && e.Ret != "FULL" && e.Ret != "HDRS":
		return fmt.Errorf("spool: ret is %q, not FULL or HDRS", e.Ret)
	case len(e.EnvID) > MaxEnvIDLen:
		return fmt.Errorf("spool: envid is longer than %d octets", MaxEnvIDLen)
	case len(e.DSN) > len(e.To):
		return fmt.Errorf("spool: DSN parameters for %d recipients of %d", len(e.DSN), len(e.To))
	}
	for _, d := range e.DSN {
		if !validNotify(d.Notify) {
			return fmt.Errorf("spool: notify is %q", d.Notify)
		}
		if typ, addr, ok := strings.Cut(d.ORcpt, ";"); d.ORcpt != "" && (!ok || typ == "" || addr == "" || len(d.ORcpt) > MaxORcptLen) {
			return fmt.Errorf("spool: orcpt is not addr-type;address of at most %d octets", MaxORcptLen)
		}
	}
	return nil
}

// MaxQueueIDLen is the longest queue id, in octets.
const MaxQueueIDLen = 64

// ValidQueueID reports whether id is safe as a file name: letters, digits,
// '.', '-' and '_' only, not starting with '.', at most MaxQueueIDLen
// octets. Every message file's queue id is one; a queue id is also the
// first part of the sender's own file names, before an '@'.
func ValidQueueID(id string) bool {
	if len(id) == 0 || len(id) > MaxQueueIDLen || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
