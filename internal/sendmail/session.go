package sendmail

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/receiver"
	"github.com/smtp-stdio/smtp-stdio/internal/relay"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Replies of the -bs session through the drop helper (RFC 5321 section
// 4.2.3; RFC 3463): the helper's 65 is a message over its size limit,
// any other failure a local error the client may retry.
var (
	replyDropTooBig = &protocol.Reply{Code: 552, Enhanced: "5.3.4",
		Lines: []string{"Message size exceeds fixed maximum message size"}}
	replyDropFailed = &protocol.Reply{Code: 451, Enhanced: "4.3.0",
		Lines: []string{"Requested action aborted: local error in processing"}}
	replyDropUnavailable = &protocol.Reply{Code: 421, Enhanced: "4.3.0",
		Lines: []string{"Service not available, closing transmission channel"}}
)

// smtpSession runs -bs: smtp-stdio's session on standard input and
// output as a local client (the launcher variables are cleared, so it
// may relay, as Postfix's "sendmail -bs"). The spool's owner runs
// receiver.Run, which writes queue/ itself; so does a configuration
// receiver.Load refuses, since receiver.Run answers it with 421 and
// names the variable. Anyone else gets the same session, with
// smtp-stdio's settings, relay policy, limits and header checks, whose
// messages go to the drop helper as -bm's do (dropSession).
func smtpSession(name string, stderr io.Writer) int {
	for _, v := range launcherVars {
		os.Unsetenv(v)
	}
	cfg, err := receiver.Load()
	if err != nil || ownsSpool(cfg.SpoolDir) {
		return receiver.Run([]string{name})
	}
	warning := ""
	sc, _, err := Load(os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		protocol.WriteReply(os.Stdout, replyDropUnavailable)
		return exitConfig
	}
	if u := currentUser(); !trusted(u, sc) {
		// sendmail's words: the whole session, senders included, is the
		// user's.
		warning = fmt.Sprintf("X-Authentication-Warning: %s: %s owned process doing -bs\r\n", cfg.Hostname, u.localName())
	}
	return dropSession(cfg, warning, os.Stdin, os.Stdout, stderr)
}

// dropSession serves one SMTP session on in and out for a user who
// cannot write the spool: each accepted message is a drop stream to the
// helper beside this program, and 250 follows only once the helper has
// made drop/<name> durable. A warning that is not "" is a header field
// each message gets right below the session's Received: (sendmail's
// X-Authentication-Warning: for a user who is not trusted). It returns
// 0 when the session ended by QUIT or end of input, 1 when it ended
// badly, 78 (with 421 to the client) when the relay settings are bad.
func dropSession(cfg *receiver.Config, warning string, in io.Reader, out io.Writer, stderr io.Writer) int {
	start := time.Now()
	signal.Ignore(syscall.SIGPIPE) // a closed stdout is an error to handle
	log := sessionLog(cfg, stderr)
	pol, err := relay.New(cfg.LocalDomains, cfg.RelayClients)
	if err == nil {
		var helper string
		if helper, err = dropHelperPath(); err == nil {
			d := &dropDelivery{helper: helper, warning: warning, stderr: stderr, now: time.Now, log: log}
			defer d.onSignal()()
			sess := protocol.NewSession(cfg.Protocol(start), protocol.Client{Local: true}, pol, d, log)
			err = sess.Serve(bufio.NewReaderSize(in, 64<<10), out, nil)
			d.abortCurrent()
			switch {
			case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				log.Info("session end", "messages", sess.Messages(), "via", "drop helper")
				return exitOK
			default:
				log.Warn("session end", "reason", err.Error(), "messages", sess.Messages())
				return 1
			}
		}
	}
	log.Error("session refused", "err", err)
	protocol.WriteReply(out, replyDropUnavailable)
	return exitConfig
}

// sessionLog is the -bs session's log on stderr, at SMTP_LOG_LEVEL in
// SMTP_LOG_FORMAT; SMTP_LOG=off discards it. (Standard output is the SMTP
// channel; syslog is smtp-stdio's own, for the spool's user.)
func sessionLog(cfg *receiver.Config, stderr io.Writer) *slog.Logger {
	if cfg.Log == "off" {
		return slog.New(slog.DiscardHandler)
	}
	var level slog.Level
	if level.UnmarshalText([]byte(cfg.LogLevel)) != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

// dropDelivery implements protocol.Delivery through the drop helper. It
// remembers the message being written so that a signal can abort it.
type dropDelivery struct {
	helper  string
	warning string // a field below the Received:, or ""
	stderr  io.Writer
	now     func() time.Time
	log     *slog.Logger

	mu  sync.Mutex
	cur *dropMessage
}

// Begin implements protocol.Delivery: it starts the helper with the
// message's envelope. The client address, HELO and protocol are kept as
// the pickup resets them anyway; the pickup gives the message its queue
// id and the Received: naming the user.
func (d *dropDelivery) Begin(env *protocol.Envelope) (protocol.MessageWriter, error) {
	now := d.now()
	id, err := spool.NewQueueID(now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", replyDropFailed, err)
	}
	sink, err := startDrop(d.helper, &spool.Envelope{QueueID: id, Received: now, Helo: env.Helo,
		Protocol: env.Protocol, Body: env.Body, SMTPUTF8: env.SMTPUTF8, From: env.From, To: env.To}, d.stderr)
	if err != nil {
		d.log.Error("drop helper failed", "err", err)
		return nil, fmt.Errorf("%w: %w", replyDropFailed, err)
	}
	m := &dropMessage{d: d, id: id, sink: sink, warning: []byte(d.warning)}
	d.mu.Lock()
	d.cur = m
	d.mu.Unlock()
	return m, nil
}

// abortCurrent ends the stream of the message being written without its
// trailer, so the helper leaves nothing; for the end of the session and
// signals.
func (d *dropDelivery) abortCurrent() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil {
		d.cur.sink.Abort()
		d.cur = nil
	}
}

// onSignal aborts the message being written on SIGTERM, SIGINT or
// SIGHUP and exits 1; it returns the function that removes the handler.
func (d *dropDelivery) onSignal() (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			d.abortCurrent()
			d.log.Warn("session killed", "signal", s.String())
			os.Exit(1)
		case <-done:
		}
	}()
	return func() { signal.Stop(sigs); close(done) }
}

