// Package velocity limits the rate of new SMTP sessions when every session
// is its own process (inetd, xinetd, systemd Accept=yes, tcpserver).
//
// No process lives long enough to keep a count in memory, and there is no
// daemon to ask, so the counts live in a state file of fixed size (256
// KiB) in the spool root. Each new session opens it, takes an exclusive
// flock(2), reads the header page and the one page of client slots its
// client hashes to, records itself, writes the two pages back with one
// pwrite(2) each and closes it, in some 25 microseconds whatever the
// number of clients (BenchmarkCheckManyClients).
//
// The per-client limit holds for up to 8,001 distinct clients active at
// once (63 pages of 127 slots; see page.go). A client's page is chosen by
// a keyed hash (AES-128 under a random key made with the file), so a
// client cannot pick addresses that crowd one page. A client is forgotten
// only when its page is full of clients active in the last minute: the one
// seen least recently gives up its slot. With n clients active, a page
// holds Binomial(n, 1/63) of them: the chance that any page overflows is
// below 1e-60 at 1,000 clients, 3e-11 at 4,000, 2e-5 at 5,000, 4.5% at
// 6,000. Two clients share counts only if their 64-bit fingerprints and
// pages are equal, a chance of about n²/2^71 (3e-14 at 8,000 clients):
// that is the rate of false refusals. Short of a client forgotten or a
// damaged file, the count never underestimates.
//
// Each page is protected by a CRC-32C, the header also by a magic string
// and a format version, so that:
//   - a process killed at any point cannot leave a lock behind: the kernel
//     drops a flock when its holder dies;
//   - a process killed before a pwrite leaves that page's old state; one
//     page written at its offset in one call is not torn by a kill (Linux
//     checks for a fatal signal between pages, not within one);
//   - anything else (a torn write after a power cut, a truncated or foreign
//     file, a file of an older format) fails the check and is reset to an
//     empty state, never an error: a bad header empties the whole file, a
//     bad client page only its clients. Losing counts makes the limit
//     lenient for one window, which is the safe direction for a mail
//     server.
//
// Every session is counted, the refused ones too, as Postfix's anvil
// counts connection attempts: a client that keeps hammering while over a
// limit stays over it until it backs off for a whole window.
package velocity

import (
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
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
	// in the last ClientWindow, up to MaxClientRate; 0 turns it off. The
	// per-client count is kept in steps of 4 seconds: a session counts
	// against its client for 61 to 64 seconds, never less than
	// ClientWindow. A client is an IPv4 address or an IPv6 /64, the
	// smallest network a site is normally given (RFC 6177), so that one
	// host cannot dodge the limit by walking its own addresses.
	MaxPerClient int
}

const (
	// MaxWindow is the longest global window: the file keeps one counter
	// per second for this long.
	MaxWindow = ringLen * time.Second
	// MaxClientRate is the highest per-client limit: per-client counters
	// are one byte per 4 seconds (see page.go), and a full one stands
	// for more than any limit.
	MaxClientRate = 255
	// ClientWindow is the window of the per-client limit: the least time
	// a session counts against its client.
	ClientWindow = clientRing * time.Second
	// MaxClients is the number of clients whose sessions the file can
	// count at once; past it, the client seen least recently in the
	// newcomer's page is forgotten.
	MaxClients = nSets * slotsPerSet
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
	// ClientWindow (up to 4 seconds more), this one included; 0 when the
	// per-client limit is off or the session has no client address.
	// More than MaxClientRate sessions in one 4-second step count as
	// MaxClientRate+1: over any limit.
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
	// beforeWrite, when set, runs with the lock held and the new pages
	// sealed, just before the pwrites: tests kill the process there.
	beforeWrite func(fd int, header []byte)
}

var errNotRegular = errors.New("not a regular file")

func check(path string, client netip.Addr, now time.Time, lim Limits, o options) (Decision, error) {
	perClient := lim.MaxPerClient > 0 && client.IsValid()
	if lim.MaxSessions == 0 && !perClient {
		return Decision{Allowed: true}, nil
	}
	if err := lim.Validate(); err != nil {
		return Decision{}, err
	}
	// Raw system calls rather than *os.File: the whole Check then costs
	// open, fstat, flock, two preads, two pwrites and close, and nothing
	// else. O_NONBLOCK so that a FIFO planted in its place cannot hang
	// the session; O_NOFOLLOW for a symbolic link.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return Decision{}, &os.PathError{Op: "velocity: open", Path: path, Err: err}
	}
	// Closing the file releases the lock.
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		if err == nil {
			err = errNotRegular
		}
		return Decision{}, &os.PathError{Op: "velocity: open", Path: path, Err: err}
	}
	if err := lock(fd, o.lockTimeout); err != nil {
		return Decision{}, &os.PathError{Op: "velocity: lock", Path: path, Err: err}
	}
	var h header
	ok, err := readPage(fd, &h.page, 0)
	if err != nil {
		return Decision{}, &os.PathError{Op: "velocity: read", Path: path, Err: err}
	}
	if !ok || !h.valid() {
		// New, short, torn, foreign or of an older format: start
		// afresh, with a new key, which makes every set page left in
		// the file empty; cut the file so nothing old stays in it.
		h = header{}
		if _, err := rand.Read(h.key()); err != nil {
			return Decision{}, err
		}
		if err := unix.Ftruncate(fd, 0); err != nil {
			return Decision{}, &os.PathError{Op: "velocity: truncate", Path: path, Err: err}
		}
	}
	var (
		cs  set
		num int
		fp  uint64
	)
	if perClient {
		num, fp = hashClient(h.key(), keyOf(client))
		ok, err := readPage(fd, &cs.page, int64(num)*pageSize)
		if err != nil {
			return Decision{}, &os.PathError{Op: "velocity: read", Path: path, Err: err}
		}
		if !ok || !cs.valid(h.key(), num) {
			cs = set{}
		}
	}
	d := record(&h, &cs, now, lim, fp, perClient)
	h.seal()
	if perClient {
		cs.seal(h.key(), num)
	}
	if o.beforeWrite != nil {
		o.beforeWrite(fd, h.page[:])
	}
	// One pwrite per page: the client's set, then the header. A kill
	// between the two leaves the session counted for its client only.
	if perClient {
		if err := writePage(fd, &cs.page, int64(num)*pageSize); err != nil {
			return Decision{}, &os.PathError{Op: "velocity: write", Path: path, Err: err}
		}
	}
	if err := writePage(fd, &h.page, 0); err != nil {
		return Decision{}, &os.PathError{Op: "velocity: write", Path: path, Err: err}
	}
	return d, nil
}

// readPage reads the page at off into p; ok is false when the file ends
// before the page does.
func readPage(fd int, p *page, off int64) (ok bool, err error) {
	n, err := unix.Pread(fd, p[:], off)
	return n == pageSize, err
}

func writePage(fd int, p *page, off int64) error {
	n, err := unix.Pwrite(fd, p[:], off)
	if err == nil && n != pageSize {
		err = io.ErrShortWrite
	}
	return err
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

// hashClient returns the set page (1 to nSets) and the fingerprint of
// client under the file's key: AES-128 of the 16-byte client key, a
// pseudo-random permutation, so that without the key no one can choose
// addresses that land in one page, and two clients' 128-bit images never
// collide (their fingerprints, 64 bits of it, almost never).
func hashClient(key []byte, c clientKey) (num int, fp uint64) {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // key is always keySize bytes
	}
	var out [16]byte
	b.Encrypt(out[:], c[:])
	return 1 + int(binary.LittleEndian.Uint64(out[8:])%nSets), binary.LittleEndian.Uint64(out[:8])
}
