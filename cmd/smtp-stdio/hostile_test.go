package main

// Hostile clients: silent, slow, trickling, endless lines, floods of
// commands. Each test checks the exact replies and that the process ends
// by itself.

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

// replyLines returns the last line of each reply: code, enhanced code,
// text.
func replyLines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\r\n") {
		if len(l) >= 4 && l[3] == ' ' {
			ls = append(ls, l)
		}
	}
	return ls
}

// TestSilentClient: a client that connects and says nothing gets 421
// 4.4.2 once SMTP_COMMAND_TIMEOUT passes, and the process exits, on a
// pipe and through tcpserver on a socket.
func TestSilentClient(t *testing.T) {
	t.Run("pipe", func(t *testing.T) {
		t.Parallel()
		cmd := newCmd(newSpool(t), "SMTP_COMMAND_TIMEOUT=1s")
		stdin, _ := cmd.StdinPipe() // open, never written
		defer stdin.Close()
		r := serve(t, cmd, 10*time.Second)
		wantCodes(t, r.out, "220", "421")
		if !strings.Contains(r.out, "\r\n421 4.4.2 ") || r.took > 4*time.Second || !r.state.Exited() {
			t.Errorf("after %v, %v:\n%s", r.took, r.state, r.out)
		}
	})
	t.Run("tcpserver", func(t *testing.T) {
		t.Parallel()
		addr := startTCPServer(t, newSpool(t), "SMTP_COMMAND_TIMEOUT=1s")
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.SetReadDeadline(start.Add(10 * time.Second))
		out, err := io.ReadAll(c) // to EOF: the session process has exited
		if err != nil {
			t.Fatalf("%v after %q", err, out)
		}
		wantCodes(t, string(out), "220", "421")
		if took := time.Since(start); !strings.Contains(string(out), "\r\n421 4.4.2 ") || took > 4*time.Second {
			t.Errorf("after %v:\n%s", took, out)
		}
	})
}

// TestSlowData: message text that stops coming gets 421 4.4.2 once
// SMTP_DATA_TIMEOUT passes; the message is dropped and the process exits.
func TestSlowData(t *testing.T) {
	t.Parallel()
	sd := newSpool(t)
	cmd := newCmd(sd, "SMTP_DATA_TIMEOUT=1s")
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	go io.WriteString(stdin, "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nSubject: slow\r\n\r\nfirst line\r\n")
	r := serve(t, cmd, 10*time.Second)
	wantCodes(t, r.out, "220", "250", "250", "250", "354", "421")
	if !strings.Contains(r.out, "\r\n421 4.4.2 ") || r.took > 4*time.Second {
		t.Errorf("after %v:\n%s", r.took, r.out)
	}
	if ms := spooled(t, sd); len(ms) != 0 {
		t.Errorf("%d messages spooled", len(ms))
	}
	noTempFiles(t, sd)
}

// TestTrickle: a client that sends message text one byte every 50 ms
// never lets SMTP_DATA_TIMEOUT pass, but SMTP_SESSION_TIMEOUT ends the
// session all the same: 421 4.4.2, nothing spooled, the process exits.
func TestTrickle(t *testing.T) {
	t.Parallel()
	sd := newSpool(t)
	cmd := newCmd(sd, "SMTP_SESSION_TIMEOUT=2s")
	stdin, _ := cmd.StdinPipe()
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer stdin.Close()
		if _, err := io.WriteString(stdin, "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\nDATA\r\n"); err != nil {
			return
		}
		for tick := time.NewTicker(50 * time.Millisecond); ; {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := io.WriteString(stdin, "x"); err != nil {
					return
				}
			}
		}
	}()
	r := serve(t, cmd, 10*time.Second)
	wantCodes(t, r.out, "220", "250", "250", "250", "354", "421")
	if !strings.Contains(r.out, "\r\n421 4.4.2 ") || r.took > 5*time.Second {
		t.Errorf("after %v:\n%s", r.took, r.out)
	}
	if ms := spooled(t, sd); len(ms) != 0 {
		t.Errorf("%d messages spooled", len(ms))
	}
	noTempFiles(t, sd)
}

// peakRSS returns the peak resident set size of the running process pid
// (VmHWM), which counts only its own memory since exec. The Maxrss of
// ProcessState.SysUsage would not do: Go starts a child with
// clone(CLONE_VM|CLONE_VFORK), and Linux carries the peak of the memory
// the child shared with the parent up to exec (the whole test process)
// into the child's maxrss.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, v, ok := strings.Cut(string(b), "\nVmHWM:")
	kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.SplitN(v, "\n", 2)[0], "kB")), 10, 64)
	if !ok || err != nil {
		t.Fatalf("no VmHWM in /proc/%d/status: %v", pid, err)
	}
	return kib << 10
}

