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
//   - messages per second with 20 and with 100 concurrent clients
//     (Postfix's smtp-source) sending 2,000 messages of 2 KiB, round-robin
//     over tcpserver + smtp-stdio, smtp-stdio as one process (systemd
//     Accept=no through systemd-socket-activate) and, when the peers'
//     Postfix listens on 127.0.0.1:25, Postfix's own smtpd daemon;
//     beside them, in the same rounds, the physical floor: as many
//     goroutines as clients writing 2 KiB files durably (create, write,
//     fsync, rename, fsync of the directory), no network and no SMTP;
//     and the one process's peak RSS;
//   - MiB/s and peak RSS for one 10 MiB and one 100 MiB message, read
//     from a file and through a pipe.
//
// Usage: benchtool -stdio BINARY [-n sessions] [-big MiB]
// With the argument "mxflush" it is the direct-MX flush of
// scripts/bench-send instead (mxflush.go); with "localflush", its
// maildir and LMTP flushes (localflush.go).
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
	"slices"
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
	if len(os.Args) > 1 && os.Args[1] == "localflush" {
		if err := localFlush(os.Args[2:]); err != nil {
			die(err)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "mxflush" {
		if err := mxFlush(os.Args[2:]); err != nil {
			die(err)
		}
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

// durableWriters writes msgs files of 2 KiB into dir/tmp from writers
// goroutines at once, each file fsync'd, renamed into dir/queue and that
// directory fsync'd (the spool's durable sequence), and returns the
// files per second: the physical floor of the concurrent-client rounds.
func durableWriters(dir string, writers, msgs int) (float64, error) {
	for _, d := range []string{"tmp", "queue"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return 0, err
		}
	}
	data := payload(2048)
	next := make(chan int, msgs)
	for i := range msgs {
		next <- i
	}
	close(next)
	errs := make(chan error, writers)
	start := time.Now()
	for range writers {
		go func() {
			for i := range next {
				if err := durableFile(dir, strconv.Itoa(i), data); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range writers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return float64(msgs) / time.Since(start).Seconds(), first
}

// durableFile writes data durably as dir/queue/name, by way of dir/tmp.
func durableFile(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "queue", name)); err != nil {
		return err
	}
	d, err := os.Open(filepath.Join(dir, "queue"))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// floorChild reads standard input to EOF, then drops 2 KiB durably into
// $FLOOR_DIR: the least any receiver must do per message.
func floorChild() {
	io.Copy(io.Discard, os.Stdin)
	if err := durableFile(os.Getenv("FLOOR_DIR"), strconv.Itoa(os.Getpid()), payload(2048)); err != nil {
		die(err)
	}
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
	env := func(dir string) []string {
		return []string{"SMTP_SPOOL_DIR=" + dir, "SMTP_HOSTNAME=bench.example", "SMTP_LOCAL_DOMAINS=example.org", "SMTP_LOG=off"}
	}
	tcpDir, _ := freshDir(base, "tcp")
	tcpPort, stopTCP, err := startListener(func(port string) *exec.Cmd {
		c := exec.Command(tcpserver, "-RHl0", "-c", "200", "-b", "128", "127.0.0.1", port, stdio)
		c.Env = env(tcpDir)
		return c
	})
	if err != nil {
		return err
	}
	defer stopTCP()
	type target struct {
		name, addr, dir string
		pid             int
	}
	targets := []target{{"tcpserver + smtp-stdio", "127.0.0.1:" + tcpPort, tcpDir, 0}}
	if ssa, err := exec.LookPath("systemd-socket-activate"); err == nil {
		for _, group := range []bool{true, false} {
			name, dirName := "smtp-stdio one process", "one"
			if !group {
				name, dirName = "smtp-stdio one process, no group commit", "one-nogroup"
			}
			oneDir, _ := freshDir(base, dirName)
			var srv *exec.Cmd
			onePort, stopOne, err := startListener(func(port string) *exec.Cmd {
				args := []string{"--listen=127.0.0.1:" + port}
				for _, kv := range append(env(oneDir), "SMTP_MAX_CONNECTIONS=200", "SMTP_GROUP_COMMIT="+strconv.FormatBool(group)) {
					args = append(args, "-E", kv)
				}
				srv = exec.Command(ssa, append(args, stdio)...)
				return srv
			})
			if err != nil {
				return err
			}
			defer stopOne()
			targets = append(targets, target{name, "127.0.0.1:" + onePort, oneDir, srv.Process.Pid})
		}
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:25", time.Second); err == nil {
		// The peers' Postfix (../shared/peers/setup.sh): its own smtpd
		// daemon on port 25, which holds what it accepts.
		greeting, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.Contains(greeting, "Postfix") || strings.Contains(greeting, "ESMTP") {
			targets = append(targets, target{"Postfix smtpd daemon (port 25)", "127.0.0.1:25", "", 0})
		}
	}
	// Round-robin, never one block after another: machine noise hits
	// every target alike; the median of the rounds is reported.
	const rounds = 3
	rates := map[string][]float64{}
	floorName := "floor: durable 2 KiB files, one writer a client"
	for round := range rounds {
		for _, clients := range []int{20, 100} {
			// The physical floor of the rounds: no network and no SMTP,
			// only what every spooled message must cost the file
			// system, from as many writers as there are clients.
			fdir, err := freshDir(base, fmt.Sprintf("floor-%d-%d", round, clients))
			if err != nil {
				return err
			}
			r, err := durableWriters(fdir, clients, msgs)
			if err != nil {
				return err
			}
			key := fmt.Sprintf("%s, %d clients", floorName, clients)
			rates[key] = append(rates[key], r)
			for _, tg := range targets {
				before := 0
				if tg.dir != "" {
					before = countFiles(filepath.Join(tg.dir, "queue"))
				}
				start := time.Now()
				src := exec.Command(source, "-s", strconv.Itoa(clients), "-m", strconv.Itoa(msgs), "-l", "2048",
					"-f", "bench@example.net", "-t", "r@example.org", "-M", "bench.example", tg.addr)
				if out, err := src.CombinedOutput(); err != nil {
					return fmt.Errorf("smtp-source against %s: %v %s", tg.name, err, out)
				}
				wall := time.Since(start)
				if tg.dir != "" {
					if got := countFiles(filepath.Join(tg.dir, "queue")) - before; got != msgs {
						return fmt.Errorf("%s spooled %d of %d", tg.name, got, msgs)
					}
				}
				key := fmt.Sprintf("%s, %d clients", tg.name, clients)
				rates[key] = append(rates[key], float64(msgs)/wall.Seconds())
			}
		}
	}
	for _, clients := range []int{20, 100} {
		names := []string{floorName}
		for _, tg := range targets {
			names = append(names, tg.name)
		}
		for _, name := range names {
			key := fmt.Sprintf("%s, %d clients", name, clients)
			r := rates[key]
			slices.Sort(r)
			fmt.Printf("%-62s %d x 2 KiB: median %.0f msgs/s over %d rounds\n", key+",", msgs, r[len(r)/2], rounds)
		}
	}
	for _, tg := range targets {
		if tg.pid > 0 {
			fmt.Printf("%s: peak RSS %.1f MiB (VmHWM, after the 100-client runs)\n", tg.name, float64(vmHWM(tg.pid))/1024)
		}
	}
	return nil
}

// startListener starts the server that mk makes for a free loopback
// port, in its own process group, waits until it accepts, and returns
// the port and a function that stops the group.
func startListener(mk func(port string) *exec.Cmd) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	srv := mk(port)
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := srv.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		syscall.Kill(-srv.Process.Pid, syscall.SIGTERM)
		srv.Wait()
	}
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return port, stop, nil
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
	return ddRatio(stdio, env, f, spoolDir, mib)
}

// ddRatio measures the large message against its floor in the same run,
// interleaved: smtp-stdio reading the session from the file f, and dd
// writing the same bytes from f into the same file system with
// conv=fsync. It prints the median MiB/s of each over 3 rounds and their
// ratio.
func ddRatio(stdio string, env []string, f *os.File, spoolDir string, mib int) error {
	dd, err := exec.LookPath("dd")
	if err != nil {
		return nil
	}
	var ours, floor []float64
	for range 3 {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		u, out, err := spawn(stdio, nil, env, f)
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), "\r\n250 2.0.0") {
			return fmt.Errorf("big message not accepted: %q", out)
		}
		ours = append(ours, float64(mib)/u.wall.Seconds())
		dst := filepath.Join(spoolDir, "tmp", "dd.out")
		start := time.Now()
		if out, err := exec.Command(dd, "if="+f.Name(), "of="+dst, "bs=1M", "conv=fsync", "status=none").CombinedOutput(); err != nil {
			return fmt.Errorf("dd: %v %s", err, out)
		}
		floor = append(floor, float64(mib)/time.Since(start).Seconds())
		os.Remove(dst)
	}
	slices.Sort(ours)
	slices.Sort(floor)
	fmt.Printf("one %d MiB message from a file, interleaved with dd conv=fsync of the same bytes: %.0f MiB/s vs dd %.0f MiB/s, ratio %.2f (goal >= 0.85)\n",
		mib, ours[1], floor[1], ours[1]/floor[1])
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
