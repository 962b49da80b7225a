// Package peer finds out who is on the other end of smtp-stdio's standard
// input, the way each launcher tells it: ucspi-tcp's TCPREMOTEIP and
// TCPREMOTEPORT, systemd's REMOTE_ADDR and REMOTE_PORT (Accept=yes),
// xinetd's REMOTE_HOST, and getpeername(2) on a socket (inetd nowait). It
// also tells whether standard error is the client's socket, as it is under
// inetd and xinetd.
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

// The sources, in the order they are tried.
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
}

// Find returns the peer for this process: from the launcher's environment
// (getenv) when it names one, else from getpeername on fd (standard
// input), else a local session. An environment variable that does not
// hold an IP address is an error, not a local session, so that a broken
// launcher setup can never grant a remote client local trust.
func Find(getenv func(string) string, fd int) (Peer, error) {
	try := []struct {
		ip, port string
		src      Source
	}{
		{"TCPREMOTEIP", "TCPREMOTEPORT", SourceUCSPI},
		{"REMOTE_ADDR", "REMOTE_PORT", SourceSystemd},
		{"REMOTE_HOST", "", SourceXinetd},
	}
	for _, t := range try {
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
	if ap, ok := socketPeer(fd); ok {
		return Peer{Addr: ap, Source: SourceSocket}, nil
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
