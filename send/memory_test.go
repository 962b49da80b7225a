package send

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// memTransport is the second Transport: it delivers in memory, with no
// network and no SMTP client, straight to the script of an smtptest
// server (Server.Connect: the same Mail, Rcpt and Data steps that its
// sessions run), which records each accepted transaction as it does for
// a client on the network. All the recipients of a message go in one
// transaction, as a mailbox store would take them.
//
// The delivery, retry, bounce, queue and crash tests run over it and over
// the smarthost (overTransports) and assert the same things: retries,
// expiry, notifications, locking and crash safety are the run's and the
// queue's, the same whatever delivers.
type memTransport struct {
	srv *smtptest.Server
	// relay names the server in the replies, as the smarthost's address
	// does.
	relay string
	// sink, if set, is a file where each accepted transaction is
	// appended (and fsync'd, as a server commits before its 250), for a
	// child process that is killed: its memory dies with it.
	sink string
}

// NewSession implements Transport.
func (m *memTransport) NewSession() Session { return &memSession{t: m} }

// memSession is one worker's: a connection to the server, opened at its
// first message.
type memSession struct {
	t *memTransport
	c *smtptest.Conn
}

// Deliver implements Session.
func (s *memSession) Deliver(_ context.Context, d *Delivery, rec Recorder) error {
	if s.c == nil {
		s.c = s.t.srv.Connect()
	}
	data, err := io.ReadAll(d.Content())
	if err != nil {
		return err // a damaged message: the run sets it aside
	}
	c, env, relay := s.c, d.Envelope, s.t.relay
	if r := c.Mail(env.From); r != nil {
		rec.Failed(d.Rcpts, memFailure(StageMail, relay, r))
		return nil
	}
	var accepted []int
	var to []string
	for _, i := range d.Rcpts {
		if r := c.Rcpt(env.To[i]); r != nil {
			rec.Failed([]int{i}, memFailure(StageRcpt, relay, r))
			continue
		}
		accepted = append(accepted, i)
		to = append(to, env.To[i])
	}
	if len(accepted) == 0 {
		return nil
	}
	tx := smtptest.Tx{From: env.From, To: to, Size: d.Size, SMTPUTF8: env.SMTPUTF8, Data: data}
	if r := c.Data(tx); r != nil {
		rec.Failed(accepted, memFailure(StageDot, relay, r))
		return nil
	}
	if err := s.t.record(tx); err != nil {
		return err
	}
	return rec.Delivered(accepted, Reply{Stage: StageDot, Code: 250, Enhanced: "2.0.0", Text: "OK: queued", Relay: relay})
}

// Close implements Session.
func (s *memSession) Close() error { return nil }

// record appends an accepted transaction to the sink file, if there is
// one.
func (m *memTransport) record(tx smtptest.Tx) error {
	if m.sink == "" {
		return nil
	}
	b, err := json.Marshal(sunk{From: tx.From, To: tx.To, Data: tx.Data})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(m.sink, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sunk is a transaction in a sink file.
type sunk struct {
	From string
	To   []string
	Data []byte
}

// loadSink returns the transactions of a sink file.
func loadSink(t *testing.T, path string) []smtptest.Tx {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var txs []smtptest.Tx
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s sunk
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("sink %s: %v", path, err)
		}
		txs = append(txs, smtptest.Tx{From: s.From, To: s.To, Data: s.Data})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return txs
}

// memFailure is a script's refusal as a Failure: what the go-smtp client
// reads from the server's reply (classify), without the network.
func memFailure(stage Stage, relay string, r *protocol.Reply) *Failure {
	return &Failure{Stage: stage, Relay: relay, Code: r.Code, Enhanced: r.Enhanced, Text: oneLine(strings.Join(r.Lines, "\n"))}
}

// transports are the Transports that the tests of the queue logic run
// over: the smarthost (go-smtp's client over loopback to smtptest's
// server) and memTransport.
var transports = []string{"smarthost", "memory"}

// overTransports runs test once per transport, as a subtest named for it.
func overTransports(t *testing.T, test func(t *testing.T, tr string)) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) { test(t, tr) })
	}
}

// newFixtureOver is newFixture for the test server ts, delivering over
// tr: "smarthost" dials ts; "memory" hands the messages to ts's script
// directly, and any dial fails the test.
func newFixtureOver(t *testing.T, tr string, ts *smtptest.Server) *fixture {
	t.Helper()
	f := newFixture(t, ts.Addr)
	if tr == "memory" {
		f.s.Transport = &memTransport{srv: ts, relay: ts.Addr}
		f.s.Dial = func(context.Context, string, string) (net.Conn, error) {
			t.Error("the memory transport dialled")
			return nil, errors.New("no network here")
		}
	}
	return f
}
