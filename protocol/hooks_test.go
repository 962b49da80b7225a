package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serveHooks runs a session with cfg over input, with the test policy
// and delivery d.
func serveHooks(cfg Config, d Delivery, input string) (string, error) {
	var out bytes.Buffer
	err := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger()).
		Serve(bufio.NewReader(strings.NewReader(input)), &out, nil)
	return out.String(), err
}

// TestHookArguments: each hook is given what its comment promises, and a
// change to the envelope CheckSender is given changes nothing.
func TestHookArguments(t *testing.T) {
	var got []string
	cfg := testConfig()
	cfg.Greet = func(c Client) *Reply {
		got = append(got, "greet "+c.Addr.String())
		return nil
	}
	cfg.CheckHelo = func(c Client, v Verb, name string) *Reply {
		got = append(got, fmt.Sprintf("helo %s %s %q", c.Addr, v, name))
		return nil
	}
	cfg.CheckSender = func(env *Envelope) *Reply {
		got = append(got, fmt.Sprintf("mail %q %s %s %d %v %d", env.From, env.Protocol, env.Body, env.Size, env.SMTPUTF8, len(env.To)))
		env.From = "changed@example.net"
		return nil
	}
	d := &fakeDelivery{}
	in := "EHLO c.example and more\r\nMAIL FROM:<> SIZE=42 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@d.example>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"
	if out, err := serveHooks(cfg, d, in); err != nil || !strings.Contains(out, "250 2.0.0 OK queued") {
		t.Fatalf("Serve: %v, output %q", err, out)
	}
	want := []string{
		"greet 192.0.2.1:45678",
		`helo 192.0.2.1:45678 EHLO "c.example and more"`,
		`mail "" ESMTP 8BITMIME 42 true 0`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hooks were given\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := d.committed(); len(c) != 1 || c[0].env.From != "" {
		t.Errorf("committed %d messages, from %q", len(c), c[0].env.From)
	}
}

// TestHookRepliesVetted: a hook cannot answer with a success, nor inject
// a reply line; it gets 451 4.3.0 instead, and what it refused stays
// refused.
func TestHookRepliesVetted(t *testing.T) {
	for _, r := range []*Reply{
		{Code: 250, Enhanced: "2.1.0", Lines: []string{"fake OK"}},
		{Code: 550, Enhanced: "5.7.1", Lines: []string{"denied\r\n250 injected"}},
		{Code: 220, Lines: []string{"greeting\r\n250 injected"}},
		{Code: 354, Lines: []string{"go ahead"}},
	} {
		cfg := testConfig()
		cfg.CheckHelo = func(Client, Verb, string) *Reply { return r }
		out, _ := serveHooks(cfg, &fakeDelivery{}, "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n")
		if !strings.HasSuffix(out, "\r\n451 4.3.0 Local error, try again later\r\n503 5.5.1 Send EHLO/HELO first\r\n") {
			t.Errorf("CheckHelo reply %+v: output %q", r, out)
		}
		cfg = testConfig()
		cfg.CheckSender = func(*Envelope) *Reply { return r }
		out, _ = serveHooks(cfg, &fakeDelivery{}, "HELO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\n")
		if !strings.HasSuffix(out, "\r\n451 4.3.0 Local error, try again later\r\n503 5.5.1 Need MAIL before RCPT\r\n") {
			t.Errorf("CheckSender reply %+v: output %q", r, out)
		}
		cfg = testConfig()
		cfg.Greet = func(Client) *Reply { return r }
		out, err := serveHooks(cfg, &fakeDelivery{}, "EHLO c.example\r\n")
		if out != "451 4.3.0 Local error, try again later\r\n" || !errors.Is(err, ErrRefused) {
			t.Errorf("Greet reply %+v: %v, output %q", r, err, out)
		}
	}
}

// TestOnClose: OnClose is called once, with what Serve returns and the
// counts.
func TestOnClose(t *testing.T) {
	for _, in := range []string{
		oneMessage + "FOO\r\nQUIT\r\n",                       // nil
		oneMessage + "FOO\r\n",                               // EOF
		"EHLO c.example\r\nGET / HTTP/1.0\r\n",               // ErrNonSMTP
		strings.Repeat("RCPT TO:<a@b.example>\r\n", 20) + "", // ErrTooManyErrors
	} {
		var calls []Summary
		cfg := testConfig()
		cfg.OnClose = func(sum Summary) { calls = append(calls, sum) }
		d := &fakeDelivery{}
		var out bytes.Buffer
		s := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger())
		err := s.Serve(bufio.NewReader(strings.NewReader(in)), &out, nil)
		if len(calls) != 1 {
			t.Fatalf("%q: OnClose called %d times", in, len(calls))
		}
		refusals := strings.Count(out.String(), "\r\n4") + strings.Count(out.String(), "\r\n5")
		if c := calls[0]; c.Err != err || c.Messages != len(d.committed()) || c.Errors != refusals || c.Client != testClient {
			t.Errorf("%q: OnClose got %+v; Serve returned %v, %d messages, %d refusals", in, c, err, len(d.committed()), refusals)
		}
	}
}

