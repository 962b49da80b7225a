package receiver

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/msgcheck"
	"github.com/smtp-stdio/smtp-stdio/internal/peer"
	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// The timing checks below (early talker, improper pipelining) run only
// when standard input is a socket: there the timing of the bytes is the
// client's. A session on a pipe is exempt, a local user's (a piped session
// file is all "early") as much as one behind a proxy that pipes, whose
// timing is the proxy's.

// replyEarlyTalker answers, in place of the 220 greeting, a client that
// sent before it (RFC 5321 section 3.1 allows 554 there; RFC 3463 X.5.0:
// other protocol status), as Exim's smtp_enforce_sync does.
var replyEarlyTalker = &protocol.Reply{Code: 554, Enhanced: "5.5.0",
	Lines: []string{"Protocol error: client sent data before the greeting"}}

// maxGreetPause is below the 5 minutes a client waits for the greeting
// (RFC 5321 section 4.5.3.2.1).
const maxGreetPause = 5 * time.Minute

// checkAbuse checks the settings of abuse handling and message checks.
func (c *Config) checkAbuse() error {
	bad := func(name, why string) error {
		return fmt.Errorf("config: %s_%s %s", Prefix, name, why)
	}
	switch {
	case c.GreetPause < 0 || c.GreetPause >= maxGreetPause:
		return bad("GREET_PAUSE", "must be at least 0 and under 5m (RFC 5321 4.5.3.2.1)")
	case c.MinDataRate < 0:
		return bad("MIN_DATA_RATE", "must not be negative")
	case c.MaxHeaderSize < 1000:
		return bad("MAX_HEADER_SIZE", "must be at least 1000 (one line, RFC 5322 2.1.1)")
	}
	if _, err := msgcheck.ParseMode(c.HeaderChecks); err != nil {
		return bad("HEADER_CHECKS", "must be lenient, strict or off")
	}
	return nil
}

// earlyTalker reports whether the client on the socket fd sent before the
// greeting, waiting up to SMTP_GREET_PAUSE for it (as Postfix's
// postscreen_greet_wait; a pause delays every session by that much), and
// logs what it found. A failed check lets the session go on.
func earlyTalker(cfg *Config, fd int, log *slog.Logger) bool {
	if !cfg.RejectEarlyTalkers {
		return false
	}
	start := time.Now()
	early, err := peer.PendingInput(fd, cfg.GreetPause)
	switch {
	case err != nil:
		log.Warn("early talker check failed; session allowed", "err", err)
	case early:
		log.Warn("session refused: early talker, data before the greeting",
			"after", time.Since(start).Round(time.Millisecond), "pause", cfg.GreetPause)
	}
	return early
}

// socketChecks turns on the session's pipelining check for a client on
// the socket fd.
func socketChecks(cfg *Config, pc *protocol.Config, fd int) {
	if !cfg.ForbidImproperPipelining {
		return
	}
	pc.ForbidImproperPipelining = true
	pc.InputPending = func() bool {
		pending, _ := peer.PendingInput(fd, 0)
		return pending
	}
}
