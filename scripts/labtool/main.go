// Command labtool is the fleet lab of scripts/lab (issue 16): hosts in
// Linux network namespaces joined by a bridge on 192.0.2.0/24 (TEST-NET-1,
// inside the namespaces only, no route out), mail flowing through them
// by MX while faults are injected, and a count of every message at the
// end.
//
// The hosts:
//
//	dns     192.0.2.53   the lab's zone, lab.example: MX 10 mx1, 10 mx2, 20 mx3
//	mx1     192.0.2.11   smtp-stdio under tcpserver (a process per connection)
//	mx2     192.0.2.12   smtp-stdio in one process (systemd-socket-activate, Accept=no)
//	mx3     192.0.2.13   smtp-stdio under inetd "wait" (one process, idle exit)
//	relay1  192.0.2.31   a private Postfix instance, relaying to final
//	relay2  192.0.2.32   another, the receivers' second smarthost (failover)
//	final   192.0.2.20   the destination: smtp-stdio in one process, whose spool is the record
//	client  192.0.2.10   smtp-send in MX mode, its queue filled with the messages
//
// Each receiver has its own spool and its own smtp-send run in a loop, as
// cron would, relaying through the relays to final. The faults, while
// the mail flows: kill -9 of mx1's sessions and of mx1's smtp-send; mx3
// cut off (its link down) and restored; and, with -full, mx1 and mx2
// cut off together, kill -9 of mx2's one process (restarted, as systemd
// would), mx1's spool (a small tmpfs) filled and freed, relay1 stopped
// (SIGSTOP) and resumed, final stopped and resumed.
// Then everything drains, and the lab counts each message by its
// Message-ID in final's spool: sent, delivered once, delivered twice,
// lost, with each host's queue. It exits 1 on a loss or a duplicate, 2
// when it could not run.
//
// Usage: labtool -bin DIR [-n MESSAGES] [-full] [-keep]
// (DIR holds smtp-stdio and smtp-send). Root only. Everything it starts
// is ended by its PID, its namespaces deleted, on every way out.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/postfixtest"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "dns-serve" {
		dnsServe(os.Args[2:])
		return
	}
	bin := flag.String("bin", "", "directory of the smtp-stdio and smtp-send binaries")
	n := flag.Int("n", 300, "messages to send")
	full := flag.Bool("full", false, "all the faults (the short version has two)")
	keep := flag.Bool("keep", false, "keep the lab's directory")
	limit := flag.Duration("time", 10*time.Minute, "longest run, faults and drain included")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "usage: labtool -bin DIR [-n MESSAGES] [-full]")
		os.Exit(2)
	}
	l := &lab{bin: *bin, n: *n, full: *full, id: fmt.Sprintf("l%d", os.Getpid()%100000)}
	code := l.run(*keep, *limit)
	os.Exit(code)
}

// host is one namespace of the lab.
type host struct {
	name, addr string
	ns         string // network namespace name
	veth       string // its end in the hub, for cutting the link
}

type lab struct {
	bin   string
	n     int
	full  bool
	id    string
	dir   string
	hub   string
	hosts map[string]*host

	mu    sync.Mutex
	procs map[string]*exec.Cmd // by role, to kill or restart
	// window is the number of duplicates the faults may cause (RFC
	// 1047): each session killed between its fsync and its 250 leaves
	// the client to send that message again, and an smtp-send killed
	// between a next hop's 250 and its journal line sends that message
	// again. One per session killed and one per connection the killed
	// smtp-send had open.
	window int
	mounts []string // to unmount at the end
	relays []string // the relays' configuration directories, to stop
}

func (l *lab) logf(format string, a ...any) {
	fmt.Printf("lab: "+format+"\n", a...)
}

