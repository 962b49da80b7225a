package transcript

import (
	"bufio"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// Client is the client's side of a session under test: it writes client
// bytes to the session's input and reads the session's reply lines, each
// within a wait. A goroutine of its own does the writing, so that a
// session that stops reading cannot hold the test; another does the
// reading, from the first time a line is asked for (until then a test may
// read the output itself, as net/smtp does).
type Client struct {
	t     testing.TB
	wait  time.Duration
	sends chan []byte
	close sync.Once
	out   io.Reader
	read  sync.Once
	lines chan string
	stop  chan struct{} // closed when the test ends: the reader gives up
	err   error         // what ended the output, other than io.EOF
	got   []string
}

// NewClient returns a Client that writes to in and reads from out, and
// waits up to wait for each reply line. Close closes in once everything
// sent has been written.
func NewClient(t testing.TB, in io.WriteCloser, out io.Reader, wait time.Duration) *Client {
	c := &Client{t: t, wait: wait, sends: make(chan []byte, 1024), out: out,
		lines: make(chan string), stop: make(chan struct{})}
	t.Cleanup(func() { close(c.stop) })
	go func() {
		// A write error means the session has gone: what it said before
		// going is still to be read, so the writer goes on quietly.
		for b := range c.sends {
			in.Write(b)
		}
		in.Close()
	}()
	return c
}

// Send writes p, in one write, after everything sent before it.
func (c *Client) Send(p string) { c.sends <- []byte(p) }

// Close closes the client's side once everything sent is written.
func (c *Client) Close() { c.close.Do(func() { close(c.sends) }) }

// Got returns every reply line read so far, with its CRLF.
func (c *Client) Got() []string { return c.got }

func (c *Client) startReading() {
	c.read.Do(func() {
		go func() {
			defer close(c.lines)
			br := bufio.NewReader(c.out)
			for {
				l, err := br.ReadString('\n')
				if l != "" {
					select {
					case c.lines <- l:
					case <-c.stop:
						return
					}
				}
				if err != nil {
					if err != io.EOF {
						c.err = err // read once lines is closed
					}
					return
				}
			}
		}()
	})
}

// Line returns the next reply line with its CRLF, or false at the end of
// the output. It fails the test when no line comes within the wait.
func (c *Client) Line() (string, bool) {
	c.t.Helper()
	c.startReading()
	select {
	case l, ok := <-c.lines:
		if ok {
			c.got = append(c.got, l)
		}
		return l, ok
	case <-time.After(c.wait):
		c.t.Fatalf("no reply line within %v; got so far:\n%s", c.wait, strings.Join(c.got, ""))
		return "", false
	}
}

// Expect reads the next reply line and fails the test unless it matches
// pattern (see Match); where names the expectation in the failure.
func (c *Client) Expect(where, pattern string) {
	c.t.Helper()
	got, ok := c.Line()
	if !ok {
		c.t.Fatalf("%s: the output ended, want %q", where, pattern+"\r\n")
	}
	if !strings.HasSuffix(got, "\r\n") || !Match(pattern, strings.TrimSuffix(got, "\r\n")) {
		c.t.Fatalf("%s: got reply %q, want %q", where, got, pattern+"\r\n")
	}
}

// Reply reads one whole reply, up to its last line ("250 ..."), and
// returns its lines.
func (c *Client) Reply() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, ok := c.Line()
		b.WriteString(l)
		if !ok {
			c.t.Fatalf("the output ended inside a reply: %q", b.String())
		}
		if len(l) >= 4 && l[3] == ' ' {
			return b.String()
		}
	}
}

// Play replays steps of s: it sends each write and expects each reply
// line in turn.
func (c *Client) Play(s *Script, steps []Step) {
	c.t.Helper()
	for i, st := range steps {
		if st.Send != nil {
			c.sends <- st.Send
			continue
		}
		c.Expect(s.where(st.Line, i), st.Expect)
	}
}

// Rest reads on to the end of the output and returns the lines not read
// yet. It fails the test when the output does not end within the wait:
// the session did not end after the client closed.
func (c *Client) Rest() []string {
	c.t.Helper()
	c.startReading()
	var rest []string
	timeout := time.After(c.wait)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return rest
			}
			c.got = append(c.got, l)
			rest = append(rest, l)
		case <-timeout:
			c.t.Fatalf("the session did not end within %v after the client closed; replies after the dialog: %q", c.wait, rest)
		}
	}
}

// Err returns what ended the output, other than a clean end of file (a
// connection reset), once Line or Rest has reported the end.
func (c *Client) Err() error { return c.err }
