package protocol

import (
	"errors"
	"strings"
	"testing"
)

// TestShutdown: Session.Shutdown ends an idle session with 421 4.3.2 at
// once, and a session in the middle of message text too, with the
// message aborted, never committed; a message committed before it keeps
// its 250.
func TestShutdown(t *testing.T) {
	for _, inData := range []bool{false, true} {
		td := startTLSDialog(t, testConfig())
		td.expect("", "220 ")
		td.expect("EHLO c.example", "250-")
		td.expect("MAIL FROM:<a@c.example>", "250 ")
		td.expect("RCPT TO:<b@d.example>", "250 ")
		td.expect("DATA", "354")
		td.expect("Subject: one\r\n\r\nkept\r\n.", "250 2.0.0 OK queued as Q1")
		if inData {
			td.expect("MAIL FROM:<a@c.example>", "250 ")
			td.expect("RCPT TO:<b@d.example>", "250 ")
			td.expect("DATA", "354")
			td.send("Subject: two\r\n\r\nhalf")
		}
		td.session.Shutdown()
		if r := td.reply(); !strings.HasPrefix(r, "421 4.3.2 mx.example.net Service shutting down") {
			t.Errorf("in DATA %v: %q", inData, r)
		}
		if err := td.end(); !errors.Is(err, ErrShutdown) {
			t.Errorf("in DATA %v: Serve = %v", inData, err)
		}
		if c := td.d.committed(); len(c) != 1 {
			t.Errorf("in DATA %v: %d committed", inData, len(c))
		}
		if err := td.d.checkFinished(); err != nil {
			t.Error(err)
		}
	}
}
