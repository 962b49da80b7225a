package receiver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/peer"
	"github.com/smtp-stdio/smtp-stdio/internal/velocity"
	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// One process for many connections: when the launcher hands over
// listening sockets (systemd Accept=no; inetd and xinetd "wait"), one
// smtp-stdio process accepts the connections and serves each in a
// goroutine with exactly the session code of a one-session process
// (receiver.session). It bounds the sessions at once, in all and per
// client; on SIGTERM (or SIGINT) it stops accepting, lets the sessions
// go on for SMTP_SHUTDOWN_GRACE, then stops the rest with 421 4.3.2; and
// with SMTP_IDLE_EXIT it exits after that long without a session, so
// that socket activation frees the memory until the next connection.
// systemd's sockets are never closed or unlinked: the next instance
// serves the connections that wait in the kernel meanwhile.

// stopWriteGrace is how long a session stopped after the grace may still
// write (its 421), in seconds' worth.
const stopWriteGrace = 5 * time.Second

// replyServerFull refuses a connection over SMTP_MAX_CONNECTIONS: 421
// 4.3.2, the system is not accepting network messages (RFC 3463).
func replyServerFull(host string) *protocol.Reply {
	return &protocol.Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{host + " Too many sessions, try again later"}}
}

// replyClientFull refuses a connection over
// SMTP_MAX_CONNECTIONS_PER_CLIENT: 421 4.7.0 (a policy refusal, as
// Postfix's smtpd_client_connection_count_limit).
func replyClientFull(host string) *protocol.Reply {
	return &protocol.Reply{Code: 421, Enhanced: "4.7.0", Lines: []string{host + " Too many sessions from your address, try again later"}}
}

// server is one process serving many sessions.
type server struct {
	rc  *receiver
	log *slog.Logger

	mu       sync.Mutex
	sessions map[*protocol.Session]net.Conn // serving now, for Shutdown
	conns    int                            // accepted and not yet closed
	byClient map[netip.Prefix]int           // conns per client (clientKey)
	idle     *time.Timer                    // SMTP_IDLE_EXIT, when set
	stopping bool
	wg       sync.WaitGroup
}

// serveListeners is Run for handed-over listening sockets. It returns
// the process's exit status: 0 after a shutdown or an idle exit, 78 for
// a bad configuration (logged; no client is waiting for a reply), 1 when
// no listener could be used.
func serveListeners(h peer.Handover) int {
	cfg, err := Load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "smtp-stdio: %v\n", err)
		return exitConfig
	}
	log, logDest := newLogger(cfg, os.Stderr)
	for _, k := range unknownSettings(os.Environ()) {
		log.Warn("unknown setting ignored", "name", k)
	}
	if _, ok := os.LookupEnv("RELAYCLIENT"); ok {
		// Set for the whole process, it would trust every client.
		log.Warn("RELAYCLIENT ignored in one-process mode: use SMTP_RELAY_CLIENTS")
	}
	rc, err := newReceiver(cfg, log)
	if err != nil {
		log.Error("cannot serve", "err", err)
		return exitConfig
	}
	if cfg.GroupCommit {
		rc.sp.ShareDirSyncs()
	}
	// The velocity limits in memory: every session is this process's,
	// so no file needs to be shared (velocity.Memory counts the same).
	mem, err := velocity.NewMemory()
	if err != nil {
		log.Error("cannot serve", "err", err)
		return exitSession
	}
	rc.rate = func(client netip.Addr, now time.Time) (velocity.Decision, error) {
		return mem.Check(client, now, cfg.Velocity())
	}
	s := &server{rc: rc, log: log, sessions: map[*protocol.Session]net.Conn{}, byClient: map[netip.Prefix]int{}}
	var ls []net.Listener
	var rcs []*receiver
	for i, f := range h.Listeners {
		name := h.Names[i]
		lrc, err := rc.forSocket(name)
		if err != nil {
			log.Error("listening socket not served", "fd", f.Fd(), "name", name, "err", err)
			continue
		}
		// FileListener works on a duplicate: closing it leaves the
		// launcher's socket open and, for a unix socket, in place.
		l, err := net.FileListener(f)
		if err != nil {
			log.Error("not a usable listening socket", "fd", f.Fd(), "err", err)
			continue
		}
		ls, rcs = append(ls, l), append(rcs, lrc)
		log.Info("listening", "addr", l.Addr().String(), "name", name, "tls_mode", lrc.cfg.TLSMode,
			"auth_required", lrc.cfg.AuthRequired, "log", logDest,
			"max_connections", cfg.MaxConnections, "max_connections_per_client", cfg.MaxConnectionsPerClient)
	}
	if len(ls) == 0 {
		return exitSession
	}
	done := make(chan struct{})
	var acceptors sync.WaitGroup
	for i, l := range ls {
		acceptors.Add(1)
		go func() {
			defer acceptors.Done()
			s.acceptLoop(l, rcs[i])
		}()
	}
	if cfg.IdleExit > 0 {
		s.idle = time.AfterFunc(cfg.IdleExit, func() { s.idleExit(done) })
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String(), "grace", cfg.ShutdownGrace)
	case <-done:
		log.Info("idle exit", "idle", cfg.IdleExit)
	}
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	acceptors.Wait()
	s.drain(cfg.ShutdownGrace)
	log.Info("stopped")
	return exitOK
}

// idleExit ends the process when no session is open; otherwise the
// last session to end rearms the timer.
func (s *server) idleExit(done chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == 0 && !s.stopping {
		s.stopping = true
		close(done)
	}
}

