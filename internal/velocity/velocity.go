// Package velocity limits the rate of new SMTP sessions when every session
// is its own process (inetd, xinetd, systemd Accept=yes, tcpserver).
//
// No process lives long enough to keep a count in memory, so the count
// lives in a small state file in the spool root. Each new session opens
// it, takes an exclusive flock(2), reads it, records itself, writes it
// back with a single pwrite(2) and closes it, all in a few microseconds.
//
// The file is one page of fixed layout (see page.go) protected by a magic
// string, a format version and a CRC-32C, so that:
//   - a process killed at any point cannot leave a lock behind: the kernel
//     drops a flock when its holder dies;
//   - a process killed before its pwrite leaves the old state; one page
//     written at offset 0 in one call is not torn by a kill (Linux checks
//     for a fatal signal between pages, not within one);
//   - anything else (a torn write after a power cut, a truncated or foreign
//     file) fails the check and is reset to an empty state, never an
//     error. Losing the counts makes the limit lenient for one window,
//     which is the safe direction for a mail server.
//
// Every session is counted, the refused ones too, as Postfix's anvil
// counts connection attempts: a client that keeps hammering while over a
// limit stays over it until it backs off for a whole window.
package velocity

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Limits are the hot limits on new sessions. The zero value is off.
type Limits struct {
	// Window is the sliding window of the global limit, a whole number
	// of seconds up to MaxWindow. Counting is exact to the second.
	Window time.Duration
	// MaxSessions is the number of new sessions allowed in any Window,
	// from all clients together; 0 turns the global limit off.
	MaxSessions int
	// MaxPerClient is the number of new sessions allowed from one client
	// in any 60 seconds, up to MaxClientRate; 0 turns it off. A client is
	// an IPv4 address or an IPv6 /64, the smallest network a site is
	// normally given (RFC 6177), so that one host cannot dodge the limit
	// by walking its own addresses.
	MaxPerClient int
}

const (
	// MaxWindow is the longest global window: the file keeps one counter
	// per second for this long.
	MaxWindow = ringLen * time.Second
	// MaxClientRate is the highest per-client limit: per-client counters
	// are one byte per second (see page.go).
	MaxClientRate = 255
	// ClientWindow is the window of the per-client limit.
	ClientWindow = clientRing * time.Second
)

// Reasons for a refusal, in Decision.Reason.
const (
	ReasonGlobal = "global"
	ReasonClient = "client"
)

// Decision is the outcome of Check.
type Decision struct {
	// Allowed is false when a limit is exceeded: the caller answers 421
	// and ends the session.
	Allowed bool
	// Reason names the limit exceeded: ReasonGlobal or ReasonClient
	// (ReasonClient when both are); empty when Allowed.
	Reason string
	// Count is the number of sessions in the global window, this one
	// included; 0 when the global limit is off.
	Count int
	// ClientCount is the number of sessions from this client in the last
	// ClientWindow, this one included; 0 when the per-client limit is off
	// or the session has no client address.
	ClientCount int
}

// Validate reports a setting that Check cannot honour, naming it.
func (l Limits) Validate() error {
	if l.MaxSessions < 0 || l.MaxPerClient < 0 {
		return errors.New("velocity: limits must not be negative")
	}
	if l.MaxSessions > 0 && (l.Window < time.Second || l.Window > MaxWindow || l.Window%time.Second != 0) {
		return fmt.Errorf("velocity: window %v must be a whole number of seconds from 1s to %v", l.Window, MaxWindow)
	}
	if l.MaxPerClient > MaxClientRate {
		return fmt.Errorf("velocity: per-client limit %d is over %d sessions a minute", l.MaxPerClient, MaxClientRate)
	}
	return nil
}

// Check records one new session from client at now in the state file at
// path (created with mode 0600 if missing) and reports whether it is
// within lim. client may be the zero Addr (a local session): it is then
// counted against the global limit only. When no limit applies, Check
// does not touch the file at all.
//
// An error means the state could not be read or written (or lim is
// invalid); the caller should let the session through and log it: a rate
// limiter must not stop the mail.
func Check(path string, client netip.Addr, now time.Time, lim Limits) (Decision, error) {
	return check(path, client, now, lim, options{lockTimeout: lockTimeout})
}

// lockTimeout bounds the wait for the lock. The lock is held for
// microseconds; only a holder that is stopped (SIGSTOP, a frozen cgroup)
// can hold it longer, and sessions must not pile up behind it.
const lockTimeout = 2 * time.Second

// options are the knobs of check that tests turn.
type options struct {
	lockTimeout time.Duration
	// beforeWrite, when set, runs with the lock held and the new page
	// sealed, just before the pwrite: tests kill the process there.
	beforeWrite func(fd int, page []byte)
}

func check(path string, client netip.Addr, now time.Time, lim Limits, o options) (Decision, error) {
	perClient := lim.MaxPerClient > 0 && client.IsValid()
	if lim.MaxSessions == 0 && !perClient {
		return Decision{Allowed: true}, nil
	}
	if err := lim.Validate(); err != nil {
		return Decision{}, err
	}
	// Raw system calls rather than *os.File: the whole Check then costs
	// five of them (open, flock, pread, pwrite, close) and nothing else.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return Decision{}, &os.PathError{Op: "velocity: open", Path: path, Err: err}
	}
	// Closing the file releases the lock.
	defer unix.Close(fd)
	if err := lock(fd, o.lockTimeout); err != nil {
		return Decision{}, &os.PathError{Op: "velocity: lock", Path: path, Err: err}
	}
	var p page
	n, err := unix.Pread(fd, p[:], 0)
	if err != nil {
		return Decision{}, &os.PathError{Op: "velocity: read", Path: path, Err: err}
	}
	if n < pageSize || !p.valid() {
		// New, short, torn or foreign: start afresh.
		p = page{}
	}
	var key clientKey
	if perClient {
		key = keyOf(client)
	}
	d := p.record(now, lim, key, perClient)
	p.seal()
	if o.beforeWrite != nil {
		o.beforeWrite(fd, p[:])
	}
	// One pwrite of one page at offset 0.
	if n, err := unix.Pwrite(fd, p[:], 0); err != nil || n != pageSize {
		if err == nil {
			err = io.ErrShortWrite
		}
		return Decision{}, &os.PathError{Op: "velocity: write", Path: path, Err: err}
	}
	return d, nil
}

var errLockTimeout = errors.New("held by another process for too long")

// lock takes an exclusive flock on fd, polling so that the wait is
// bounded: flock(2) itself has no timeout.
func lock(fd int, timeout time.Duration) error {
	var deadline time.Time
	pause := 20 * time.Microsecond
	for {
		switch err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
		default:
			return err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(timeout)
		} else if time.Now().After(deadline) {
			return errLockTimeout
		}
		time.Sleep(pause)
		pause = min(2*pause, 5*time.Millisecond)
	}
}

// clientKey is a client's address as 16 bytes: IPv4 as an IPv4-mapped
// address, IPv6 cut to its /64. The two never collide: a mapped address
// has non-zero bits past the first 64.
type clientKey [16]byte

func keyOf(a netip.Addr) clientKey {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a.As16()
}
