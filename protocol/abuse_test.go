package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// TestInputPending: with Config.InputPending, input that the reader has
// not taken in yet counts; the hook is asked only where pipelining is
// restricted, and not at all for a local client.
func TestInputPending(t *testing.T) {
	const greet = "220 mx.example.net ESMTP ready\r\n"
	tests := []struct {
		name    string
		in      string
		local   bool
		pending bool
		out     string // after the greeting; "" to skip
		asked   int
		err     error
	}{
		{name: "EHLO, more pending", in: "EHLO c\r\n", pending: true,
			out: "554 5.5.0 Improper use of SMTP command pipelining\r\n", asked: 1, err: ErrImproperPipelining},
		{name: "EHLO, nothing pending", in: "EHLO c\r\nQUIT\r\n", asked: 1},
		{name: "NOOP and VRFY end a group", in: "EHLO c\r\nNOOP\r\nVRFY x\r\nQUIT\r\n", asked: 3},
		{name: "MAIL and RCPT after EHLO do not", in: "EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<b@d>\r\nRSET\r\nQUIT\r\n", pending: false, asked: 1},
		{name: "after HELO every command does", in: "HELO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<b@d>\r\nRSET\r\nQUIT\r\n", asked: 4},
		{name: "before EHLO every command does", in: "FOO\r\nHELP\r\nQUIT\r\n", asked: 2},
		{name: "local clients are never asked", in: "EHLO c\r\nNOOP\r\nQUIT\r\n", local: true, pending: true, asked: 0},
	}
	for _, tc := range tests {
		cfg := testConfig()
		cfg.ForbidImproperPipelining = true
		asked := 0
		cfg.InputPending = func() bool { asked++; return tc.pending }
		client := testClient
		if tc.local {
			client = Client{Local: true}
		}
		var out bytes.Buffer
		// One byte at a time, so that the reader itself never holds
		// more: only the hook can tell.
		s := NewSession(cfg, client, &relayPolicy{}, &fakeDelivery{}, discardLogger())
		err := s.Serve(bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(tc.in)), 16), &out, nil)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: Serve returned %v, want %v; output %q", tc.name, err, tc.err, out.String())
		}
		if tc.out != "" && out.String() != greet+tc.out {
			t.Errorf("%s: output %q, want %q", tc.name, out.String(), greet+tc.out)
		}
		if asked != tc.asked {
			t.Errorf("%s: hook asked %d times, want %d", tc.name, asked, tc.asked)
		}
	}
}

// TestImproperPipeliningOff: without the setting, the same input is
// served as before (the zero Config changes nothing).
func TestImproperPipeliningOff(t *testing.T) {
	in := "HELO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\nSubject: x\r\n\r\nb\r\n.\r\nQUIT\r\n"
	d := &fakeDelivery{}
	out, err := serveString(testConfig(), d, in)
	if err != nil || len(d.committed()) != 1 || !strings.HasSuffix(out, "221 2.0.0 mx.example.net closing connection\r\n") {
		t.Errorf("Serve: %v, %d committed, output %q", err, len(d.committed()), out)
	}
}

// stepClock is a clock that moves on by step at every reading.
type stepClock struct {
	t    time.Time
	step time.Duration
}

