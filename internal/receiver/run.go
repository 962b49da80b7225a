package receiver

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/peer"
	"github.com/smtp-stdio/smtp-stdio/internal/relay"
	"github.com/smtp-stdio/smtp-stdio/internal/velocity"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Exit statuses of smtp-stdio (sysexits.h).
const (
	exitOK       = 0
	exitSession  = 1  // the session ended badly (timeout, error limit, I/O)
	exitUsage    = 64 // EX_USAGE
	exitTempFail = 75 // EX_TEMPFAIL: refused the session with 421
	exitConfig   = 78 // EX_CONFIG
)

// Refusal replies sent before a session starts (RFC 5321 section 3.8: a
// server that cannot serve answers 421 and closes).
var replyUnavailable = &protocol.Reply{Code: 421, Enhanced: "4.3.0",
	Lines: []string{"Service not available, closing transmission channel"}}

// writeGrace is how long after the session deadline a reply may still
// be written.
const writeGrace = 10 * time.Second

// replyTooManyConnections refuses a session over a velocity limit: 421
// closes the channel (RFC 5321 section 3.8), 4.7.0 is a temporary policy
// refusal (RFC 3463), so the client retries later.
func replyTooManyConnections(host string) *protocol.Reply {
	return &protocol.Reply{Code: 421, Enhanced: "4.7.0",
		Lines: []string{host + " Too many connections, try again later"}}
}

// Run runs smtp-stdio with args (as os.Args: the program's name first), the
// process's environment and its file descriptors 0 (the client's
// commands), 1 (the replies, and nothing else) and 2 (the log, unless it
// is the client's socket), and returns the exit status: 0, 1 for a
// session that ended badly, 64 for arguments (--help alone is allowed: it
// writes Usage to standard error and returns 0; so is --hash-password,
// hashPassword), 75 for a session refused over a rate limit, 78 for a
// bad configuration or spool.
func Run(args []string) int {
	name := "smtp-stdio"
	if len(args) > 0 {
		name = args[0]
	}
	if len(args) > 1 {
		if args[1] == "-h" || args[1] == "--help" || args[1] == "-help" {
			Usage(os.Stderr, name)
			return exitOK
		}
		if args[1] == "--hash-password" && len(args) == 2 {
			return hashPassword(name)
		}
		fmt.Fprintf(os.Stderr, "%s: takes no arguments (see --help)\n", name)
		return exitUsage
	}
	start := time.Now()
	presizeStack()
	// A write to a closed stdout must be an error we handle (abort the
	// message, exit), not a SIGPIPE that kills us mid-write.
	signal.Ignore(syscall.SIGPIPE)

	// What the launcher handed over, from the kind of each descriptor:
	// listening sockets (systemd Accept=no, inetd wait) are served by
	// one process (server.go); a connected socket on fd 3 (systemd
	// Accept=yes without StandardInput=socket) is one session, as on
	// stdin and stdout.
	h := peer.FindHandover(os.Getenv, os.Getpid())
	if len(h.Listeners) > 0 {
		return serveListeners(h)
	}
	if h.Connected >= 0 {
		unix.Dup2(h.Connected, 0)
		unix.Dup2(h.Connected, 1)
		unix.Close(h.Connected)
	}

	stdin, restoreIn := peer.PollableFile(0, "stdin")
	defer restoreIn()
	stdout, restoreOut := peer.PollableFile(1, "stdout")
	defer restoreOut()

	cfg, err := Load()
	if err != nil {
		return refuse(stdout, nil, exitConfig, err)
	}
	log, logDest := newLogger(cfg, os.Stderr)
	p, err := peer.Find(os.Getenv, 0)
	if err != nil {
		return refuse(stdout, log, exitConfig, err)
	}
	client := protocol.Client{Addr: p.Addr, Local: p.Local}
	log = log.With("sid", sessionID(), "client", clientString(p))
	for _, v := range p.Ignored {
		// The socket is the truth; a launcher variable that disagrees
		// leaked from elsewhere (an administrator's shell, a unit file).
		log.Warn("launcher variable disagrees with the socket's peer; ignored",
			"var", v.Var, "value", v.Value, "peer", p.Addr.Addr().String())
	}
	for _, k := range unknownSettings(os.Environ()) {
		log.Warn("unknown setting ignored", "name", k)
	}
	rc, err := newReceiver(cfg, log)
	if err != nil {
		return refuse(stdout, log, exitConfig, err)
	}
	if v, ok := os.LookupEnv("RELAYCLIENT"); ok {
		// qmail's convention, set per client by tcprules: this client
		// may relay. qmail also appends the value to each recipient;
		// smtp-stdio does not rewrite addresses, so a value is ignored.
		rc.pol.Trust()
		if v != "" {
			log.Warn("RELAYCLIENT value ignored: recipients are not rewritten", "value", v)
		}
	}
	log.Debug("session start", "source", string(p.Source), "log", logDest)
	fd := -1
	if peer.IsSocket(0) {
		fd = 0
	}
	// A signal must not leave a temporary file behind while a message
	// is read. The handler is installed before the first file made while
	// its message is read, one past the spool writer's 64 KiB buffer
	// (spool.CreateSpill): a shorter message's file lives only through
	// the commit, and a session that spools none has nothing to clean up.
	// The handler costs a session about a tenth of its CPU (os/signal
	// starts three threads), which the others need not pay.
	onFirst := func(d *spoolDelivery) {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		go func() {
			s := <-sigs
			d.abortCurrent()
			log.Warn("session killed", "signal", s.String())
			os.Exit(exitSession)
		}()
	}
	return rc.session(stdioConn{in: stdin, out: stdout}, fd, client, start, log, onFirst, nil)
}