// TestSoftware: Config.Software names the software in the Received:
// header, without what could end the comment, and "" or nothing left is
// the default.
func TestSoftware(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "smtp-stdio",
		"mta 1.2":            "mta 1.2",
		"a(b)c\\d\r\n\x00é ": "abcd",
		"()":                 "smtp-stdio",
	} {
		cfg := testConfig()
		cfg.Software = in
		d := &fakeDelivery{}
		if _, err := serveHooks(cfg, d, oneMessage); !errors.Is(err, io.EOF) || len(d.committed()) != 1 {
			t.Fatalf("Software %q: %v, %d committed", in, err, len(d.committed()))
		}
		if msg := d.committed()[0].buf.String(); !strings.Contains(msg, "\tby mx.example.net ("+want+") with ESMTP") {
			t.Errorf("Software %q: message\n%s", in, msg)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if c.CommandTimeout != 5*time.Minute || c.DataTimeout != 3*time.Minute || c.MaxRecipients < 100 ||
		c.MaxLineLength < 512 || c.MaxErrors <= 0 || c.MaxMessageSize <= 0 || c.Software != "smtp-stdio" {
		t.Errorf("DefaultConfig() = %+v", c)
	}
}

// TestDeliveryFunc: the function reads the message as the session
// writes it, and its result is the reply.
func TestDeliveryFunc(t *testing.T) {
	var got []string
	accept := DeliveryFunc(func(env *Envelope, msg io.Reader) error {
		b, err := io.ReadAll(msg)
		got = append(got, fmt.Sprintf("%s %v %q %v", env.From, env.To, b[bytes.Index(b, []byte("Subject")):], err))
		return nil
	})
	out, err := serveHooks(testConfig(), accept, oneMessage+"QUIT\r\n")
	if err != nil || !regexpQueued.MatchString(out) {
		t.Errorf("Serve: %v, output %q", err, out)
	}
	if want := `a@c.example [b@d.example] "Subject: secret subject\r\n\r\nsecret body\r\n" <nil>`; len(got) != 1 || got[0] != want {
		t.Errorf("function got %q, want %q", got, want)
	}

	for _, tc := range []struct {
		name string
		f    DeliveryFunc
		want string
	}{
		{"refuses at the end", func(_ *Envelope, msg io.Reader) error {
			io.Copy(io.Discard, msg)
			return fmt.Errorf("quota: %w", reply(552, "5.2.2", "Mailbox full"))
		}, "552 5.2.2 Mailbox full"},
		{"refuses at once", func(*Envelope, io.Reader) error {
			return reply(550, "5.7.1", "No")
		}, "550 5.7.1 No"},
		{"fails", func(_ *Envelope, msg io.Reader) error {
			io.Copy(io.Discard, msg)
			return errors.New("disk on fire")
		}, "451 4.3.0 Local error, try again later"},
		{"accepts without reading", func(*Envelope, io.Reader) error {
			return nil
		}, "451 4.3.0 Local error, try again later"},
		{"answers success as an error", func(*Envelope, io.Reader) error {
			return reply(250, "2.0.0", "fake")
		}, "451 4.3.0 Local error, try again later"},
	} {
		out, err := serveHooks(testConfig(), tc.f, oneMessage+"NOOP\r\n")
		if !errors.Is(err, io.EOF) || !strings.HasSuffix(out, "\r\n"+tc.want+"\r\n250 2.0.0 OK\r\n") {
			t.Errorf("%s: %v, output %q", tc.name, err, out)
		}
	}
}

var regexpQueued = regexp.MustCompile(`\r\n250 2\.0\.0 OK queued as [0-9a-f]{16}\r\n221 `)

// TestDeliveryFuncAborted: a message the session refuses, or that the
// client cuts short, ends the function's reader with ErrAborted, and the
// session waits for the function before it replies or returns.
func TestDeliveryFuncAborted(t *testing.T) {
	for _, in := range []string{
		oneMessage[:strings.Index(oneMessage, "DATA")] + "DATA\r\nbare\nLF\r\n.\r\nQUIT\r\n", // 550 5.5.2
		strings.TrimSuffix(oneMessage, ".\r\n"),                                              // EOF
	} {
		var readErr error
		var returned atomic.Bool
		f := DeliveryFunc(func(_ *Envelope, msg io.Reader) error {
			_, readErr = io.Copy(io.Discard, msg)
			time.Sleep(10 * time.Millisecond)
			returned.Store(true)
			return nil
		})
		out, _ := serveHooks(testConfig(), f, in)
		if !returned.Load() || !errors.Is(readErr, ErrAborted) || strings.Contains(out, "queued") {
			t.Errorf("%q: returned %v, read error %v, output %q", in, returned.Load(), readErr, out)
		}
	}
}

// TestDeliveryFuncMemory sends a 100 MiB message through a DeliveryFunc:
// it streams, nothing holds the message.
func TestDeliveryFuncMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB")
	}
	const size = 100 << 20
	var n int64
	f := DeliveryFunc(func(_ *Envelope, msg io.Reader) error {
		var err error
		n, err = io.Copy(io.Discard, msg)
		return err
	})
	out, alloc, err := serveBig(f, size)
	if err != nil || !strings.Contains(out, "250 2.0.0 OK queued as ") || n < size {
		t.Fatalf("Serve: %v, %d bytes, output %q", err, n, out)
	}
	if alloc > 2<<20 {
		t.Errorf("a 100 MiB message allocated %d bytes", alloc)
	}
}