// sh runs a command on the host and fails with its output.
func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *lab) run(keep bool, limit time.Duration) int {
	if os.Getuid() != 0 {
		fmt.Println("lab: needs root (network namespaces); skipped")
		return 0
	}
	for _, p := range []string{"ip", "tcpserver", "systemd-socket-activate"} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Printf("lab: %s not installed; skipped\n", p)
			return 0
		}
	}
	dir, err := os.MkdirTemp("", "smtp-lab-")
	if err != nil {
		fmt.Println("lab:", err)
		return 2
	}
	l.dir, l.procs = dir, map[string]*exec.Cmd{}
	defer func() {
		l.cleanup()
		if keep {
			l.logf("kept %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	// A signal ends the lab through the same clean-up.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		l.cleanup()
		os.Exit(2)
	}()
	deadline := time.Now().Add(limit)
	if err := l.network(); err != nil {
		l.logf("network: %v", err)
		return 2
	}
	if l.full {
		// mx1's spool on a small file system of its own, to be filled.
		d := l.spool("mx1")
		if err := sh("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", d); err != nil {
			l.logf("tmpfs: %v", err)
			return 2
		}
		l.mounts = append(l.mounts, d)
	}
	if err := l.start(); err != nil {
		l.logf("start: %v", err)
		return 2
	}
	sent, err := l.fill()
	if err != nil {
		l.logf("queue: %v", err)
		return 2
	}
	l.logf("%d messages queued on client; sending by MX", len(sent))
	l.startLoop("client", "client", l.spool("client"), nil)
	l.faults(deadline)
	drained := l.drain(deadline)
	return l.count(sent, drained)
}

// network makes the hub namespace with a bridge and one namespace per
// host, joined to it by a veth pair.
func (l *lab) network() error {
	l.hub = l.id + "-hub"
	l.hosts = map[string]*host{}
	if err := sh("ip", "netns", "add", l.hub); err != nil {
		return err
	}
	if err := sh("ip", "-n", l.hub, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := sh("ip", "-n", l.hub, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for i, h := range []struct{ name, addr string }{
		{"dns", "192.0.2.53"}, {"client", "192.0.2.10"}, {"mx1", "192.0.2.11"}, {"mx2", "192.0.2.12"},
		{"mx3", "192.0.2.13"}, {"final", "192.0.2.20"}, {"relay1", "192.0.2.31"}, {"relay2", "192.0.2.32"},
	} {
		hh := &host{name: h.name, addr: h.addr, ns: l.id + "-" + h.name, veth: fmt.Sprintf("%sh%d", l.id, i)}
		l.hosts[h.name] = hh
		inner := fmt.Sprintf("%sn%d", l.id, i)
		for _, c := range [][]string{
			{"ip", "netns", "add", hh.ns},
			{"ip", "link", "add", hh.veth, "netns", l.hub, "type", "veth", "peer", "name", inner, "netns", hh.ns},
			{"ip", "-n", l.hub, "link", "set", hh.veth, "master", "br0", "up"},
			{"ip", "-n", hh.ns, "addr", "add", hh.addr + "/24", "dev", inner},
			{"ip", "-n", hh.ns, "link", "set", inner, "up"},
			{"ip", "-n", hh.ns, "link", "set", "lo", "up"},
		} {
			if err := sh(c...); err != nil {
				return err
			}
		}
	}
	return nil
}

// spool returns host's spool directory, made on first use (0700).
func (l *lab) spool(name string) string {
	d := filepath.Join(l.dir, name, "spool")
	os.MkdirAll(d, 0o700)
	os.Chmod(filepath.Join(l.dir, name), 0o700)
	return d
}

// inNS starts args in host's namespace with env, in a process group of
// its own, its output to the lab's log for the role.
func (l *lab) inNS(role, hostName string, env []string, args ...string) (*exec.Cmd, error) {
	h := l.hosts[hostName]
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	logPath := filepath.Join(l.dir, role+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { cmd.Wait(); f.Close() }()
	l.mu.Lock()
	l.procs[role] = cmd
	l.mu.Unlock()
	return cmd, nil
}

// stop ends a role's process group by its PID.
func (l *lab) stop(role string, sig syscall.Signal) {
	l.mu.Lock()
	cmd := l.procs[role]
	l.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, sig)
	}
}

func (l *lab) receiverEnv(name string) []string {
	return []string{
		"SMTP_SPOOL_DIR=" + l.spool(name), "SMTP_HOSTNAME=" + name + ".lab.example",
		"SMTP_LOCAL_DOMAINS=lab.example", "SMTP_RELAY_CLIENTS=192.0.2.0/24", "SMTP_LOG=stderr",
		"SMTP_REJECT_EARLY_TALKERS=false", "SMTP_FORBID_IMPROPER_PIPELINING=false",
	}
}

// start runs the DNS server, final, and the three receivers with their
// smtp-send loops.
func (l *lab) start() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	zone := filepath.Join(l.dir, "zone")
	var z strings.Builder
	// The short run prefers mx1 (5 before mx2's 10), so that the client
	// sends there and the kill of mx1's sessions and smtp-send finds
	// work; with equal preferences it went to mx2 alone in about half
	// the runs, and the kill found nothing.
	mx1 := 10
	if !l.full {
		mx1 = 5
	}
	fmt.Fprintf(&z, "lab.example. 60 IN MX %d mx1.lab.example.\nlab.example. 60 IN MX 10 mx2.lab.example.\nlab.example. 60 IN MX 20 mx3.lab.example.\n", mx1)
	for _, n := range []string{"mx1", "mx2", "mx3", "final", "client"} {
		fmt.Fprintf(&z, "%s.lab.example. 60 IN A %s\n", n, l.hosts[n].addr)
	}
	if err := os.WriteFile(zone, []byte(z.String()), 0o644); err != nil {
		return err
	}
	if _, err := l.inNS("dns", "dns", nil, self, "dns-serve", zone, "192.0.2.53:53"); err != nil {
		return err
	}
	if _, err := l.inNS("final", "final", nil, l.oneProcess("final", "192.0.2.20:25", l.receiverEnv("final"))...); err != nil {
		return err
	}
	for _, n := range []string{"relay1", "relay2"} {
		if err := l.startRelay(n); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	}
	if err := l.startMX1(); err != nil {
		return err
	}
	if err := l.startMX2(); err != nil {
		return err
	}
	if err := l.startMX3(); err != nil {
		return err
	}
	for _, n := range []string{"mx1", "mx2", "mx3"} {
		l.startLoop(n+"-send", n, l.spool(n), l.nextHops())
	}
	// Wait until every receiver answers.
	for _, n := range []string{"final", "relay1", "relay2", "mx1", "mx2", "mx3"} {
		if err := l.waitSMTP(n); err != nil {
			return err
		}
	}
	return nil
}

// oneProcess is the command line of smtp-stdio in one-process mode on
// addr under systemd-socket-activate (Accept=no), with env.
func (l *lab) oneProcess(name, addr string, env []string) []string {
	args := []string{"systemd-socket-activate", "--listen=" + addr}
	for _, kv := range env {
		args = append(args, "-E", kv)
	}
	return append(args, filepath.Join(l.bin, "smtp-stdio"))
}

func (l *lab) startMX1() error {
	_, err := l.inNS("mx1", "mx1", l.receiverEnv("mx1"), "tcpserver", "-RHl0", "-c", "100", "192.0.2.11", "25",
		filepath.Join(l.bin, "smtp-stdio"))
	return err
}

func (l *lab) startMX2() error {
	_, err := l.inNS("mx2", "mx2", nil, l.oneProcess("mx2", "192.0.2.12:25", l.receiverEnv("mx2"))...)
	return err
}

func (l *lab) startMX3() error {
	inetd := ""
	for _, p := range []string{"/usr/sbin/inetd", "/opt/openbsd-inetd/usr/sbin/inetd"} {
		if _, err := os.Stat(p); err == nil {
			inetd = p
		}
	}
	env := append(l.receiverEnv("mx3"), "SMTP_IDLE_EXIT=2s", "SMTP_LOG=off")
	if inetd == "" {
		// Without inetd, mx3 is a second Accept=no host.
		_, err := l.inNS("mx3", "mx3", nil, l.oneProcess("mx3", "192.0.2.13:25", env)...)
		return err
	}
	conf := filepath.Join(l.dir, "inetd.conf")
	line := "192.0.2.13:\n25\tstream\ttcp\twait\troot\t/usr/bin/env\tenv " + strings.Join(env, " ") + " " +
		filepath.Join(l.bin, "smtp-stdio") + "\n"
	if err := os.WriteFile(conf, []byte(line), 0o644); err != nil {
		return err
	}
	_, err := l.inNS("mx3", "mx3", nil, inetd, "-d", conf)
	return err
}

// nextHops is the smarthost setting of the receivers' smtp-send: the two
// relays, tried in order (failover).
func (l *lab) nextHops() []string {
	return []string{"SMTP_SMARTHOST=[192.0.2.31]:25,[192.0.2.32]:25", "SMTP_SMARTHOST_TLS=none"}
}

// postfixMaster is the master.cf of a relay: smtpd on port 25 and what a
// message needs from there to the SMTP client, none chrooted (the tests'
// private instances' services, postfixtest.Master).
const postfixMaster = "smtp      inet  n       -       n       -       -       smtpd\n" + postfixtest.Master

// startRelay starts a private Postfix instance in host name's namespace:
// its own configuration, queue and log under the lab's directory,
// accepting from the lab's network and relaying everything to final.
func (l *lab) startRelay(name string) error {
	postfix := "/usr/sbin/postfix"
	if _, err := os.Stat(postfix); err != nil {
		return fmt.Errorf("postfix not installed")
	}
	dir := filepath.Join(l.dir, name)
	conf := filepath.Join(dir, "etc")
	for _, d := range []string{conf, filepath.Join(dir, "queue")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	os.Chmod(dir, 0o755)
	os.Chmod(l.dir, 0o755) // the postfix user walks to its queue
	mainCF := strings.Join([]string{
		"compatibility_level = 3.6",
		"queue_directory = " + filepath.Join(dir, "queue"),
		"data_directory = " + filepath.Join(dir, "data"),
		"maillog_file = " + filepath.Join(dir, "maillog"),
		"maillog_file_prefixes = " + dir,
		"myhostname = " + name + ".lab.example",
		"mydestination =",
		"inet_interfaces = " + l.hosts[name].addr,
		"inet_protocols = ipv4",
		"mynetworks = 192.0.2.0/24",
		"relayhost = [192.0.2.20]:25",
		"alias_maps =",
		"alias_database =",
		"smtpd_peername_lookup = no",
		"smtp_dns_support_level = disabled",
		"smtpd_banner = $myhostname ESMTP",
		"smtp_tls_security_level = none",
		"smtpd_tls_security_level = none",
		"default_process_limit = 30",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCF), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(postfixMaster), 0o644); err != nil {
		return err
	}
	out, err := exec.Command("ip", "netns", "exec", l.hosts[name].ns, postfix, "-c", conf, "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("postfix start: %v: %s", err, out)
	}
	l.mu.Lock()
	l.relays = append(l.relays, conf)
	l.mu.Unlock()
	return nil
}

// relayPIDs returns the processes of the relay whose configuration is
// conf: its master (from its pid file) and every process of its session.
func relayPIDs(conf string) []int {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(conf), "queue", "pid", "master.pid"))
	if err != nil {
		return nil
	}
	master, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil
	}
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if sid, err := unix.Getsid(pid); err == nil && sid == master {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startLoop runs smtp-send on host's spool once a second, as cron would
// (cron's least interval is a minute; the lab has minutes in all).
func (l *lab) startLoop(role, hostName, spoolDir string, extra []string) {
	env := append([]string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=" + hostName + ".lab.example",
		"SMTP_SEND_DNS=192.0.2.53:53", "SMTP_SEND_BACKOFF_MIN=1s", "SMTP_SEND_BACKOFF_MAX=2s",
		"SMTP_SEND_RUN_TIME=20s", "SMTP_SEND_CONNECT_TIMEOUT=2s", "SMTP_SEND_COMMAND_TIMEOUT=10s",
		"SMTP_SEND_TMP_MAX_AGE=30s"}, extra...)
	loop := "while :; do " + filepath.Join(l.bin, "smtp-send") + "; sleep 1; done"
	l.inNS(role, hostName, env, "sh", "-c", loop)
}

