package protocol

import (
	"errors"
	"os"
	"time"
)

// Stopping a session from outside, for a server that runs many
// sessions in one process and is told to stop (RFC 5321 section 3.8:
// "421 <domain> Service not available, closing transmission channel").

// replyShuttingDown ends a session that the server stops: 421 4.3.2
// (RFC 3463: system not accepting network messages).
func replyShuttingDown(host string) *Reply {
	return &Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{host + " Service shutting down, closing transmission channel"}}
}

// Shutdown asks a session served by ServeConn to end at its next read:
// the read waiting for a command or for message text stops at once, the
// session answers 421 4.3.2 and Serve returns ErrShutdown. A message
// whose text was being read is aborted, never committed; one being
// committed finishes first and gets its reply. Shutdown may be called
// from any goroutine, before or during Serve, more than once; it does
// nothing for a session served by Serve without a connection whose
// deadlines work.
func (s *Session) Shutdown() {
	s.stopping.Store(true)
	if c := s.conn; c != nil {
		c.SetReadDeadline(stopDeadline)
	}
}

// stopDeadline is a read deadline long past: reads fail at once.
var stopDeadline = time.Unix(1, 0)

// stopped returns the reply and error for a read that failed because
// Shutdown was called, or nil, nil.
func (s *Session) stopped(err error) (*Reply, error) {
	if s.stopping.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		s.log.Info("session stopped by the server")
		return replyShuttingDown(s.cfg.Hostname), ErrShutdown
	}
	return nil, nil
}
