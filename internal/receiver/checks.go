package receiver

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/msgcheck"
	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// headerCheck returns the session's CheckHeader: msgcheck in the mode of
// SMTP_HEADER_CHECKS, and, with SMTP_ADD_MISSING_HEADERS, Date: and
// Message-ID: added where a local session's message lacks them, as a
// submission agent does (RFC 6409 section 8). Otherwise the message is
// never changed. It returns nil when there is nothing to do, so that the
// session holds nothing back.
func (c *Config) headerCheck(now func() time.Time) func(*protocol.Envelope, []byte) ([]byte, *protocol.Reply) {
	mode, _ := msgcheck.ParseMode(c.HeaderChecks)
	if mode == msgcheck.Off && !c.AddMissingHeaders {
		return nil
	}
	return func(env *protocol.Envelope, header []byte) ([]byte, *protocol.Reply) {
		add := c.AddMissingHeaders && env.Client.Local
		sum, err := msgcheck.Check(header, msgcheck.Options{Mode: mode, SMTPUTF8: env.SMTPUTF8, AddMissing: add})
		if err != nil {
			// The defect's text is printable ASCII and quotes nothing
			// of the message. RFC 3463 X.6.0: other media error.
			return nil, &protocol.Reply{Code: 550, Enhanced: "5.6.0", Lines: []string{err.Error()}}
		}
		if !add {
			return nil, nil
		}
		t := now()
		return msgcheck.Missing(sum, t, uniqueID(t), c.Hostname), nil
	}
}

// uniqueID is the left part of an added Message-ID: the time and 64
// random bits.
func uniqueID(t time.Time) string {
	var b [8]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102150405") + "." + hex.EncodeToString(b[:])
}