// TestTenMegabyteLine: 10 MB without a newline get one 500 5.5.2 when the
// line ends; the session stays in step (the next transaction goes
// through) and the process's peak RSS stays small.
func TestTenMegabyteLine(t *testing.T) {
	sd := newSpool(t)
	cmd := newCmd(sd)
	stdin, _ := cmd.StdinPipe()
	out := &testutil.LockedBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // the client goes away; so does the session
		cmd.Wait()
	}()
	// All but QUIT: the process must still be there to be measured.
	go io.WriteString(stdin, "EHLO c.example\r\n"+strings.Repeat("x", 10<<20)+"\r\nNOOP\r\n"+transaction(helloBody))
	waitFor(t, "the reply to the message", func() bool { return strings.Contains(out.String(), " queued as ") })
	rss := peakRSS(t, cmd.Process.Pid)
	wantCodes(t, out.String(), "220", "250", "500", "250", "250", "250", "354", "250")
	if n := strings.Count(out.String(), "\r\n500 5.5.2 "); n != 1 {
		t.Errorf("%d replies 500 5.5.2, want 1", n)
	}
	if rss >= 32<<20 {
		t.Errorf("peak RSS %d MiB, want under 32", rss>>20)
	}
	t.Logf("peak RSS %.1f MiB", float64(rss)/(1<<20))
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages spooled, want 1", len(ms))
	}
	if _, rest := content(t, ms[0]); rest != helloBody {
		t.Errorf("spooled %q", rest)
	}
}

// TestTenThousandRcpt: of 10,000 RCPT commands the first 100
// (SMTP_MAX_RECIPIENTS) are accepted and the rest get 452 4.5.3; the
// session then takes DATA and spools one message for exactly those 100.
func TestTenThousandRcpt(t *testing.T) {
	sd := newSpool(t)
	var in strings.Builder
	in.WriteString("EHLO c.example\r\nMAIL FROM:<a@example.net>\r\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&in, "RCPT TO:<r%d@example.org>\r\n", i)
	}
	in.WriteString("DATA\r\n" + helloBody + ".\r\nQUIT\r\n")
	r := serve(t, withStdin(newCmd(sd), in.String()), 60*time.Second)
	want := []string{"220 ", "250 ", "250 2.1.0 "}
	for i := 0; i < 10000; i++ {
		if i < 100 {
			want = append(want, "250 2.1.5 ")
		} else {
			want = append(want, "452 4.5.3 ")
		}
	}
	want = append(want, "354 ", "250 2.0.0 ", "221 2.0.0 ")
	wantReplies(t, r.out, want)
	ms := spooled(t, sd)
	if len(ms) != 1 {
		t.Fatalf("%d messages spooled, want 1", len(ms))
	}
	if len(ms[0].To) != 100 || ms[0].To[0] != "r0@example.org" || ms[0].To[99] != "r99@example.org" {
		t.Errorf("%d recipients: %v ... ", len(ms[0].To), ms[0].To[:min(3, len(ms[0].To))])
	}
	t.Logf("%v", r.took.Round(time.Millisecond))
}

// wantReplies checks that the replies in out begin, one by one and in
// order, with the prefixes in want, and that there are no others.
func wantReplies(t *testing.T, out string, want []string) {
	t.Helper()
	got := replyLines(out)
	if len(got) != len(want) {
		t.Fatalf("%d replies, want %d; last: %q", len(got), len(want), got[max(0, len(got)-3):])
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("reply %d is %q, want %q", i, got[i], want[i])
		}
	}
}

// TestHundredThousandNoops: 100,000 NOOPs get 100,000 250s and QUIT 221,
// in bounded time (NOOP is no error, so SMTP_MAX_ERRORS does not end the
// session).
func TestHundredThousandNoops(t *testing.T) {
	in := "EHLO c.example\r\n" + strings.Repeat("NOOP\r\n", 100000) + "QUIT\r\n"
	r := serve(t, withStdin(newCmd(newSpool(t)), in), 60*time.Second)
	want := []string{"220 ", "250 "}
	for i := 0; i < 100000; i++ {
		want = append(want, "250 2.0.0 OK")
	}
	wantReplies(t, r.out, append(want, "221 2.0.0 "))
	if r.took > 20*time.Second {
		t.Errorf("took %v", r.took)
	}
	t.Logf("%v", r.took.Round(time.Millisecond))
}

// TestPipelinedBurst writes 1 MB of pipelined commands at once (a local
// session: RFC 2920 limits on what may follow what apply to network
// clients) and checks that each gets exactly one reply, in order.
func TestPipelinedBurst(t *testing.T) {
	cycle := []struct{ cmd, reply string }{
		{"MAIL FROM:<a@example.net>", "250 2.1.0 "},
		{"RCPT TO:<x@example.org>", "250 2.1.5 "},
		{"NOOP", "250 2.0.0 "},
		{"RCPT TO:<y@example.org>", "250 2.1.5 "},
		{"VRFY x@example.org", "252 2.5.2 "},
		{"RSET", "250 2.0.0 "},
		{"HELP", "214 2.0.0 "},
	}
	var in strings.Builder
	in.WriteString("EHLO c.example\r\n")
	want := []string{"220 ", "250 "}
	for in.Len() < 1<<20 {
		for _, c := range cycle {
			in.WriteString(c.cmd + "\r\n")
			want = append(want, c.reply)
		}
	}
	in.WriteString("QUIT\r\n")
	r := serve(t, withStdin(newCmd(newSpool(t)), in.String()), 60*time.Second)
	wantReplies(t, r.out, append(want, "221 2.0.0 "))
	t.Logf("%d commands in %v", len(want)-1, r.took.Round(time.Millisecond))
}
