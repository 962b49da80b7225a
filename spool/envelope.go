// Package spool owns the on-disk mail spool: the message file format (one
// immutable file per accepted message, envelope then message bytes), the
// atomic and durable writer used by smtp-stdio, and the reader used by
// smtp-send. It knows nothing of SMTP replies; callers classify its errors.
//
// The file format is described in FORMAT.md beside this file.
package spool

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version is the spool file format version written by this package. The
// first line of every message file is Magic, a space and this number.
const Version = 1

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
}

// Validate reports whether e can be written into a message file: every
// field must be free of CR, LF and NUL so that the envelope section stays
// one field per line, and there must be at least one recipient. It returns
// an error naming the first bad field.
func (e *Envelope) Validate() error {
	if e.QueueID == "" || !validQueueID(e.QueueID) {
		return fmt.Errorf("spool: invalid queue id %q", e.QueueID)
	}
	if len(e.To) == 0 {
		return errors.New("spool: envelope has no recipients")
	}
	check := func(name, v string) error {
		if strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("spool: envelope field %s contains CR, LF or NUL", name)
		}
		return nil
	}
	for _, f := range [][2]string{
		{"client", e.Client}, {"helo", e.Helo}, {"protocol", e.Protocol},
		{"body", e.Body}, {"mail-from", e.From},
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
	return nil
}

// validQueueID reports whether id is safe as a file name: letters, digits,
// '.', '-' and '_' only, not starting with '.', at most 64 bytes.
func validQueueID(id string) bool {
	if len(id) == 0 || len(id) > 64 || id[0] == '.' {
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
