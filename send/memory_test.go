package send

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"github.com/emersion/go-smtp"
)

// memTransport is the second Transport: it delivers in memory, with no
// network and no SMTP client, straight to a testServer's script (the same
// mail, rcpt and data functions that the go-smtp server calls), and
// records each accepted transaction where the server would. All the
// recipients of a message go in one transaction, as a mailbox store would
// take them.
//
// The delivery, retry, bounce, queue and crash tests run over it and over
// the smarthost (overTransports) and assert the same things: retries,
// expiry, notifications, locking and crash safety are the run's and the
// queue's, the same whatever delivers.
type memTransport struct {
	ts *testServer
	// sink, if set, is a file where each accepted transaction is
	// appended (and fsync'd, as a server commits before its 250), for a
	// child process that is killed: its memory dies with it.
	sink string
}

// NewSession implements Transport.
func (m *memTransport) NewSession() Session { return &memSession{t: m} }

// memSession is one worker's: a "connection" of the test server, opened at
// its first message.
type memSession struct {
	t *memTransport
	c *sconn
}

// Deliver implements Session.
func (s *memSession) Deliver(_ context.Context, d *Delivery, rec Recorder) error {
	ts := s.t.ts
	if s.c == nil {
		ts.mu.Lock()
		ts.conns++
		s.c = &sconn{ts: ts, n: ts.conns}
		ts.mu.Unlock()
	}
	data, err := io.ReadAll(d.Content())
	if err != nil {
		return err // a damaged message: the run sets it aside
	}
	c, env := s.c, d.Envelope
	c.tx++
	c.cur = got{conn: c.n, from: env.From, opts: smtp.MailOptions{Size: d.Size, UTF8: env.SMTPUTF8}}
	if f := ts.script.mail; f != nil {
		if err := f(c, env.From); err != nil {
			rec.Failed(d.Rcpts, memFailure(StageMail, ts.addr, err))
			return nil
		}
	}
	var accepted []int
	for _, i := range d.Rcpts {
		if f := ts.script.rcpt; f != nil {
			if err := f(c, env.To[i]); err != nil {
				rec.Failed([]int{i}, memFailure(StageRcpt, ts.addr, err))
				continue
			}
		}
		accepted = append(accepted, i)
		c.cur.to = append(c.cur.to, env.To[i])
	}
	if len(accepted) == 0 {
		return nil
	}
	ts.mu.Lock()
	ts.datas++
	ts.mu.Unlock()
	if f := ts.script.data; f != nil {
		if err := f(c, data); err != nil {
			rec.Failed(accepted, memFailure(StageDot, ts.addr, err))
			return nil
		}
	}
	c.cur.data = data
	if err := s.t.record(c.cur); err != nil {
		return err
	}
	return rec.Delivered(accepted, Reply{Stage: StageDot, Code: 250, Enhanced: "2.0.0", Text: "OK: queued", Relay: ts.addr})
}

// Close implements Session.
func (s *memSession) Close() error { return nil }

// record keeps an accepted transaction: in the sink file if there is one,
// else in the server's list.
func (m *memTransport) record(g got) error {
	if m.sink == "" {
		m.ts.mu.Lock()
		m.ts.got = append(m.ts.got, g)
		m.ts.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(sunk{From: g.from, To: g.to, Data: g.data})
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

// loadSink adds the transactions of a sink file to the server's list.
func (ts *testServer) loadSink(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s sunk
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("sink %s: %v", path, err)
		}
		ts.mu.Lock()
		ts.got = append(ts.got, got{from: s.From, to: s.To, data: s.Data})
		ts.mu.Unlock()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// memFailure is a script's refusal as a Failure: what the go-smtp client
// reads from the server's reply, without the network.
func memFailure(stage Stage, relay string, err error) *Failure {
	f := &Failure{Stage: stage, Relay: relay, Text: err.Error()}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		f.Code, f.Text = se.Code, se.Message
		if ec := se.EnhancedCode; ec[0] > 0 {
			f.Enhanced = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		}
	}
	return f
}

// transports are the Transports that the tests of the queue logic run
// over: the smarthost (go-smtp over loopback) and memTransport.
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
func newFixtureOver(t *testing.T, tr string, ts *testServer) *fixture {
	t.Helper()
	f := newFixture(t, ts.addr)
	if tr == "memory" {
		f.s.Transport = &memTransport{ts: ts}
		f.s.Dial = func(context.Context, string, string) (net.Conn, error) {
			t.Error("the memory transport dialled")
			return nil, errors.New("no network here")
		}
	}
	return f
}