// receiver holds what the sessions of a process share: the settings, the
// spool, the relay policy and the velocity state.
type receiver struct {
	cfg *Config
	sp  *spool.Spool
	pol *relay.Policy
	// rate records one session of client at now against the velocity
	// limits and says whether it is within them: in the shared state
	// file $SMTP_SPOOL_DIR/velocity, or in memory in one-process mode
	// (velocity.Memory, the same counts).
	rate func(client netip.Addr, now time.Time) (velocity.Decision, error)
}

// newReceiver opens the spool and makes the relay policy of cfg. The
// error is a configuration error: spool.New refuses a root, queue/ or
// tmp/ that other users could change (spool.ErrUnsafe), as they could
// plant messages or read them.
func newReceiver(cfg *Config, log *slog.Logger) (*receiver, error) {
	sp, err := spool.New(cfg.SpoolDir)
	if err != nil {
		return nil, err
	}
	pol, err := relay.New(cfg.LocalDomains, cfg.RelayClients)
	if err != nil {
		return nil, err
	}
	if cfg.LocalRecipientsFile != "" {
		pol.SetLocalRecipients(cfg.LocalRecipientsFile, func(err error) {
			log.Error("SMTP_LOCAL_RECIPIENTS_FILE unusable; local recipients get 451 4.3.0", "err", err)
		})
	}
	file := filepath.Join(cfg.SpoolDir, "velocity")
	rate := func(client netip.Addr, now time.Time) (velocity.Decision, error) {
		return velocity.Check(file, client, now, cfg.Velocity())
	}
	return &receiver{cfg: cfg, sp: sp, pol: pol, rate: rate}, nil
}

// session serves one SMTP session on c, a connection to client: the
// velocity limits, the key pair, the timing checks on the socket fd (-1
// for none), then protocol.Session. onFirst, when not nil, runs once,
// before the first temporary file made while its message is read
// (spoolDelivery.beforeFirst); started, when not nil, is given
// the session before it serves (for a server that must be able to stop
// it). It logs the end of the session and returns the exit status of a
// one-session process: 0, 1 for a session that ended badly, 75 for a
// client over a velocity limit, 78 for a bad key pair.
func (rc *receiver) session(c net.Conn, fd int, client protocol.Client, start time.Time, log *slog.Logger,
	onFirst func(*spoolDelivery), started func(*protocol.Session)) int {
	cfg := rc.cfg
	if !rc.pol.MayRelay(client) {
		// Trusted clients (local, SMTP_RELAY_CLIENTS, RELAYCLIENT) are
		// neither limited nor counted, as Postfix exempts $mynetworks
		// (smtpd_client_event_limit_exceptions).
		dec, err := rc.rate(client.Addr.Addr(), time.Now())
		switch {
		case err != nil:
			// A rate limiter must not stop the mail.
			log.Warn("velocity check failed; session allowed", "err", err)
		case !dec.Allowed:
			log.Warn("session refused: too many connections", "limit", dec.Reason,
				"count", dec.Count, "client_count", dec.ClientCount)
			protocol.WriteReply(c, replyTooManyConnections(cfg.Hostname))
			return exitTempFail
		}
	}

	// Read per session, so a renewed certificate serves the next
	// connection; a bad key pair refuses the session (421) rather than
	// serve it in plaintext.
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return refuse(c, log, exitConfig, err)
	}

	d := &spoolDelivery{sp: rc.sp, now: time.Now, log: log}
	if onFirst != nil {
		d.beforeFirst = func() { onFirst(d) }
	}
	pc := cfg.Protocol(start)
	// A client that stops reading must not hold the process much past
	// the session deadline; the grace lets the final 421 be written when
	// the deadline ends a read.
	c.SetWriteDeadline(pc.Deadline.Add(writeGrace))
	if fd >= 0 { // abuse.go
		// Under implicit TLS the client speaks first: its ClientHello
		// (RFC 8314 section 3.3).
		if cfg.TLSMode != "implicit" && earlyTalker(cfg, fd, log) {
			protocol.WriteReply(c, replyEarlyTalker)
			lingerClose(c)
			return exitSession
		}
		socketChecks(cfg, &pc, fd)
	}
	pc.TLS, pc.ImplicitTLS, pc.RequireTLS = tlsCfg, cfg.TLSMode == "implicit", cfg.RequireTLS
	var onAuthFailure func()
	if !rc.pol.MayRelay(client) { // trusted clients are not counted (above)
		onAuthFailure = countAuthFailure(rc, client, log)
	}
	pc.Auth = cfg.authenticator(onAuthFailure)
	sess := protocol.NewSession(pc, client, rc.pol, d, log)
	if started != nil {
		started(sess)
	}
	// ServeConn reads through a buffer on c and, with a key pair, runs
	// crypto/tls on c itself.
	err = sess.ServeConn(c)
	d.abortCurrent()
	dur := time.Since(start).Round(time.Millisecond)
	switch {
	case err == nil:
		log.Info("session end", "reason", "quit", "messages", sess.Messages(), "duration", dur)
		return exitOK
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		log.Info("session end", "reason", "client closed connection", "messages", sess.Messages(), "duration", dur)
		return exitOK
	default:
		log.Warn("session end", "reason", err.Error(), "messages", sess.Messages(), "duration", dur)
		if fd >= 0 {
			lingerClose(c)
		}
		return exitSession
	}
}

