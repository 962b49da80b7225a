// Package peer finds out who is on the other end of smtp-stdio's standard
// input: getpeername(2) when it is a TCP socket (inetd nowait, xinetd,
// systemd Accept=yes, tcpserver), else the launcher's word: ucspi-tcp's
// TCPREMOTEIP and TCPREMOTEPORT, systemd's REMOTE_ADDR and REMOTE_PORT,
// xinetd's REMOTE_HOST. It also tells whether standard error is the
// client's socket, as it is under inetd and xinetd.
package peer

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Source names where the client address came from, for the logs.
type Source string

// The sources. SourceSocket wins whenever standard input is a TCP
// socket; the launcher variables name the client only on a pipe or a
// unix socket, tried in the order below.
const (
	SourceUCSPI   Source = "TCPREMOTEIP"
	SourceSystemd Source = "REMOTE_ADDR"
	SourceXinetd  Source = "REMOTE_HOST"
	SourceSocket  Source = "getpeername"
	SourceLocal   Source = "local"
)

// Peer is the client of the session.
type Peer struct {
	// Addr is the client's address and port (port 0 when unknown); the
	// zero value for a local session.
	Addr netip.AddrPort
	// Local is true when no launcher named a client and standard input is
	// not a network socket: a local user on a pipe.
	Local bool
	// Source tells where Addr came from.
	Source Source
	// Ignored lists the launcher variables that named another client
	// than the socket's peer, in the order they are tried; the caller
	// logs each.
	Ignored []Ignored
}

// Ignored is a launcher variable that disagreed with getpeername(2) and
// was not used.
type Ignored struct {
	// Var is the variable's name (TCPREMOTEIP, REMOTE_ADDR, REMOTE_HOST)
	// and Value what it held.
	Var, Value string
}

// launcherVars are the variables a launcher names the client in, in the
// order they are tried, with the port's variable where there is one.
var launcherVars = []struct {
	ip, port string
	src      Source
}{
	{"TCPREMOTEIP", "TCPREMOTEPORT", SourceUCSPI},
	{"REMOTE_ADDR", "REMOTE_PORT", SourceSystemd},
	{"REMOTE_HOST", "", SourceXinetd},
}

// Find returns the peer for this process.
//
// When fd (standard input) is a TCP socket, getpeername(2) on it is the
// truth: a launcher variable (read with getenv) that names another
// address, or no address at all, is reported in Peer.Ignored and not
// used, so that a variable leaked from an administrator's environment
// into an inetd or systemd service cannot make a stranger trusted. On
// anything else the first launcher variable set names the client (a
// launcher that hands over a pipe or a unix socket), and without one the
// session is local on a pipe, or an unknown, untrusted client on a socket.
//
// The error reports a launcher variable that does not hold an IP address
// when no socket contradicts it: it is not taken for a local session, so
// that a broken launcher setup can never grant a remote client local
// trust.
func Find(getenv func(string) string, fd int) (Peer, error) {
	if ap, ok := socketPeer(fd); ok {
		p := Peer{Addr: ap, Source: SourceSocket}
		for _, t := range launcherVars {
			v := getenv(t.ip)
			if v == "" {
				continue
			}
			if a, err := netip.ParseAddr(v); err != nil || a.Unmap().WithZone("") != ap.Addr().WithZone("") {
				p.Ignored = append(p.Ignored, Ignored{Var: t.ip, Value: v})
			}
		}
		return p, nil
	}
	for _, t := range launcherVars {
		v := getenv(t.ip)
		if v == "" {
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return Peer{}, fmt.Errorf("peer: %s=%q is not an IP address", t.ip, v)
		}
		var port uint16
		if t.port != "" {
			if n, err := strconv.ParseUint(getenv(t.port), 10, 16); err == nil {
				port = uint16(n)
			}
		}
		return Peer{Addr: netip.AddrPortFrom(a.Unmap(), port), Source: t.src}, nil
	}
	if IsSocket(fd) {
		// A socket whose peer we cannot name (a unix socket): not a
		// local user on a pipe, and not trusted.
		return Peer{Source: SourceSocket}, nil
	}
	return Peer{Local: true, Source: SourceLocal}, nil
}

func socketPeer(fd int) (netip.AddrPort, bool) {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}, false
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// IsSocket reports whether fd is a socket.
func IsSocket(fd int) bool {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFSOCK
}

// SameFile reports whether descriptors a and b refer to the same file or
// socket (same device and inode): under inetd and xinetd, standard error
// is the client's socket, and a log line written there would reach the
// client.
func SameFile(a, b int) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(a, &sa) != nil || unix.Fstat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// PollableFile returns fd as an *os.File that supports deadlines: it puts
// the descriptor in non-blocking mode so that Go's poller manages it
// (sockets and pipes; a regular file or a terminal keeps blocking reads
// and its SetReadDeadline returns an error). The returned restore function
// puts the descriptor back in blocking mode.
func PollableFile(fd int, name string) (*os.File, func()) {
	if !IsSocket(fd) && !isFIFO(fd) {
		return os.NewFile(uintptr(fd), name), func() {}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return os.NewFile(uintptr(fd), name), func() {}
	}
	return os.NewFile(uintptr(fd), name), func() { unix.SetNonblock(fd, false) }
}

func isFIFO(fd int) bool {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFIFO
}
