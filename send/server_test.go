package send

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// This file holds the test fixtures: a scripted go-smtp server on
// 127.0.0.1, a settable clock, and helpers to queue messages and read the
// spool.

// got is one transaction a test server acknowledged with 250 after the dot.
type got struct {
	conn int // connection number, from 1
	from string
	opts smtp.MailOptions
	to   []string
	data []byte
	tls  bool
}

// script decides a test server's replies; nil functions accept. n counts
// transactions on the connection (1 for the first MAIL).
type script struct {
	mail func(c *sconn, from string) error
	rcpt func(c *sconn, to string) error
	data func(c *sconn, data []byte) error
}

type testServer struct {
	t      *testing.T
	srv    *smtp.Server
	addr   string
	script script
	user   string // AUTH PLAIN user and password; "" offers no AUTH
	pass   string

	mu        sync.Mutex
	got       []got
	conns     int
	datas     int // DATA commands that reached the handler
	authTries int
}

type serverOpt func(*testServer)

func withScript(s script) serverOpt { return func(ts *testServer) { ts.script = s } }
func withAuth(user, pass string) serverOpt {
	return func(ts *testServer) { ts.user, ts.pass = user, pass }
}
func withTLS(c *tls.Config) serverOpt { return func(ts *testServer) { ts.srv.TLSConfig = c } }
func withServer(f func(*smtp.Server)) serverOpt {
	return func(ts *testServer) { f(ts.srv) }
}

// newServer starts a go-smtp server on 127.0.0.1:0; implicit wraps the
// listener in TLS.
func newServer(t *testing.T, implicit *tls.Config, opts ...serverOpt) *testServer {
	t.Helper()
	ts := &testServer{t: t}
	ts.srv = smtp.NewServer(smtp.BackendFunc(ts.newSession))
	ts.srv.Domain = "mx.test"
	ts.srv.AllowInsecureAuth = true
	ts.srv.EnableSMTPUTF8 = true
	ts.srv.ReadTimeout = 30 * time.Second
	ts.srv.WriteTimeout = 30 * time.Second
	ts.srv.ErrorLog = log.New(io.Discard, "", 0)
	for _, o := range opts {
		o(ts)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicit != nil {
		l = tls.NewListener(l, implicit)
	}
	ts.addr = l.Addr().String()
	go ts.srv.Serve(l)
	t.Cleanup(func() { ts.srv.Close() })
	return ts
}

func (ts *testServer) newSession(c *smtp.Conn) (smtp.Session, error) {
	ts.mu.Lock()
	ts.conns++
	s := &sconn{ts: ts, c: c, n: ts.conns}
	ts.mu.Unlock()
	if ts.user != "" {
		return &authConn{s}, nil
	}
	return s, nil
}

// transactions returns a copy of what the server acknowledged.
func (ts *testServer) transactions() []got {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]got(nil), ts.got...)
}

func (ts *testServer) counts() (conns, datas int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.conns, ts.datas
}

// rcptCount counts acknowledged deliveries to each recipient.
func (ts *testServer) rcptCount() map[string]int {
	m := map[string]int{}
	for _, g := range ts.transactions() {
		for _, r := range g.to {
			m[r]++
		}
	}
	return m
}

type sconn struct {
	ts  *testServer
	c   *smtp.Conn
	n   int // connection number
	tx  int // transactions started on this connection
	cur got
}

func (s *sconn) Reset()        { s.cur = got{} }
func (s *sconn) Logout() error { return nil }

func (s *sconn) Mail(from string, opts *smtp.MailOptions) error {
	s.tx++
	_, isTLS := s.c.TLSConnectionState()
	s.cur = got{conn: s.n, from: from, tls: isTLS}
	if opts != nil {
		s.cur.opts = *opts
	}
	if f := s.ts.script.mail; f != nil {
		return f(s, from)
	}
	return nil
}

func (s *sconn) Rcpt(to string, _ *smtp.RcptOptions) error {
	if f := s.ts.script.rcpt; f != nil {
		if err := f(s, to); err != nil {
			return err
		}
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *sconn) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.ts.mu.Lock()
	s.ts.datas++
	s.ts.mu.Unlock()
	if f := s.ts.script.data; f != nil {
		if err := f(s, b); err != nil {
			return err
		}
	}
	s.cur.data = b
	s.ts.mu.Lock()
	s.ts.got = append(s.ts.got, s.cur)
	s.ts.mu.Unlock()
	return nil
}

