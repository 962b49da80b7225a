package peer

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Handover is what the launcher handed smtp-stdio, told from the kind of
// each descriptor and not from the environment alone (systemd's
// sd_is_socket does the same with SO_ACCEPTCONN):
//
//	descriptor                          SO_ACCEPTCONN  mode
//	fd 0                                1              inetd wait: serve many
//	fd 0                                0 or no socket one session on stdin/stdout
//	LISTEN_FDS fds from 3 (our LISTEN_PID) 1            systemd Accept=no: serve many
//	fd 3, LISTEN_FDS=1 (our LISTEN_PID)  0              systemd Accept=yes without
//	                                                   StandardInput=socket: one session on fd 3
type Handover struct {
	// Listeners are the listening sockets to accept connections on, in
	// descriptor order; empty for a single session.
	Listeners []*os.File
	// Names are systemd's names of Listeners (LISTEN_FDNAMES, from
	// FileDescriptorName=), "" where none was given.
	Names []string
	// Connected is 3 when systemd passed one connected socket as fd 3,
	// else -1.
	Connected int
}

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// FindHandover looks at the descriptors the process was given, with
// getenv and pid for systemd's LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES (sd_listen_fds(3)). Those variables count only when
// LISTEN_PID is pid; FindHandover unsets them either way (os.Unsetenv),
// so that no child inherits them, and marks the passed descriptors
// close-on-exec. Without a listening socket it returns no Listeners: the
// process serves one session.
func FindHandover(getenv func(string) string, pid int) Handover {
	h := Handover{Connected: -1}
	n, _ := strconv.Atoi(getenv("LISTEN_FDS"))
	ours := getenv("LISTEN_PID") == strconv.Itoa(pid)
	names := strings.Split(getenv("LISTEN_FDNAMES"), ":")
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	if ours && n > 0 {
		for i := range n {
			fd := listenFDsStart + i
			unix.CloseOnExec(fd)
			if listening(fd) {
				name := ""
				if i < len(names) {
					name = names[i]
				}
				h.Listeners = append(h.Listeners, os.NewFile(uintptr(fd), "listen-"+strconv.Itoa(fd)))
				h.Names = append(h.Names, name)
			} else if n == 1 && IsSocket(fd) {
				h.Connected = fd
			}
		}
		if len(h.Listeners) > 0 || h.Connected >= 0 {
			return h
		}
	}
	if listening(0) {
		h.Listeners = []*os.File{os.NewFile(0, "listen-stdin")}
		h.Names = []string{""}
	}
	return h
}

// listening reports whether fd is a socket that listens for connections
// (SO_ACCEPTCONN).
func listening(fd int) bool {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err == nil && v == 1
}