// Limits of lingerClose: enough for a pipelined burst, short enough that
// an abusive client cannot hold the process.
const (
	lingerTime  = 200 * time.Millisecond
	lingerBytes = 1 << 20
)

// lingerClose ends a session that the server closes while the client may
// still be sending (a 554 to an early talker or to improper pipelining, a
// 421): it shuts down the sending side, so the client gets the reply and
// then end-of-file, and reads what the client still sends, briefly and
// boundedly. Closing a socket with unread input makes the kernel send a
// reset, which can destroy the reply before the client reads it (RFC 1122
// section 4.2.2.13).
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if c.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	io.Copy(io.Discard, io.LimitReader(c, lingerBytes))
}

// refuse answers 421 to the client, reports err on the log and returns
// status. Before the configuration is read there is no log: err goes to
// standard error, or to syslog when standard error is the client's
// socket (inetd, xinetd), so that a bad setting is never silent.
func refuse(stdout io.Writer, log *slog.Logger, status int, err error) int {
	switch {
	case log != nil:
		log.Error("session refused", "err", err)
	case stderrIsClient():
		// The configuration could not be read as a whole: read the one
		// setting this log needs on its own.
		var s syslogSetting
		envnames.Process(&s)
		log, _ = newLogger(&Config{Log: "syslog", LogLevel: "error", SyslogSocket: s.SyslogSocket}, io.Discard)
		log.Error("session refused", "err", err)
	default:
		fmt.Fprintf(os.Stderr, "smtp-stdio: %v\n", err)
	}
	protocol.WriteReply(stdout, replyUnavailable)
	return status
}

// syslogSetting is the setting refuse reads when Load failed, and the
// fields of Config after a bad one were never read: Config's field of the
// same name and tags (TestSyslogSettingIsConfigs), read by envnames.Process
// like the rest.
type syslogSetting struct {
	SyslogSocket string `split_words:"true"`
}

// sessionID names a session in the log: 12 hex digits from the
// runtime's random source (seeded from the system's at start), not
// crypto/rand, whose first use would cost a short session more: the
// name correlates log lines, it guards nothing.
func sessionID() string {
	return fmt.Sprintf("%012x", rand.Uint64()&(1<<48-1))
}

func clientString(p peer.Peer) string {
	if p.Local {
		return "local"
	}
	if !p.Addr.IsValid() {
		return "unknown"
	}
	return p.Addr.String()
}

// stderrIsClient reports whether standard error is the client's socket,
// as under inetd and xinetd.
func stderrIsClient() bool { return peer.IsSocket(2) && peer.SameFile(0, 2) }

// stackPad is what presizeStack indexes its array with, a variable so
// that the compiler keeps the array.
var stackPad = 0

// presizeStack grows the goroutine's stack to 16 KiB while it holds only
// a few frames: from the 8 KiB that the runtime's start-up leaves a piped
// session, or the 2 KiB a one-process server's session goroutine starts
// with. A session's deepest path, its commit (renameio, fsync, rename),
// needs more; grown there, the runtime copies the stack and adjusts each
// of the session's frames, which cost a one-message piped session about
// 3 % of its CPU (perf, 300 sessions), and a server's session three
// copies.
//
//go:noinline
func presizeStack() byte {
	var pad [10 << 10]byte
	pad[stackPad] = 1
	return pad[len(pad)-1-stackPad]
}
