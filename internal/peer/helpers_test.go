package peer

import (
	"time"

	"golang.org/x/sys/unix"
)

func dupFd(fd int) (int, error) { return unix.Dup(fd) }

func timeNowPlus() time.Time { return time.Now().Add(50 * time.Millisecond) }