// waitSMTP waits up to 20 s for host's greeting on port 25.
func (l *lab) waitSMTP(name string) error {
	h := l.hosts[name]
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(100 * time.Millisecond) {
		out, _ := exec.Command("ip", "netns", "exec", l.hosts["client"].ns, os.Args[0], "dns-serve", "-probe", h.addr+":25").CombinedOutput()
		if strings.HasPrefix(string(out), "220") {
			return nil
		}
	}
	return fmt.Errorf("%s (%s) does not greet", name, h.addr)
}

// fill queues n messages on client, each with a Message-ID of its own.
func (l *lab) fill() (map[string]bool, error) {
	sp, err := spool.New(l.spool("client"))
	if err != nil {
		return nil, err
	}
	sent := map[string]bool{}
	now := time.Now()
	for i := range l.n {
		id, err := spool.NewQueueID(now)
		if err != nil {
			return nil, err
		}
		mid := fmt.Sprintf("<lab-%s-%d@client.lab.example>", l.id, i)
		w, err := sp.Create(&spool.Envelope{QueueID: id, Received: now, Helo: "client.lab.example", Protocol: "ESMTP",
			From: "sender@client.lab.example", To: []string{fmt.Sprintf("user%d@lab.example", i%7)}})
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "From: sender@client.lab.example\r\nTo: user%d@lab.example\r\nMessage-ID: %s\r\nSubject: lab %d\r\n\r\nmessage %d of the lab\r\n", i%7, mid, i, i)
		if err := w.Commit(); err != nil {
			return nil, err
		}
		sent[mid] = true
	}
	return sent, nil
}

