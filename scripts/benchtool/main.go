// Command benchtool measures smtp-stdio against its floor; scripts/bench
// runs it. It prints, from one run on one machine:
//
//   - the floor: CPU to spawn a trivial Go binary that reads stdin to EOF
//     and makes one durable 2 KiB file drop (write, fsync, rename, fsync of
//     the directory);
//   - smtp-stdio's CPU per piped 2 KiB session, and its ratio to the floor;
//   - the CPU that implicit TLS 1.3 (a full handshake with an ECDSA P-256
//     certificate) adds to a 2 KiB session on a socket, both measured
//     interleaved in the same run;
//   - messages per second under tcpserver with 20 concurrent clients
//     (Postfix's smtp-source) sending 2,000 messages of 2 KiB;
//   - MiB/s and peak RSS for one 10 MiB and one 100 MiB message, read
//     from a file and through a pipe.
//
// Usage: benchtool -stdio BINARY [-n sessions] [-big MiB]
// With the single argument "floor-child" it is the floor's trivial binary.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "floor-child" {
		floorChild()
		return
	}
	if os.Getenv("FLOOR_CERT") != "" {
		tlsFloorChild()
		return
	}
	stdio := flag.String("stdio", "", "path of the smtp-stdio binary")
	n := flag.Int("n", 300, "sessions per CPU measurement")
	big := flag.Int("big", 100, "size of the large message, MiB")
	msgs := flag.Int("msgs", 2000, "messages for the tcpserver run")
	flag.Parse()
	if *stdio == "" {
		fmt.Fprintln(os.Stderr, "usage: benchtool -stdio BINARY")
		os.Exit(64)
	}
	if err := run(*stdio, *n, *big, *msgs); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

// floorChild reads standard input to EOF, then drops 2 KiB durably into
// $FLOOR_DIR: the least any receiver must do per message.
func floorChild() {
	io.Copy(io.Discard, os.Stdin)
	dir := os.Getenv("FLOOR_DIR")
	tmp := filepath.Join(dir, "tmp", strconv.Itoa(os.Getpid()))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		die(err)
	}
	f.Write(payload(2048))
	if err := f.Sync(); err != nil {
		die(err)
	}
	f.Close()
	if err := os.Rename(tmp, filepath.Join(dir, "queue", strconv.Itoa(os.Getpid()))); err != nil {
		die(err)
	}
	d, _ := os.Open(filepath.Join(dir, "queue"))
	d.Sync()
	d.Close()
}

func payload(n int) []byte {
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
	var b []byte
	b = append(b, "From: bench@example.net\r\nTo: r@example.org\r\nSubject: bench\r\n\r\n"...)
	for len(b) < n {
		b = append(b, line...)
	}
	b = b[:n]
	return b[:strings.LastIndex(string(b), "\r\n")+2]
}

func message2k() string { return string(payload(2048)) }

type usage struct {
	cpu     time.Duration // user + system
	peakKiB int64         // VmHWM sampled from /proc, KiB
	wall    time.Duration
}