// authConn offers AUTH PLAIN (RFC 4954) with the server's credentials.
type authConn struct{ *sconn }

func (a *authConn) AuthMechanisms() []string { return []string{sasl.Plain} }

func (a *authConn) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		a.ts.mu.Lock()
		a.ts.authTries++
		a.ts.mu.Unlock()
		if user != a.ts.user || pass != a.ts.pass {
			return smtp.ErrAuthFailed
		}
		return nil
	}), nil
}

func reply(code int, enh smtp.EnhancedCode, text string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}
}

// refusedAddr returns a 127.0.0.1 address where nothing listens.
func refusedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// clock is a settable clock for Sender.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a spool, a clock and a Sender pointed at addrs.
type fixture struct {
	t     *testing.T
	sp    *spool.Spool
	q     *queue.Queue
	clk   *clock
	s     *Sender
	logs  *testutil.LockedBuffer
	dials map[string]int
	mu    sync.Mutex
}

func newFixture(t *testing.T, addrs ...string) *fixture {
	t.Helper()
	sp, err := spool.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, sp: sp, q: q, clk: newClock(), logs: &testutil.LockedBuffer{}, dials: map[string]int{}}
	var hosts []Host
	for _, a := range addrs {
		hosts = append(hosts, Host{Addr: a, Name: "127.0.0.1"})
	}
	d := &net.Dialer{}
	f.s = &Sender{
		Spool: sp,
		Config: Config{
			Smarthosts: hosts, TLS: TLSNone, Hostname: "client.test",
			Connections: 1, ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second,
			DataTimeout: 5 * time.Second, BlockTimeout: 5 * time.Second,
		},
		Log: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: f.clk.Now,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			f.mu.Lock()
			f.dials[addr]++
			f.mu.Unlock()
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sender log:\n%s", f.logs.String())
		}
	})
	return f
}

func (f *fixture) dialCount(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dials[addr]
}

// body is a small message as smtp-stdio stores it: CRLF, with a
// Received: header first.
func body(subject string) string {
	return "Received: from client.test (127.0.0.1) by mx.local with ESMTP id x;\r\n" +
		"\tSat, 21 Nov 2026 10:00:00 +0000\r\n" +
		"From: <sender@example.org>\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// queue spools a message received now and returns its id.
func (f *fixture) queue(from string, to []string, data string, mod ...func(*spool.Envelope)) string {
	f.t.Helper()
	now := f.clk.Now()
	id, err := spool.NewQueueID(now)
	if err != nil {
		f.t.Fatal(err)
	}
	env := &spool.Envelope{QueueID: id, Received: now, Client: "127.0.0.1:4242", Helo: "client.test",
		Protocol: "ESMTP", From: from, To: to}
	for _, m := range mod {
		m(env)
	}
	w, err := f.sp.Create(env)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := io.WriteString(w, data); err != nil {
		f.t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		f.t.Fatal(err)
	}
	return id
}

func (f *fixture) run(all bool) Stats {
	f.t.Helper()
	st, err := f.s.Run(context.Background(), all)
	if err != nil {
		f.t.Fatalf("Run: %v", err)
	}
	return st
}

// names lists a spool area.
func (f *fixture) names(area string) []string {
	f.t.Helper()
	ents, err := os.ReadDir(f.sp.Path(area))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}

// state loads the current state of message id (nil if it has none).
func (f *fixture) state(id string) *queue.State {
	f.t.Helper()
	matches, _ := filepath.Glob(f.sp.Path(queue.StateDir, id+"@[0-9]*"))
	if len(matches) == 0 {
		return nil
	}
	var names []string
	for _, m := range matches {
		names = append(names, filepath.Base(m))
	}
	st, err := f.q.LoadState(names)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// queued returns the ids in queue/ whose envelope sender is from.
func (f *fixture) queuedFrom(from string) []*spool.Message {
	f.t.Helper()
	var out []*spool.Message
	for _, n := range f.names(spool.QueueDir) {
		m, err := f.sp.OpenMessage(n)
		if err != nil {
			f.t.Fatal(err)
		}
		f.t.Cleanup(func() { m.Close() })
		if m.From == from {
			out = append(out, m)
		}
	}
	return out
}

func content(t *testing.T, m *spool.Message) string {
	t.Helper()
	b, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func rcptStatus(st *queue.State) string {
	var p []string
	for _, r := range st.Rcpts {
		p = append(p, fmt.Sprintf("%s=%s", r.Addr, r.Status))
	}
	return strings.Join(p, " ")
}
