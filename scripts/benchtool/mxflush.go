package main

// The "mxflush" mode of benchtool, which scripts/bench-send runs: the
// direct-MX flush beside the smarthost flush, interleaved in one run.
//
// One spool of n messages of size bytes, one recipient each, spread over
// 20 domains (d00.bench.test ... d19.bench.test) whose MX records name 4
// MX hosts (mx0 ... mx3.bench.test on 127.0.0.61-64), is flushed by
// smtp-send twice per round: to a smarthost (Postfix's smtp-sink on
// 127.0.0.1) and to the MX hosts (an smtp-sink on each address, the same
// port, found through a DNS server of this program: miekg/dns on
// 127.0.0.1, SMTP_SEND_DNS). The order of the two alternates by round.
// It prints, per round and as medians, the messages per second and
// smtp-send's CPU (user + system) per message, and the ratio of the two
// flushes' rates.

import (
	"bufio"
	"cmp"
	"errors"
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

	"github.com/miekg/dns"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

const (
	mxDomains = 20
	mxHosts   = 4
	mxFirstIP = 61 // 127.0.0.61 ... 127.0.0.64
)

// mxFlush runs the mode with its arguments (see usage below).
func mxFlush(args []string) error {
	fs := flag.NewFlagSet("mxflush", flag.ContinueOnError)
	send := fs.String("send", "", "path of the smtp-send binary")
	n := fs.Int("n", 1000, "messages per flush")
	size := fs.Int("size", 2048, "message size in bytes")
	conns := fs.Int("connections", 8, "SMTP_SEND_CONNECTIONS")
	rounds := fs.Int("rounds", 3, "rounds (each: one smarthost flush, one MX flush)")
	sink := fs.String("sink", "/usr/sbin/smtp-sink", "Postfix's smtp-sink")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *send == "" {
		return errors.New("usage: benchtool mxflush -send SMTP-SEND [-n 1000] [-size 2048] [-connections 8] [-rounds 3]")
	}
	work, err := os.MkdirTemp("", "bench-mxflush")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	port, err := freePort()
	if err != nil {
		return err
	}
	addrs := []string{net.JoinHostPort("127.0.0.1", port)}
	for i := range mxHosts {
		addrs = append(addrs, net.JoinHostPort(fmt.Sprintf("127.0.0.%d", mxFirstIP+i), port))
	}
	for _, a := range addrs {
		stop, err := startSink(*sink, a)
		if err != nil {
			return err
		}
		defer stop()
	}
	dnsAddr, stopDNS, err := startMXDNS()
	if err != nil {
		return err
	}
	defer stopDNS()
	tmpl := filepath.Join(work, "template")
	if err := mxSpool(tmpl, *n, *size); err != nil {
		return err
	}
	common := []string{"PATH=/usr/bin:/bin", "SMTP_HOSTNAME=bench.test", "SMTP_SEND_CONNECTIONS=" + strconv.Itoa(*conns)}
	modes := []struct {
		name string
		env  []string
	}{
		{"smarthost", []string{"SMTP_SMARTHOST=" + addrs[0], "SMTP_SMARTHOST_TLS=none"}},
		{"direct MX", []string{"SMTP_SEND_DNS=" + dnsAddr, "SMTP_SEND_MX_PORT=" + port, "SMTP_SEND_MX_LOOPBACK=true"}},
	}
	fmt.Printf("mxflush: %d messages of %d bytes to %d domains over %d MX hosts (smtp-sink on 127.0.0.%d-%d:%s), %d connections, smarthost smtp-sink on %s; %d rounds, interleaved\n",
		*n, *size, mxDomains, mxHosts, mxFirstIP, mxFirstIP+mxHosts-1, port, *conns, addrs[0], *rounds)
	rates := make([][]float64, len(modes))
	cpus := make([][]float64, len(modes))
	for r := range *rounds {
		for k := range modes {
			m := (k + r) % len(modes)
			dir := filepath.Join(work, fmt.Sprintf("r%d-%d", r, m))
			if err := copySpool(tmpl, dir); err != nil {
				return err
			}
			env := append(append([]string{"SMTP_SPOOL_DIR=" + dir}, common...), modes[m].env...)
			wall, cpu, delivered, err := flushOnce(*send, env, filepath.Join(work, fmt.Sprintf("r%d-%d.log", r, m)))
			if err != nil {
				return fmt.Errorf("%s flush: %w", modes[m].name, err)
			}
			left, _ := os.ReadDir(filepath.Join(dir, spool.QueueDir))
			if delivered != *n || len(left) != 0 {
				return fmt.Errorf("%s flush: %d delivered, %d left in the queue (log %s)", modes[m].name, delivered, len(left), dir)
			}
			rate := float64(delivered) / wall.Seconds()
			perMsg := float64(cpu.Microseconds()) / float64(delivered)
			rates[m], cpus[m] = append(rates[m], rate), append(cpus[m], perMsg)
			fmt.Printf("  round %d  %-10s %5d delivered in %6d ms = %6.0f msgs/s, CPU %5.0f µs/msg\n",
				r+1, modes[m].name, delivered, wall.Milliseconds(), rate, perMsg)
			os.RemoveAll(dir)
		}
	}
	for m := range modes {
		fmt.Printf("  median     %-10s %6.0f msgs/s, CPU %5.0f µs/msg\n", modes[m].name, medianF(rates[m]), medianF(cpus[m]))
	}
	fmt.Printf("  direct MX / smarthost: %.2fx the rate, %.2fx the CPU per message (aim: rate within 1.5x, i.e. at least 0.67x)\n",
		medianF(rates[1])/medianF(rates[0]), medianF(cpus[1])/medianF(cpus[0]))
	return nil
}

// flushOnce runs smtp-send once with env and returns its wall time, its
// CPU time and the recipients delivered (from its "run finished" line).
func flushOnce(bin string, env []string, logFile string) (time.Duration, time.Duration, int, error) {
	lf, err := os.Create(logFile)
	if err != nil {
		return 0, 0, 0, err
	}
	defer lf.Close()
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stderr = lf
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w (log %s)", bin, err, logFile)
	}
	wall := time.Since(start)
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if _, err := lf.Seek(0, io.SeekStart); err != nil {
		return 0, 0, 0, err
	}
	sc := bufio.NewScanner(lf)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, `msg="run finished"`) {
			continue
		}
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "delivered="); ok {
				d, err := strconv.Atoi(v)
				return wall, cpu, d, err
			}
		}
	}
	return 0, 0, 0, fmt.Errorf("no run finished line in %s", logFile)
}

