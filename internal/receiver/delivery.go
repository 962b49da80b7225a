package receiver

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Replies for spool failures, classified once here (RFC 5321 section
// 4.2.3; RFC 3463 4.3.0 and 4.3.1).
var (
	replyLocalError = &protocol.Reply{Code: 451, Enhanced: "4.3.0",
		Lines: []string{"Requested action aborted: local error in processing"}}
	replyNoSpace = &protocol.Reply{Code: 452, Enhanced: "4.3.1",
		Lines: []string{"Insufficient system storage"}}
)

// classify turns a spool error into the reply the client sees: 452 4.3.1
// when the disk or quota is full, else 451 4.3.0. The error is kept
// wrapped for the log.
func classify(err error) error {
	r := replyLocalError
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		r = replyNoSpace
	}
	return fmt.Errorf("%w: %w", r, err)
}

// spoolDelivery implements protocol.Delivery over a spool. It remembers
// the message being written so that a signal can abort it.
type spoolDelivery struct {
	sp  *spool.Spool
	now func() time.Time
	log *slog.Logger

	// beforeFirst, if set, runs once before the first temporary file
	// that is made while its message is read (spool.CreateSpill): the
	// signal handler that removes it.
	beforeFirst func()
	once        sync.Once

	mu  sync.Mutex
	cur *message
}

// Begin implements protocol.Delivery: it names the message (a new queue
// id) and starts its spool.Writer, whose file in the spool's tmp/ is made
// once the message outgrows the writer's buffer or at Commit. Errors
// carry a 451 or 452 reply (classify).
func (d *spoolDelivery) Begin(env *protocol.Envelope) (protocol.MessageWriter, error) {
	var spill func()
	if d.beforeFirst != nil {
		spill = func() { d.once.Do(d.beforeFirst) }
	}
	now := d.now()
	id, err := spool.NewQueueID(now)
	if err != nil {
		return nil, classify(err)
	}
	client := ""
	if !env.Client.Local && env.Client.Addr.IsValid() {
		client = env.Client.Addr.String()
	}
	w, err := d.sp.CreateSpill(&spool.Envelope{
		QueueID:  id,
		Received: now,
		Client:   client,
		Helo:     env.Helo,
		Protocol: env.Protocol,
		Body:     env.Body,
		SMTPUTF8: env.SMTPUTF8,
		From:     env.From,
		To:       env.To,

		TLSVersion: env.TLSVersion,
		TLSCipher:  env.TLSCipher,
		AuthUser:   env.AuthUser,

		Ret:   env.Ret,
		EnvID: env.EnvID,
		DSN:   spoolDSN(env),
	}, spill)
	if err != nil {
		d.log.Error("spool create failed", "err", err)
		return nil, classify(err)
	}
	m := &message{d: d, id: id, w: w}
	d.mu.Lock()
	d.cur = m
	d.mu.Unlock()
	return m, nil
}

// spoolDSN returns the recipients' DSN parameters of env in the spool's
// form (spool.RcptDSN), one per recipient of env.To, or nil when none
// gave any, so that such a message stays a version 1 file.
func spoolDSN(env *protocol.Envelope) []spool.RcptDSN {
	var out []spool.RcptDSN
	for i := range env.To {
		d := env.RcptDSN(i)
		if d == (protocol.RcptDSN{}) {
			continue
		}
		if out == nil {
			out = make([]spool.RcptDSN, len(env.To))
		}
		out[i] = spool.RcptDSN{Notify: d.Notify.String(), ORcpt: d.ORcpt}
	}
	return out
}

// abortCurrent discards the message being written, if any; for signal
// handlers. It waits for a Commit in progress to finish.
func (d *spoolDelivery) abortCurrent() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil {
		d.cur.w.Abort()
		d.cur = nil
	}
}

// message is one message being spooled. Write never fails towards the
// session: the first spool error is kept and returned by Commit, so that
// the session still reads the client's data to its end and stays in step.
type message struct {
	d   *spoolDelivery
	id  string
	w   *spool.Writer
	err error
}

// QueueID implements protocol.MessageWriter.
func (m *message) QueueID() string { return m.id }

// Write implements io.Writer; it always reports success (see message).
func (m *message) Write(p []byte) (int, error) {
	if m.err == nil {
		if _, err := m.w.Write(p); err != nil {
			m.err = err
		}
	}
	return len(p), nil
}

// Commit implements protocol.MessageWriter: it returns the first write
// error, or makes the file durable and visible (spool.Writer.Commit). Errors
// carry a 451 or 452 reply.
func (m *message) Commit() error {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	if m.d.cur != m {
		return classify(errors.New("message aborted"))
	}
	m.d.cur = nil
	if m.err != nil {
		m.w.Abort()
		m.d.log.Error("spool write failed", "queue_id", m.id, "err", m.err)
		return classify(m.err)
	}
	if err := m.w.Commit(); err != nil {
		m.d.log.Error("spool commit failed", "queue_id", m.id, "err", err)
		return classify(err)
	}
	return nil
}

// Abort implements protocol.MessageWriter: the temporary file is removed.
func (m *message) Abort() error {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	if m.d.cur == m {
		m.d.cur = nil
	}
	return m.w.Abort()
}
