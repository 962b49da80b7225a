package protocol

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Timeouts (RFC 5321 section 4.5.3.2): the read deadline before each
// command and each block of message text, the whole session's
// Config.Deadline, and the minimum data rate during DATA.

// readError ends the session after a failed read: 421 and ErrTimeout on
// a timeout, whether the client fell silent or below
// Config.MinDataRate; no reply and the wrapped error otherwise.
func (s *Session) readError(err error, phase string) (*Reply, error) {
	if r, end := s.stopped(err); r != nil {
		return r, end
	}
	switch {
	case errors.Is(err, errTooSlow), errors.Is(err, os.ErrDeadlineExceeded) && s.slow:
		s.log.Info("timeout", "phase", phase, "reason", "data rate below minimum", "min_rate", s.cfg.MinDataRate)
		return replyTooSlow(s.cfg.Hostname), ErrTimeout
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Info("timeout", "phase", phase)
		return replyTimeout(s.cfg.Hostname), ErrTimeout
	}
	return nil, fmt.Errorf("protocol: reading %s: %w", phase, err)
}

// setDeadline sets the read deadline timeout from now, or Config.Deadline
// when that is sooner. A zero timeout and no Deadline clear it.
func (s *Session) setDeadline(timeout time.Duration) {
	var t time.Time
	if timeout > 0 {
		t = s.cfg.Now().Add(timeout)
	}
	s.setDeadlineAt(t)
}

// setDeadlineAt sets the read deadline t, or Config.Deadline when that is
// sooner; zero for both clears it. It reports whether t is the one set.
func (s *Session) setDeadlineAt(t time.Time) bool {
	s.slow = false
	own := true
	if dl := s.cfg.Deadline; !dl.IsZero() && (t.IsZero() || dl.Before(t)) {
		t, own = dl, false
	}
	if s.stopping.Load() { // Shutdown: no read may wait
		t, own = stopDeadline, false
	}
	if s.d != nil {
		// A reader that cannot time out (a blocking pipe) says so here;
		// it then waits for the client, as it would with no Deadliner.
		_ = s.d.SetReadDeadline(t)
	}
	return own
}

// dataDeadline runs before each read of message text, after read bytes
// of it: it sets the read deadline to DataTimeout from now (RFC 5321
// section 4.5.3.2.6), or sooner when the client is below MinDataRate: the
// DATA phase that began at start may last DataTimeout plus one second
// per MinDataRate bytes read. It returns errTooSlow when that time has
// passed already, which is how a reader that cannot time out stops a
// slow client (at its next byte).
func (s *Session) dataDeadline(start time.Time, read int64) error {
	rate, grace := s.cfg.MinDataRate, s.cfg.DataTimeout
	if rate <= 0 || grace <= 0 {
		s.setDeadline(grace)
		return nil
	}
	now := s.cfg.Now()
	limit := start.Add(grace + rateAllowance(read, rate))
	if !now.Before(limit) {
		return errTooSlow
	}
	if t := now.Add(grace); t.Before(limit) {
		s.setDeadlineAt(t)
		return nil
	}
	s.slow = s.setDeadlineAt(limit)
	return nil
}

// rateAllowance is the time n bytes earn at rate bytes per second, capped
// at a century so that no sum overflows.
func rateAllowance(n, rate int64) time.Duration {
	const century = 100 * 365 * 24 * time.Hour
	secs := n / rate
	if secs >= int64(century/time.Second) {
		return century
	}
	frac := float64(n%rate) / float64(rate)
	return time.Duration(secs)*time.Second + time.Duration(frac*float64(time.Second))
}