// faults injects the faults while the mail flows, each logged with
// where the mail then was.
func (l *lab) faults(deadline time.Time) {
	cut := func(d time.Duration, names ...string) {
		for _, n := range names {
			sh("ip", "-n", l.hub, "link", "set", l.hosts[n].veth, "down")
		}
		time.Sleep(d)
		for _, n := range names {
			sh("ip", "-n", l.hub, "link", "set", l.hosts[n].veth, "up")
		}
	}
	time.Sleep(300 * time.Millisecond)
	l.busy(3 * time.Second)
	l.logf("fault: kill -9 of mx1's sessions and its smtp-send (%s)", l.progress())
	l.window += l.killChildren("mx1")
	conns := l.outbound("mx1")
	l.stop("mx1-send", syscall.SIGKILL)
	l.logf("killed smtp-send with %d connections open", conns)
	l.window += conns
	l.startLoop("mx1-send", "mx1", l.spool("mx1"), l.nextHops())
	if !l.full {
		l.logf("fault: mx3 cut off for 3 s (%s)", l.progress())
		cut(3*time.Second, "mx3")
		return
	}
	// Longer than the client's command timeout (10 s), so that its
	// connections to them fail and it turns to mx3, preference 20.
	l.logf("fault: mx1 and mx2 both cut off for 12 s (%s)", l.progress())
	cut(12*time.Second, "mx1", "mx2")
	l.logf("fault: kill -9 of mx2's one process, restarted a second later (%s)", l.progress())
	// Its sessions at most: the client's connections (8).
	l.window += 8
	l.stop("mx2", syscall.SIGKILL)
	time.Sleep(time.Second)
	l.startMX2()
	l.logf("fault: mx1's spool (a 16 MiB tmpfs) filled for 4 s, then freed (%s)", l.progress())
	filler := filepath.Join(l.spool("mx1"), "filler")
	if f, err := os.Create(filler); err == nil {
		buf := make([]byte, 1<<20)
		for {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
		f.Close()
		time.Sleep(4 * time.Second)
		os.Remove(filler)
	}
	l.logf("fault: relay1 (Postfix) stopped (SIGSTOP) for 15 s: the receivers fail over to relay2 (%s)", l.progress())
	l.signalRelay(0, syscall.SIGSTOP)
	time.Sleep(15 * time.Second)
	l.signalRelay(0, syscall.SIGCONT)
	l.logf("fault: final stopped (SIGSTOP) for 5 s (%s)", l.progress())
	l.stop("final", syscall.SIGSTOP)
	time.Sleep(5 * time.Second)
	l.stop("final", syscall.SIGCONT)
	l.logf("fault: mx3 cut off for 3 s (%s)", l.progress())
	cut(3*time.Second, "mx3")
}

// signalRelay sends sig to every process of relay i.
func (l *lab) signalRelay(i int, sig syscall.Signal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < len(l.relays) {
		for _, pid := range relayPIDs(l.relays[i]) {
			syscall.Kill(pid, sig)
		}
	}
}

// progress says where the mail is: queued on the client, on the
// receivers, and arrived at final.
func (l *lab) progress() string {
	return fmt.Sprintf("client %d queued, receivers %d, relays %d, final %d", queued(l.spool("client")),
		queued(l.spool("mx1"))+queued(l.spool("mx2"))+queued(l.spool("mx3")), l.relayQueued(), queued(l.spool("final")))
}

// sessions returns the PIDs of the smtp-stdio processes of a role whose
// launcher starts one per connection (tcpserver): its process group's.
func (l *lab) sessions(role string) []int {
	l.mu.Lock()
	cmd := l.procs[role]
	l.mu.Unlock()
	if cmd == nil {
		return nil
	}
	var pids []int
	pgid := cmd.Process.Pid
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid {
			comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			if strings.TrimSpace(string(comm)) == "smtp-stdio" {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// killChildren sends SIGKILL to the sessions of role (sessions), and
// returns how many it killed.
func (l *lab) killChildren(role string) int {
	killed := 0
	for _, pid := range l.sessions(role) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	l.logf("killed %d sessions", killed)
	return killed
}

// busy waits, up to limit, until mx1 has a session open and its smtp-send
// a connection to a relay, so that the kill that follows hits both
// windows; it says how long it waited. In the full run mx1 and mx2 have
// the same preference and the client may be sending all to mx2: then
// the kill finds nothing, and the log says so.
func (l *lab) busy(limit time.Duration) {
	start := time.Now()
	for time.Since(start) < limit {
		if len(l.sessions("mx1")) > 0 && l.outbound("mx1") > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.logf("mx1 busy after %s", time.Since(start).Round(time.Millisecond))
}

// outbound counts the established TCP connections to port 25 from host
// name's namespace (its /proc/net/tcp): an smtp-send's sessions to its
// next hops, each carrying at most one message at a time.
func (l *lab) outbound(name string) int {
	out, err := exec.Command("ip", "netns", "exec", l.hosts[name].ns, "cat", "/proc/net/tcp").Output()
	if err != nil {
		l.logf("%s: /proc/net/tcp: %v", name, err)
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		// sl local_address rem_address st ...; addresses are hex IP:port.
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[2], ":0019") && f[3] == "01" {
			n++
		}
	}
	return n
}

// drain waits until client and the receivers have empty queues, or the
// deadline; it reports whether they emptied.
func (l *lab) drain(deadline time.Time) bool {
	for time.Now().Before(deadline) {
		left := 0
		for _, n := range []string{"client", "mx1", "mx2", "mx3"} {
			left += queued(l.spool(n))
		}
		left += l.relayQueued()
		if left == 0 {
			return true
		}
		time.Sleep(500 * time.Millisecond)
	}
	return false
}

// relayQueued counts the messages in the relays' Postfix queues.
func (l *lab) relayQueued() int {
	n := 0
	for _, r := range []string{"relay1", "relay2"} {
		for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
			filepath.WalkDir(filepath.Join(l.dir, r, "queue", q), func(_ string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					n++
				}
				return nil
			})
		}
	}
	return n
}

func queued(spoolDir string) int {
	ents, _ := os.ReadDir(filepath.Join(spoolDir, spool.QueueDir))
	return len(ents)
}

// count reads final's spool and prints the table.
func (l *lab) count(sent map[string]bool, drained bool) int {
	got := map[string]int{}
	via := map[string]int{}        // messages per receiver, by the HELO it gave final
	paths := map[string][]string{} // each copy's hosts, by Message-ID, to show duplicates
	ents, _ := os.ReadDir(filepath.Join(l.spool("final"), spool.QueueDir))
	for _, e := range ents {
		m, err := spool.Open(filepath.Join(l.spool("final"), spool.QueueDir, e.Name()))
		if err != nil {
			continue
		}
		relay := strings.TrimSuffix(m.Helo, ".lab.example")
		via[relay]++
		path, mid := relay, ""
		sc := bufio.NewScanner(m.Content())
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				break
			}
			for _, n := range []string{"mx1", "mx2", "mx3"} {
				if strings.Contains(line, "by "+n+".lab.example ") {
					via[n]++
					path = n + " " + path
				}
			}
			if v, ok := strings.CutPrefix(line, "Message-ID: "); ok {
				mid = strings.TrimSpace(v)
				got[mid]++
			}
		}
		if mid != "" {
			paths[mid] = append(paths[mid], path+" ("+e.Name()+")")
		}
		m.Close()
	}
	once, twice, lost, foreign := 0, 0, 0, 0
	for mid := range sent {
		switch got[mid] {
		case 0:
			lost++
		case 1:
			once++
		default:
			twice++
		}
	}
	for mid := range got {
		if !sent[mid] {
			foreign++
		}
	}
	fmt.Printf("\n| sent | delivered once | delivered twice or more | duplicate window | lost | unknown | drained |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	fmt.Printf("| %d | %d | %d | %d | %d | %d | %v |\n\n", len(sent), once, twice, l.window, lost, foreign, drained)
	fmt.Printf("| host | messages through it | queued at the end | corrupt/ | failed/ |\n| --- | --- | --- | --- | --- |\n")
	names := []string{"client", "mx1", "mx2", "mx3"}
	sort.Strings(names)
	for _, n := range names {
		sd := l.spool(n)
		fmt.Printf("| %s | %d | %d | %d | %d |\n", n, via[n], queued(sd), count(filepath.Join(sd, "corrupt")), count(filepath.Join(sd, "failed")))
	}
	for _, r := range []string{"relay1", "relay2"} {
		fmt.Printf("| %s (Postfix) | %d | | | |\n", r, via[r])
	}
	fmt.Printf("| all | %d | %d | | |\n", len(ents), l.relayQueued())
	for mid, p := range paths {
		if len(p) > 1 {
			fmt.Printf("duplicate %s: %s\n", mid, strings.Join(p, "; "))
		}
	}
	if lost > 0 || twice > l.window || foreign > 0 || !drained {
		for _, r := range []string{"client", "mx1-send", "mx2", "final"} {
			tail(filepath.Join(l.dir, r+".log"), 15)
		}
		return 1
	}
	return 0
}

func count(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}

func tail(path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	fmt.Printf("--- %s (last %d lines)\n%s\n", filepath.Base(path), len(lines), strings.Join(lines, "\n"))
}

// cleanup ends every process the lab started, by its PID (its process
// group), and deletes the namespaces.
func (l *lab) cleanup() {
	l.mu.Lock()
	procs := l.procs
	l.procs = map[string]*exec.Cmd{}
	l.mu.Unlock()
	for _, cmd := range procs {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for _, conf := range l.relays {
		for _, pid := range relayPIDs(conf) {
			syscall.Kill(pid, syscall.SIGCONT)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	l.relays = nil
	for _, m := range l.mounts {
		exec.Command("umount", "-l", m).Run()
	}
	l.mounts = nil
	for _, h := range l.hosts {
		exec.Command("ip", "netns", "del", h.ns).Run()
	}
	if l.hub != "" {
		exec.Command("ip", "netns", "del", l.hub).Run()
	}
}

// dnsServe serves the zone file's records on addr (UDP and TCP), or with
// -probe ADDR prints the first line a server at ADDR says (a greeting).
func dnsServe(args []string) {
	if len(args) == 2 && args[0] == "-probe" {
		c, err := net.DialTimeout("tcp", args[1], time.Second)
		if err != nil {
			os.Exit(1)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "QUIT\r\n")
		c.Close()
		fmt.Print(line)
		return
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var rrs []dns.RR
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		rr, err := dns.NewRR(l)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		rrs = append(rrs, rr)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		r.Authoritative = true
		for _, qq := range q.Question {
			for _, rr := range rrs {
				h := rr.Header()
				if strings.EqualFold(h.Name, qq.Name) && (h.Rrtype == qq.Qtype || qq.Qtype == dns.TypeANY) {
					r.Answer = append(r.Answer, rr)
				}
			}
		}
		if len(r.Answer) == 0 {
			known := false
			for _, rr := range rrs {
				if strings.EqualFold(rr.Header().Name, q.Question[0].Name) {
					known = true
				}
			}
			if !known {
				r.Rcode = dns.RcodeNameError
			}
		}
		w.WriteMsg(r)
	})
	errs := make(chan error, 2)
	for _, netw := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: args[1], Net: netw, Handler: handler}
		go func() { errs <- srv.ListenAndServe() }()
	}
	fmt.Fprintln(os.Stderr, <-errs)
	os.Exit(2)
}