// TestPolicyFunc: the adapter is the recipient check.
func TestPolicyFunc(t *testing.T) {
	p := PolicyFunc(func(_ *Envelope, rcpt string) *Reply {
		if rcpt == "b@d.example" {
			return nil
		}
		return replyRelayDenied
	})
	var out bytes.Buffer
	in := "EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<x@y.example>\r\nRCPT TO:<b@d.example>\r\n"
	NewSession(testConfig(), testClient, p, nil, nil).Serve(bufio.NewReader(strings.NewReader(in)), &out, nil)
	if !strings.HasSuffix(out.String(), "\r\n550 5.7.1 Relaying denied\r\n250 2.1.5 Recipient OK\r\n") {
		t.Errorf("output %q", out.String())
	}
}

// TestShutdownAfter421: a 421 from a hook, the Policy or the Delivery
// closes the channel (RFC 5321 section 3.8): nothing after it is read or
// answered, and Serve says ErrShutdown.
func TestShutdownAfter421(t *testing.T) {
	r421 := &Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{"System not accepting network messages"}}
	for _, tc := range []struct {
		name string
		set  func(*Config) Delivery
		want string // the last reply
	}{
		{"helo", func(c *Config) Delivery { c.CheckHelo = func(Client, Verb, string) *Reply { return r421 }; return nil }, "EHLO"},
		{"mail", func(c *Config) Delivery { c.CheckSender = func(*Envelope) *Reply { return r421 }; return nil }, "MAIL"},
		{"data", func(c *Config) Delivery {
			return DeliveryFunc(func(*Envelope, io.Reader) error { return r421 })
		}, "DATA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			d := tc.set(&cfg)
			out, err := serveHooks(cfg, d, "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
			if !errors.Is(err, ErrShutdown) {
				t.Errorf("Serve: %v, want ErrShutdown", err)
			}
			if !strings.HasSuffix(out, "421 4.3.2 System not accepting network messages\r\n") || strings.Contains(out, "221 ") {
				t.Errorf("replies after the %s 421:\n%s", tc.want, out)
			}
		})
	}
}
