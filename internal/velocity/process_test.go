package velocity

// Tests with real processes: many at once on one state file, and one
// killed while it holds the lock. The test binary re-executes itself with
// VELOCITY_TEST_CHILD naming what the child does.

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
)

const childEnv = "VELOCITY_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// childLimits are the limits every child and the parent use; the global
// window is long enough that a slow test machine stays inside it.
func childLimits() Limits {
	n, _ := strconv.Atoi(os.Getenv("VELOCITY_TEST_MAX"))
	c, _ := strconv.Atoi(os.Getenv("VELOCITY_TEST_MAX_CLIENT"))
	return Limits{Window: MaxWindow, MaxSessions: n, MaxPerClient: c}
}

// child runs in a re-executed test binary.
func child(mode string) int {
	path := os.Getenv("VELOCITY_TEST_PATH")
	client := netip.MustParseAddr(os.Getenv("VELOCITY_TEST_CLIENT"))
	lim := childLimits()
	switch mode {
	case "checks":
		// Wait for the parent to release every child at once.
		io.Copy(io.Discard, os.Stdin)
		n, _ := strconv.Atoi(os.Getenv("VELOCITY_TEST_CHECKS"))
		allowed := 0
		for range n {
			d, err := Check(path, client, time.Now(), lim)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if d.Allowed {
				allowed++
			}
		}
		fmt.Println("allowed", allowed)
		return 0
	case "hang-before-write", "hang-mid-write":
		torn := mode == "hang-mid-write"
		_, err := check(path, client, time.Now(), lim, options{lockTimeout: lockTimeout,
			beforeWrite: func(fd int, header []byte) {
				if torn {
					// What a write cut short would leave: the new
					// header's start (magic, checksum, head) over
					// the old one.
					unix.Pwrite(fd, header[:offTotal], 0)
				}
				fmt.Println("holding the lock")
				time.Sleep(time.Hour) // until killed
			}})
		fmt.Fprintln(os.Stderr, "not killed:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 2
}

func childCmd(t *testing.T, mode, path, client string, lim Limits, extra ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		childEnv+"="+mode,
		"VELOCITY_TEST_PATH="+path,
		"VELOCITY_TEST_CLIENT="+client,
		"VELOCITY_TEST_MAX="+strconv.Itoa(lim.MaxSessions),
		"VELOCITY_TEST_MAX_CLIENT="+strconv.Itoa(lim.MaxPerClient))
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestConcurrentProcesses: 40 processes released at once make 3 checks
// each. Every check is in the file, and exactly the limit were allowed.
func TestConcurrentProcesses(t *testing.T) {
	const procs, checks = 40, 3
	for _, c := range []struct {
		name   string
		lim    Limits
		client func(i int) string
		want   int
	}{
		{"global", Limits{Window: MaxWindow, MaxSessions: 50}, func(i int) string { return fmt.Sprintf("192.0.2.%d", i) }, 50},
		{"one client", Limits{MaxPerClient: 7}, func(int) string { return "2001:db8::1" }, 7},
		// 20 clients, two processes each: 40 allowed, two per client.
		{"both", Limits{Window: MaxWindow, MaxSessions: 1000, MaxPerClient: 2},
			func(i int) string { return fmt.Sprintf("2001:db8:%d::%d", i%20, i) }, 20 * 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := statePath(t)
			var (
				cmds  []*exec.Cmd
				gates []io.WriteCloser
				outs  []*strings.Builder
			)
			for i := range procs {
				cmd := childCmd(t, "checks", path, c.client(i), c.lim, "VELOCITY_TEST_CHECKS="+strconv.Itoa(checks))
				gate, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				var out strings.Builder
				cmd.Stdout = &out
				testutil.Start(t, cmd)
				cmds, gates, outs = append(cmds, cmd), append(gates, gate), append(outs, &out)
			}
			for _, g := range gates {
				g.Close()
			}
			allowed := 0
			for i, cmd := range cmds {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("child %d: %v", i, err)
				}
				var n int
				if _, err := fmt.Sscanf(outs[i].String(), "allowed %d", &n); err != nil {
					t.Fatalf("child %d said %q", i, outs[i].String())
				}
				allowed += n
			}
			if allowed != c.want {
				t.Errorf("%d sessions allowed, want exactly %d", allowed, c.want)
			}
			p := readState(t, path)
			if p.total() != procs*checks {
				t.Errorf("file counts %d sessions, want %d", p.total(), procs*checks)
			}
			sum := 0
			for s := range int64(ringLen) {
				sum += int(get32(p.ring(s)))
			}
			if sum != procs*checks {
				t.Errorf("global ring holds %d sessions, want %d", sum, procs*checks)
			}
		})
	}
}

// TestKilledHolder: a process SIGKILLed while it holds the lock, before
// or in the middle of its write, blocks no one, and leaves a state file
// that the next Check accepts (the old state) or resets (a torn one).
func TestKilledHolder(t *testing.T) {
	lim := Limits{Window: MaxWindow, MaxSessions: 1000, MaxPerClient: 100}
	for _, c := range []struct {
		mode      string
		tornAfter bool   // the file is invalid after the kill
		wantTotal uint64 // sessions in the file after the next Check
	}{
		{"hang-before-write", false, 6},
		{"hang-mid-write", true, 1},
	} {
		t.Run(c.mode, func(t *testing.T) {
			path := statePath(t)
			for range 5 {
				if _, err := Check(path, clientA, time.Now(), lim); err != nil {
					t.Fatal(err)
				}
			}
			cmd := childCmd(t, c.mode, path, clientA.String(), lim)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Start(t, cmd)
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || line != "holding the lock\n" {
				t.Fatalf("child said %q, %v", line, err)
			}
			// The lock is really held: a short wait times out.
			if _, err := check(path, clientB, time.Now(), lim, options{lockTimeout: 50 * time.Millisecond}); err == nil {
				t.Fatal("took the lock the child holds")
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()

			var p header
			b, _ := os.ReadFile(path)
			copy(p.page[:], b)
			if p.valid() == c.tornAfter {
				t.Fatalf("after the kill the header is valid=%v, want %v", p.valid(), !c.tornAfter)
			}
			start := time.Now()
			d, err := Check(path, clientA, time.Now(), lim)
			if err != nil || !d.Allowed {
				t.Fatalf("Check after the kill: %+v %v", d, err)
			}
			// Well under lockTimeout: nobody waited for a dead holder.
			if el := time.Since(start); el > time.Second {
				t.Errorf("Check after the kill took %v", el)
			}
			if got := readState(t, path).total(); got != c.wantTotal {
				t.Errorf("total %d, want %d", got, c.wantTotal)
			}
			if d.Count != int(c.wantTotal) || d.ClientCount != int(c.wantTotal) {
				t.Errorf("decision %+v, want counts %d", d, c.wantTotal)
			}
		})
	}
}