func (c *stepClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

// TestMinDataRateClock: a reader that cannot time out (no Deadliner)
// still stops a client below MinDataRate, at its next byte. The clock is
// injected: it moves 5 s at each reading, that is at each byte read, so
// the client sends 0.2 bytes a second; the DATA phase may last 30 s plus
// one second a byte.
func TestMinDataRateClock(t *testing.T) {
	msg := "Subject: trickle\r\n\r\n" + strings.Repeat("slow\r\n", 20) + ".\r\nQUIT\r\n"
	for _, c := range []struct {
		name    string
		oneByte bool
		rate    int64
		want    string
		err     error
	}{
		{"trickle", true, 1, "421 4.4.2 mx.example.net Data arriving too slowly, closing connection\r\n", ErrTimeout},
		{"trickle, no minimum", true, 0, "250 2.0.0 OK queued as Q1\r\n221 ", nil},
		{"at once", false, 1, "250 2.0.0 OK queued as Q1\r\n221 ", nil},
	} {
		cfg := testConfig()
		clock := &stepClock{t: testNow, step: 5 * time.Second}
		cfg.Now = clock.now
		cfg.DataTimeout = 30 * time.Second
		cfg.MinDataRate = c.rate
		var src io.Reader = strings.NewReader(msg)
		if c.oneByte {
			src = iotest.OneByteReader(src)
		}
		in := io.MultiReader(strings.NewReader("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n"), src)
		d := &fakeDelivery{}
		var out bytes.Buffer
		err := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger()).Serve(bufio.NewReaderSize(in, 16), &out, nil)
		_, rest, _ := strings.Cut(out.String(), "354 Start mail input; end with <CRLF>.<CRLF>\r\n")
		if !strings.HasPrefix(rest, c.want) || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s: Serve returned %v, output after 354 %q, want %q", c.name, err, rest, c.want)
		}
		if err := d.checkFinished(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if c.err != nil && len(d.committed()) != 0 {
			t.Errorf("%s: message committed", c.name)
		}
	}
}

// TestMinDataRateDeadline: on a reader with deadlines (an os.Pipe, like
// a socket), a trickling client is cut by the rate deadline, well before
// the session deadline, although each byte comes well within
// DataTimeout; a client that is slow but above the rate finishes.
func TestMinDataRateDeadline(t *testing.T) {
	for _, c := range []struct {
		name  string
		chunk string        // sent every 20 ms
		want  string        // the reply after 354
		max   time.Duration // the test's own limit
	}{
		// 50 bytes a second against a minimum of 100: the phase may last
		// 300 ms + n/100 s with n = 50 t, so it ends near t = 0.6 s.
		{"below", "x", "421 4.4.2 mx.example.net Data arriving too slowly, closing connection\r\n", 5 * time.Second},
		// 250 bytes a second: the allowance grows faster than time.
		{"above", "xxxx\r\n", "250 2.0.0 OK queued as Q1\r\n", 5 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			cfg := testConfig()
			cfg.Now = time.Now
			cfg.DataTimeout = 300 * time.Millisecond
			cfg.MinDataRate = 100
			cfg.Deadline = time.Now().Add(time.Minute)
			d := &fakeDelivery{}
			outR, outW := io.Pipe()
			done := make(chan error, 1)
			go func() {
				err := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger()).Serve(bufio.NewReader(pr), outW, pr)
				outW.Close()
				done <- err
			}()
			br := bufio.NewReader(outR)
			pw.WriteString("EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\nDATA\r\n")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("no 354: %v", err)
				}
				if strings.HasPrefix(l, "354 ") {
					break
				}
			}
			start := time.Now()
			stop := make(chan struct{})
			go func() { // the trickle, for at most a second
				for time.Since(start) < time.Second {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					if _, err := pw.WriteString(c.chunk); err != nil {
						return
					}
				}
				pw.WriteString("\r\n.\r\nQUIT\r\n")
			}()
			got, _ := br.ReadString('\n')
			close(stop)
			if got != c.want {
				t.Errorf("reply %q after %v, want %q", got, time.Since(start), c.want)
			}
			select {
			case err := <-done:
				if c.name == "below" && !errors.Is(err, ErrTimeout) {
					t.Errorf("Serve returned %v", err)
				}
			case <-time.After(c.max):
				t.Fatal("session did not end")
			}
			if el := time.Since(start); c.name == "below" && (el < 400*time.Millisecond || el > 3*time.Second) {
				t.Errorf("cut after %v, want about 600ms", el)
			}
			if err := d.checkFinished(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRateAllowance(t *testing.T) {
	for _, c := range []struct {
		n, rate int64
		want    time.Duration
	}{
		{0, 500, 0},
		{500, 500, time.Second},
		{750, 500, 1500 * time.Millisecond},
		{1 << 62, 1, 100 * 365 * 24 * time.Hour},
		{1<<63 - 1, 1<<63 - 1, time.Second},
		{5, 1<<63 - 1, 0},
	} {
		if got := rateAllowance(c.n, c.rate); got != c.want {
			t.Errorf("rateAllowance(%d, %d) = %v, want %v", c.n, c.rate, got, c.want)
		}
	}
}