// spawn runs bin with stdin from in and returns its resource usage.
func spawn(bin string, args []string, env []string, in io.Reader) (usage, []byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdin = in
	out, err := os.CreateTemp("", "benchout")
	if err != nil {
		return usage{}, nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout = out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return usage{}, nil, fmt.Errorf("%s: %w", bin, err)
	}
	// The child's own peak RSS: rusage's maxrss of a child Go started is
	// useless (clone with CLONE_VM folds in the parent's peak), so
	// sample VmHWM, which only grows, until the child exits.
	peak := make(chan int64)
	stop := make(chan struct{})
	go func() {
		var hwm int64
		for {
			if v := vmHWM(cmd.Process.Pid); v > hwm {
				hwm = v
			}
			select {
			case <-stop:
				peak <- hwm
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	err = cmd.Wait()
	wall := time.Since(start)
	close(stop)
	hwm := <-peak
	if err != nil {
		return usage{}, nil, fmt.Errorf("%s: %w", bin, err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	b, _ := os.ReadFile(out.Name())
	return usage{cpu: cpu, peakKiB: hwm, wall: wall}, b, nil
}

func freshDir(base, name string) (string, error) {
	d := filepath.Join(base, name)
	for _, s := range []string{d, filepath.Join(d, "tmp"), filepath.Join(d, "queue")} {
		if err := os.MkdirAll(s, 0o700); err != nil {
			return "", err
		}
	}
	return d, nil
}

func run(stdio string, n, bigMiB, msgs int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	base, err := os.MkdirTemp("", "smtp-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)

	session := "EHLO bench.example\r\nMAIL FROM:<bench@example.net>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n" +
		message2k() + ".\r\nQUIT\r\n"

	// Interleave floor and smtp-stdio runs so that machine noise hits
	// both alike; take the median of each.
	floorDir, _ := freshDir(base, "floor")
	spoolDir, _ := freshDir(base, "spool")
	env := []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=bench.example", "SMTP_LOCAL_DOMAINS=example.org", "SMTP_LOG=off"}
	var floor, recv []time.Duration
	for i := 0; i < n; i++ {
		u, _, err := spawn(self, []string{"floor-child"}, []string{"FLOOR_DIR=" + floorDir}, strings.NewReader(session))
		if err != nil {
			return err
		}
		floor = append(floor, u.cpu)
		u, out, err := spawn(stdio, nil, env, strings.NewReader(session))
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), "\r\n250 2.0.0") {
			return fmt.Errorf("smtp-stdio did not accept the message: %q", out)
		}
		recv = append(recv, u.cpu)
	}
	fm, rm := median(floor), median(recv)
	fmt.Printf("floor (spawn Go binary + durable 2 KiB drop): median CPU %v over %d runs\n", fm, n)
	fmt.Printf("smtp-stdio piped 2 KiB session:              median CPU %v over %d runs\n", rm, n)
	fmt.Printf("ratio smtp-stdio / floor:                    %.2f (goal <= 1.3)\n", float64(rm)/float64(fm))

	if err := tlsRow(stdio, base, n); err != nil {
		return fmt.Errorf("TLS row: %w", err)
	}

	if err := tcpserverRun(stdio, base, msgs); err != nil {
		fmt.Printf("tcpserver run: skipped: %v\n", err)
	}

	for _, mib := range []int{10, bigMiB} {
		if err := bigMessage(stdio, base, mib); err != nil {
			return err
		}
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// tcpserverRun serves smtp-stdio with tcpserver on a loopback port and
// sends msgs messages of 2 KiB from 20 concurrent smtp-source sessions.
func tcpserverRun(stdio, base string, msgs int) error {
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		return err
	}
	source := "/usr/sbin/smtp-source"
	if _, err := os.Stat(source); err != nil {
		return err
	}
	spoolDir, _ := freshDir(base, "tcp")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	srv := exec.Command(tcpserver, "-RHl0", "-c", "40", "-b", "64", "127.0.0.1", port, stdio)
	srv.Env = []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=bench.example", "SMTP_LOCAL_DOMAINS=example.org", "SMTP_LOG=off"}
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		syscall.Kill(-srv.Process.Pid, syscall.SIGTERM)
		srv.Wait()
	}()
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	before := countFiles(filepath.Join(spoolDir, "queue"))
	start := time.Now()
	// -s 20 sessions in parallel, -m messages in all, -l 2048 bytes each,
	// one message per connection (as real clients of an MX do).
	src := exec.Command(source, "-s", "20", "-m", strconv.Itoa(msgs), "-l", "2048",
		"-f", "bench@example.net", "-t", "r@example.org", "-M", "bench.example", "127.0.0.1:"+port)
	if out, err := src.CombinedOutput(); err != nil {
		return fmt.Errorf("smtp-source: %v %s", err, out)
	}
	wall := time.Since(start)
	got := countFiles(filepath.Join(spoolDir, "queue")) - before
	fmt.Printf("tcpserver, 20 concurrent clients, %d x 2 KiB:  %.0f msgs/s (%d spooled in %v)\n",
		msgs, float64(got)/wall.Seconds(), got, wall.Round(time.Millisecond))
	if got != msgs {
		return fmt.Errorf("spooled %d of %d", got, msgs)
	}
	return nil
}

func countFiles(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}

// bigMessage sends one message of mib MiB through smtp-stdio twice and
// reports throughput and peak RSS: first with standard input a file
// holding the session (written beforehand, not timed), which measures
// smtp-stdio alone, then through a pipe from a generator in this process,
// which shares the CPUs with it as a local client would.
func bigMessage(stdio, base string, mib int) error {
	spoolDir, _ := freshDir(base, "big"+strconv.Itoa(mib))
	defer os.RemoveAll(spoolDir)
	env := []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=bench.example", "SMTP_LOCAL_DOMAINS=example.org",
		"SMTP_LOG=off", "SMTP_MAX_MESSAGE_SIZE=" + strconv.Itoa((mib+1)<<20)}
	f, err := os.CreateTemp(base, "session")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := writeBigSession(f, mib); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeBigSession(pw, mib)) }()
	for _, in := range []struct {
		name string
		r    io.Reader
	}{{"from a file", f}, {"through a pipe", pr}} {
		u, out, err := spawn(stdio, nil, env, in.r)
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), "\r\n250 2.0.0") {
			return fmt.Errorf("big message not accepted: %q", out)
		}
		fmt.Printf("one %d MiB message, %s: %.0f MiB/s, peak RSS %.1f MiB (VmHWM), CPU %v\n",
			mib, in.name, float64(mib)/u.wall.Seconds(), float64(u.peakKiB)/1024, u.cpu.Round(time.Millisecond))
	}
	return nil
}

// writeBigSession writes a session that sends one message of mib MiB in
// lines of 76 characters.
func writeBigSession(w io.Writer, mib int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString("EHLO bench.example\r\nMAIL FROM:<bench@example.net>\r\nRCPT TO:<r@example.org>\r\nDATA\r\nSubject: big\r\n\r\n")
	line := strings.Repeat("x", 76) + "\r\n"
	for w := 0; w < mib<<20; w += len(line) {
		bw.WriteString(line)
	}
	bw.WriteString(".\r\nQUIT\r\n")
	return bw.Flush()
}

// vmHWM returns the peak resident set size of process pid in KiB, from
// /proc/PID/status; 0 once the process is gone.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "benchtool:", err)
	os.Exit(1)
}