// mxSpool writes a spool of n messages of size bytes at dir, message i
// to r<i>@d<i mod 20>.bench.test.
func mxSpool(dir string, n, size int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sp, err := spool.New(dir)
	if err != nil {
		return err
	}
	body := payload(size)
	now := time.Now()
	for i := range n {
		id, _ := spool.NewQueueID(now)
		to := fmt.Sprintf("r%d@d%02d.bench.test", i, i%mxDomains)
		w, err := sp.Create(&spool.Envelope{QueueID: id, Received: now, Client: "127.0.0.1:1", Helo: "bench.test",
			Protocol: "ESMTP", From: "bench@example.org", To: []string{to}})
		if err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
		if err := w.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// copySpool makes a new spool at dst holding copies of src's queued
// messages, made durable by one sync(2).
func copySpool(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	sp, err := spool.New(dst)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(src, spool.QueueDir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, spool.QueueDir, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(sp.Path(spool.QueueDir, e.Name()), b, spool.FileMode); err != nil {
			return err
		}
	}
	syscall.Sync()
	return nil
}

// startSink starts smtp-sink on addr (as nobody when root) and waits
// until it accepts connections; stop kills it.
func startSink(bin, addr string) (stop func(), err error) {
	var args []string
	if os.Getuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	cmd := exec.Command(bin, append(args, addr, "1024")...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w (apt-get install postfix)", bin, err)
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	for range 200 {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("smtp-sink on %s does not accept connections", addr)
}

// startMXDNS starts the benchmark's DNS server on 127.0.0.1 (UDP and
// TCP, one port): d<k>.bench.test MX 10 mx<k mod 4>.bench.test, and
// mx<j>.bench.test A 127.0.0.<61+j>; NXDOMAIN for any other name, NODATA
// for another type. It answers as a recursive resolver (RA set).
func startMXDNS() (addr string, stop func(), err error) {
	rrs := map[string][]dns.RR{} // by "name type"
	add := func(s string) error {
		rr, err := dns.NewRR(s)
		if err != nil {
			return err
		}
		k := strings.ToLower(rr.Header().Name) + " " + dns.TypeToString[rr.Header().Rrtype]
		rrs[k] = append(rrs[k], rr)
		return nil
	}
	names := map[string]bool{}
	for k := range mxDomains {
		name := fmt.Sprintf("d%02d.bench.test.", k)
		names[name] = true
		if err := add(fmt.Sprintf("%s 300 IN MX 10 mx%d.bench.test.", name, k%mxHosts)); err != nil {
			return "", nil, err
		}
	}
	for j := range mxHosts {
		name := fmt.Sprintf("mx%d.bench.test.", j)
		names[name] = true
		if err := add(fmt.Sprintf("%s 300 IN A 127.0.0.%d", name, mxFirstIP+j)); err != nil {
			return "", nil, err
		}
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		if len(q.Question) == 1 {
			qq := q.Question[0]
			name := strings.ToLower(qq.Name)
			m.Answer = rrs[name+" "+dns.TypeToString[qq.Qtype]]
			if !names[name] {
				m.Rcode = dns.RcodeNameError
			}
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return "", nil, err
	}
	us := &dns.Server{PacketConn: pc, Handler: h}
	ts := &dns.Server{Listener: ln, Handler: h}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	return pc.LocalAddr().String(), func() { us.Shutdown(); ts.Shutdown() }, nil
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.SortFunc(s, cmp.Compare)
	return s[len(s)/2]
}