// dropMessage is one message streaming to the helper. Write never fails
// towards the session: the first error is kept and returned by Commit,
// so that the session reads the client's data to its end and stays in
// step.
type dropMessage struct {
	d    *dropDelivery
	id   string
	sink sink
	err  error

	// warning is still to be written after the first field (the
	// session's Received:); crlf is whether the bytes so far end in
	// CRLF, cr whether they end in CR.
	warning  []byte
	crlf, cr bool
}

// QueueID implements protocol.MessageWriter: sendmail's id, in the
// session's Received:; the pickup queues it under a new one.
func (m *dropMessage) QueueID() string { return m.id }

// Write implements io.Writer; it always reports success (see
// dropMessage).
func (m *dropMessage) Write(p []byte) (int, error) {
	n := len(p)
	if len(m.warning) > 0 {
		// The first field ends at a CRLF not followed by a space or
		// tab (RFC 5322 section 2.2.3: that would fold it).
		for i, c := range p {
			if m.crlf && c != ' ' && c != '\t' {
				m.write(p[:i])
				m.write(m.warning)
				m.warning, p = nil, p[i:]
				break
			}
			m.crlf = m.cr && c == '\n'
			m.cr = c == '\r'
		}
	}
	m.write(p)
	return n, nil
}

// write streams p to the helper unless an earlier write failed.
func (m *dropMessage) write(p []byte) {
	if m.err == nil && len(p) > 0 {
		_, m.err = m.sink.Write(p)
	}
}

// Commit implements protocol.MessageWriter: the trailer, then the
// helper's status; 552 5.3.4 when it refused the size, else 451 4.3.0.
func (m *dropMessage) Commit() error {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	if m.d.cur != m {
		return fmt.Errorf("%w: message aborted", replyDropFailed)
	}
	m.d.cur = nil
	err := m.err
	if err == nil {
		err = m.sink.Commit()
	} else {
		m.sink.Abort()
	}
	if err == nil {
		return nil
	}
	m.d.log.Error("drop failed", "id", m.id, "err", err)
	var f *Failure
	if errors.As(err, &f) && f.Status == exitDataErr {
		return fmt.Errorf("%w: %w", replyDropTooBig, err)
	}
	return fmt.Errorf("%w: %w", replyDropFailed, err)
}

// Abort implements protocol.MessageWriter: the stream ends without its
// trailer and the helper removes its file.
func (m *dropMessage) Abort() error {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	if m.d.cur == m {
		m.d.cur = nil
		return m.sink.Abort()
	}
	return nil
}
