// Package syslog sends log lines to the local syslog daemon over its unix
// socket (/dev/log), in the BSD syslog format local daemons accept
// (RFC 3164 section 4.1, without the host name, as the C library's
// syslog(3) does).
//
// The standard library's log/syslog would do, but it imports package net,
// which makes every smtp-stdio binary dynamically linked with cgo; the
// dynamic loader alone then costs more CPU than the rest of a short SMTP
// session. This package speaks to the socket with plain system calls.
package syslog

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Severity is a syslog severity (RFC 5424 section 6.2.1).
type Severity int

// The severities used here.
const (
	Err     Severity = 3
	Warning Severity = 4
	Info    Severity = 6
	Debug   Severity = 7
)

// FacilityMail is the mail system facility (RFC 5424 section 6.2.1).
const FacilityMail = 2

// DefaultPaths are tried in order for the local syslog socket.
var DefaultPaths = []string{"/dev/log", "/var/run/syslog", "/var/run/log"}

// Writer sends messages to the local syslog daemon. It is safe for
// concurrent use.
type Writer struct {
	mu       sync.Mutex
	fd       int
	tag      string
	facility int
	pid      string
	paths    []string
	path     string
	sotype   int
}

// Dial connects to the first of paths (DefaultPaths when none are given)
// that accepts a connection, and returns a Writer that tags every message
// with tag and the process id. It returns an error when no socket accepts.
func Dial(facility int, tag string, paths ...string) (*Writer, error) {
	if len(paths) == 0 {
		paths = DefaultPaths
	}
	w := &Writer{fd: -1, tag: tag, facility: facility, pid: strconv.Itoa(os.Getpid()), paths: paths}
	if err := w.connect(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) connect() error {
	var last error = errors.New("syslog: no socket")
	for _, p := range w.paths {
		for _, t := range []int{unix.SOCK_DGRAM, unix.SOCK_STREAM} {
			fd, err := unix.Socket(unix.AF_UNIX, t|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("syslog: socket: %w", err)
			}
			if err := unix.Connect(fd, &unix.SockaddrUnix{Name: p}); err != nil {
				unix.Close(fd)
				last = fmt.Errorf("syslog: connect %s: %w", p, err)
				continue
			}
			w.fd, w.path, w.sotype = fd, p, t
			return nil
		}
	}
	return last
}

// Log sends msg at severity sev. A stream socket gets the message framed
// by a trailing newline. On a send error it reconnects once and retries.
func (w *Writer) Log(sev Severity, msg string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	line := "<" + strconv.Itoa(w.facility*8+int(sev)) + ">" +
		time.Now().Format(time.Stamp) + " " + w.tag + "[" + w.pid + "]: " + msg
	if w.sotype == unix.SOCK_STREAM {
		line += "\n"
	}
	err := w.send(line)
	if err != nil {
		unix.Close(w.fd)
		if cerr := w.connect(); cerr != nil {
			w.fd = -1
			return err
		}
		err = w.send(line)
	}
	return err
}

func (w *Writer) send(line string) error {
	if w.fd < 0 {
		return errors.New("syslog: not connected")
	}
	_, err := unix.Write(w.fd, []byte(line))
	if err != nil {
		return fmt.Errorf("syslog: write: %w", err)
	}
	return nil
}

// Close closes the connection.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return nil
	}
	err := unix.Close(w.fd)
	w.fd = -1
	return err
}
