package send

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/testutil"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// This file holds the test fixtures: a settable clock, a Sender over a
// fresh spool, and helpers to queue messages and read the spool. The
// smarthost the tests deliver to is smtptest's.

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
