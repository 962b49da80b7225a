package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// testNow is the clock of every test session, so that Received: headers
// compare exactly.
var testNow = time.Date(2026, 11, 21, 11, 18, 25, 0, time.UTC)

// testConfig is the configuration transcripts start from.
func testConfig() Config {
	return Config{
		Hostname:       "mx.example.net",
		MaxMessageSize: 10 << 20,
		MaxRecipients:  100,
		MaxErrors:      10,
		Now:            func() time.Time { return testNow },
	}
}

var testClient = Client{Addr: netip.MustParseAddrPort("192.0.2.1:45678")}

// relayPolicy accepts recipients in its domains and postmaster, or
// everything when it has no domains.
type relayPolicy struct{ domains []string }

var replyRelayDenied = reply(550, "5.7.1", "Relaying denied")

func (p *relayPolicy) CheckRecipient(env *Envelope, rcpt string) *Reply {
	if len(p.domains) == 0 || rcpt == "postmaster" {
		return nil
	}
	_, dom, _ := strings.Cut(rcpt, "@")
	for _, d := range p.domains {
		if strings.EqualFold(d, dom) {
			return nil
		}
	}
	return replyRelayDenied
}

// fakeDelivery records messages in memory.
type fakeDelivery struct {
	mu        sync.Mutex
	beginErr  error // returned by Begin
	commitErr error // returned by Commit
	writeErr  error // returned by Write
	writers   []*fakeWriter
}

type fakeWriter struct {
	d         *fakeDelivery
	id        string
	env       Envelope
	buf       bytes.Buffer
	committed bool
	aborts    int
}

func (d *fakeDelivery) Begin(env *Envelope) (MessageWriter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.beginErr != nil {
		return nil, d.beginErr
	}
	w := &fakeWriter{d: d, id: fmt.Sprintf("Q%d", len(d.writers)+1), env: *env}
	d.writers = append(d.writers, w)
	return w, nil
}

func (w *fakeWriter) Write(p []byte) (int, error) {
	if w.d.writeErr != nil {
		return 0, w.d.writeErr
	}
	return w.buf.Write(p)
}

func (w *fakeWriter) QueueID() string { return w.id }

func (w *fakeWriter) Commit() error {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	if w.d.commitErr != nil {
		return w.d.commitErr
	}
	w.committed = true
	return nil
}

func (w *fakeWriter) Abort() error {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	w.aborts++
	return nil
}

// committed returns the committed messages.
func (d *fakeDelivery) committed() []*fakeWriter {
	d.mu.Lock()
	defer d.mu.Unlock()
	var c []*fakeWriter
	for _, w := range d.writers {
		if w.committed {
			c = append(c, w)
		}
	}
	return c
}

// checkFinished returns an error unless every writer was either committed
// or aborted. The interface allows Abort after Commit, but the session
// never needs it, so that is an error too.
func (d *fakeDelivery) checkFinished() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.writers {
		if !w.committed && w.aborts == 0 {
			return fmt.Errorf("message %s neither committed nor aborted", w.id)
		}
		if w.committed && w.aborts > 0 {
			return fmt.Errorf("message %s committed and aborted", w.id)
		}
	}
	return nil
}

// deadlinePipe is the read side of an io.Pipe that honours read
// deadlines: when one passes, the pipe fails with os.ErrDeadlineExceeded,
// as a socket would. The deadline is measured on now, the session's clock.
type deadlinePipe struct {
	*io.PipeReader
	now     func() time.Time
	mu      sync.Mutex
	timer   *time.Timer
	expired atomic.Bool
}

func (p *deadlinePipe) Read(b []byte) (int, error) {
	n, err := p.PipeReader.Read(b)
	if err != nil && p.expired.Load() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

func (p *deadlinePipe) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
	}
	if !t.IsZero() {
		p.timer = time.AfterFunc(t.Sub(p.now()), func() {
			p.expired.Store(true)
			p.CloseWithError(os.ErrDeadlineExceeded)
		})
	}
	return nil
}

// failWriter fails every write after the first n bytes.
type failWriter struct {
	w io.Writer
	n int
}

var errWriteFailed = errors.New("write failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n, _ := f.w.Write(p[:f.n])
		f.n = 0
		return n, errWriteFailed
	}
	f.n -= len(p)
	return f.w.Write(p)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// checkHeaderForTests is a Config.CheckHeader for transcripts: it refuses
// a header section that holds "X-Reject:", and otherwise adds a field
// that tells how many bytes of header section it saw and the client's
// SMTPUTF8, so that a transcript shows exactly what the check was given.
func checkHeaderForTests(env *Envelope, header []byte) ([]byte, *Reply) {
	if bytes.Contains(header, []byte("X-Reject:")) {
		return nil, reply(550, "5.6.0", "Header refused by test check")
	}
	return fmt.Appendf(nil, "X-Checked: %d bytes, smtputf8=%v\r\n", len(header), env.SMTPUTF8), nil
}