// drain waits up to grace for the sessions to end, then stops the rest
// (protocol.Session.Shutdown: 421 4.3.2, a message being read aborted,
// one being committed finishing with its reply) and waits for them.
func (s *server) drain(grace time.Duration) {
	ended := make(chan struct{})
	go func() { s.wg.Wait(); close(ended) }()
	select {
	case <-ended:
		return
	case <-time.After(grace):
	}
	s.mu.Lock()
	n := len(s.sessions)
	for sess, c := range s.sessions {
		sess.Shutdown()
		// A client that does not read must not hold the stop: the 421
		// gets a few seconds to go out, then writes fail.
		c.SetWriteDeadline(time.Now().Add(stopWriteGrace))
	}
	s.mu.Unlock()
	s.log.Info("grace over; stopping sessions", "sessions", n)
	<-ended
}

// acceptLoop accepts connections on l until it is closed.
func (s *server) acceptLoop(l net.Listener, rc *receiver) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait, rather than spin.
			s.log.Warn("accept failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.admit(c, rc)
	}
}

// admit counts the connection c and serves it, or refuses it with 421
// over a limit or while stopping.
func (s *server) admit(c net.Conn, rc *receiver) {
	cfg := s.rc.cfg
	client := connClient(c)
	key := clientKey(client)
	s.mu.Lock()
	var refusal *protocol.Reply
	switch {
	case s.stopping:
		refusal = replyShuttingDownServer(cfg.Hostname)
	case s.conns >= cfg.MaxConnections:
		refusal = replyServerFull(cfg.Hostname)
	case client.Addr.IsValid() && !s.rc.pol.MayRelay(client) && s.byClient[key] >= cfg.MaxConnectionsPerClient:
		// Trusted clients (SMTP_RELAY_CLIENTS) are exempt, as from the
		// velocity limits and as Postfix exempts $mynetworks.
		refusal = replyClientFull(cfg.Hostname)
	default:
		s.conns++
		s.byClient[key]++
		if s.idle != nil {
			s.idle.Stop()
		}
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if refusal != nil {
		s.log.Warn("connection refused", "client", client.Addr.String(), "code", refusal.Code, "enhanced", refusal.Enhanced)
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		protocol.WriteReply(c, refusal)
		go func() { lingerClose(c); c.Close() }()
		return
	}
	go s.serve(c, rc, client, key)
}

// serve runs one session on c and then closes it and uncounts it.
func (s *server) serve(c net.Conn, rc *receiver, client protocol.Client, key netip.Prefix) {
	defer s.wg.Done()
	presizeStack() // from 2 KiB, once, rather than three times in the session
	start := time.Now()
	log := s.log.With("sid", sessionID(), "client", client.Addr.String())
	var sess *protocol.Session
	rc.session(c, connFD(c), client, start, log, nil, func(ss *protocol.Session) {
		sess = ss
		s.mu.Lock()
		s.sessions[ss] = c
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			ss.Shutdown()
		}
	})
	c.Close()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.conns--
	if s.byClient[key]--; s.byClient[key] <= 0 {
		delete(s.byClient, key)
	}
	if s.conns == 0 && s.idle != nil && !s.stopping {
		s.idle.Reset(s.rc.cfg.IdleExit)
	}
	s.mu.Unlock()
}

// forSocket returns the receiver for the listening socket systemd named
// name (FileDescriptorName=, LISTEN_FDNAMES), as chasquid names its
// sockets: "submission" is message submission on port 587 (RFC 6409:
// STARTTLS, TLS before MAIL or AUTH, AUTH before MAIL), "submissions"
// submission over implicit TLS on port 465 (RFC 8314), and any other
// name, or none, the settings as they are (port 25). The two submission
// names need a key pair and an AUTH checker: without them the error
// says which setting is missing, and the socket is not served.
func (rc *receiver) forSocket(name string) (*receiver, error) {
	cfg := *rc.cfg
	switch name {
	case "submission":
		cfg.TLSMode, cfg.RequireTLS, cfg.AuthRequired = "starttls", true, true
	case "submissions":
		cfg.TLSMode, cfg.AuthRequired = "implicit", true
	default:
		return rc, nil
	}
	if err := cfg.checkTLS(); err != nil {
		return nil, fmt.Errorf("socket %q needs a key pair: %w", name, err)
	}
	if err := cfg.checkAuth(); err != nil {
		return nil, fmt.Errorf("socket %q needs AUTH: %w", name, err)
	}
	c := *rc
	c.cfg = &cfg
	return &c, nil
}

// replyShuttingDownServer refuses a connection accepted while the
// process stops.
func replyShuttingDownServer(host string) *protocol.Reply {
	return &protocol.Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{host + " Service shutting down, try again later"}}
}

// connClient names the client of an accepted connection: its TCP
// address (IPv4-mapped addresses as IPv4); a client on a unix socket
// has none and is neither local nor trusted.
func connClient(c net.Conn) protocol.Client {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return protocol.Client{Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	}
	return protocol.Client{}
}

// clientKey is what SMTP_MAX_CONNECTIONS_PER_CLIENT counts by: the
// address, an IPv6 address by its /64 (one site), as the velocity limit.
func clientKey(c protocol.Client) netip.Prefix {
	a := c.Addr.Addr()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	p, _ := a.Prefix(a.BitLen())
	return p
}

// connFD returns the descriptor of a TCP connection, for the timing
// checks (peer.PendingInput polls it and reads nothing), or -1.
func connFD(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}
