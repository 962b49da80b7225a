package peer

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// PendingInput reports whether the peer has sent bytes on the socket fd
// that no one has read yet, waiting up to wait for them to arrive (poll(2),
// then a MSG_PEEK receive); a zero wait looks once without waiting. It returns as soon
// as input arrives. A peer that closed its side without sending anything
// has nothing pending: its session sees the end of input.
//
// It consumes nothing, so it can run before the session reads fd. It is
// how smtp-stdio finds an early talker, a client that sends before the
// 220 greeting (RFC 5321 section 3.1 gives the server the first word), as
// Postfix's postscreen and Exim's smtp_enforce_sync do, and input a
// client pipelined where RFC 2920 section 3.1 forbids it.
func PendingInput(fd int, wait time.Duration) (bool, error) {
	end := time.Now().Add(wait)
	for {
		ms := 0
		if left := time.Until(end); left > 0 {
			ms = int((left + time.Millisecond - 1) / time.Millisecond) // round up: never wait less
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			if time.Until(end) > 0 {
				continue
			}
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			return false, nil
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			return false, unix.EBADF
		}
		// Readable: bytes, or the end of input, or an error. Only bytes
		// count; peeking leaves them for the session.
		var b [1]byte
		n, _, err = unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			return false, nil
		case err != nil && !errors.Is(err, unix.ECONNRESET):
			return false, err
		}
		return n > 0, nil
	}
}
