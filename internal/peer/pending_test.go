package peer

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func socketPair(t *testing.T) (server, client int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func TestPendingInput(t *testing.T) {
	// Nothing sent: not pending, after about the wait.
	srv, cli := socketPair(t)
	start := time.Now()
	if got, err := PendingInput(srv, 50*time.Millisecond); got || err != nil {
		t.Errorf("nothing sent: %v, %v", got, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Errorf("waited %v, want about 50ms", d)
	}
	// Sent: pending, at once; and still there to read (nothing consumed).
	unix.Write(cli, []byte("EHLO early\r\n"))
	for _, wait := range []time.Duration{0, time.Hour} {
		start = time.Now()
		if got, err := PendingInput(srv, wait); !got || err != nil {
			t.Errorf("wait %v: sent, but %v, %v", wait, got, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("wait %v: returned after %v", wait, d)
		}
	}
	buf := make([]byte, 64)
	if n, _ := unix.Read(srv, buf); string(buf[:n]) != "EHLO early\r\n" {
		t.Errorf("read %q after the checks", buf[:n])
	}
	if got, _ := PendingInput(srv, 0); got {
		t.Error("pending after everything was read")
	}

	// Bytes that arrive during the wait end it.
	srv, cli = socketPair(t)
	go func(cli int) {
		time.Sleep(30 * time.Millisecond)
		unix.Write(cli, []byte("x"))
	}(cli)
	start = time.Now()
	if got, err := PendingInput(srv, time.Hour); !got || err != nil || time.Since(start) > 5*time.Second {
		t.Errorf("late bytes: %v, %v after %v", got, err, time.Since(start))
	}

	// A peer that closed without sending: nothing pending, no waiting.
	srv, cli = socketPair(t)
	unix.Shutdown(cli, unix.SHUT_WR)
	start = time.Now()
	if got, err := PendingInput(srv, time.Hour); got || err != nil || time.Since(start) > 5*time.Second {
		t.Errorf("closed peer: %v, %v after %v", got, err, time.Since(start))
	}

	// A closed descriptor or one that is no socket is an error, not a
	// verdict.
	srv, _ = socketPair(t)
	closed, _ := unix.Dup(srv)
	unix.Close(closed)
	if _, err := PendingInput(closed, 0); err == nil {
		t.Error("closed fd: no error")
	}
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	unix.Write(p[1], []byte("x"))
	if _, err := PendingInput(p[0], 0); err == nil {
		t.Error("pipe: no error")
	}
}
