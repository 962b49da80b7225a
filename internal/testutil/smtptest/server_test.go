package smtptest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// engines are the two servers behind Server: protocol.Session, and
// go-smtp's for what protocol does not do.
var engines = []struct {
	name   string
	goSMTP bool
}{{"protocol", false}, {"go-smtp", true}}

// dial connects a go-smtp client to s and says EHLO.
func dial(t *testing.T, s *Server) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// send runs one transaction on c and returns the error of the first
// command refused (the final reply's for the data).
func send(c *smtp.Client, from string, opts *smtp.MailOptions, to []string, data string) error {
	if err := c.Mail(from, opts); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, data); err != nil {
		return err
	}
	return w.Close()
}

// Both engines record the same transactions: envelope, MAIL parameters,
// connection numbers and the bytes as sent (dot-unstuffed, without the
// server's Received: header, a first line that starts with a tab kept).
func TestRecords(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			var txNumbers []int
			s := Start(t, Options{GoSMTP: e.goSMTP, Script: Script{Mail: func(c *Conn, _ string) *protocol.Reply {
				txNumbers = append(txNumbers, c.Tx)
				return nil
			}}})
			c := dial(t, s)
			first := "\tindented first line\r\n.leading dot\r\nd\xc3\xa9j\xc3\xa0\r\n"
			if err := send(c, "a@example.org", &smtp.MailOptions{Body: smtp.Body8BitMIME, UTF8: true, Size: 42},
				[]string{"b@example.net", "c@example.net"}, first); err != nil {
				t.Fatal(err)
			}
			if err := send(c, "", nil, []string{"d@example.net"}, "Subject: two\r\n\r\nx\r\n"); err != nil {
				t.Fatal(err)
			}
			dial(t, s)
			want := []Tx{
				{Conn: 1, From: "a@example.org", To: []string{"b@example.net", "c@example.net"}, Body: "8BITMIME", SMTPUTF8: true, Size: 42, Data: []byte(first)},
				// go-smtp's client says BODY=8BITMIME to a server that offers it.
				{Conn: 1, From: "", To: []string{"d@example.net"}, Body: "8BITMIME", Data: []byte("Subject: two\r\n\r\nx\r\n")},
			}
			if got := s.Transactions(); !slices.EqualFunc(got, want, equalTx) {
				t.Errorf("transactions\n%+v\nwant\n%+v", got, want)
			}
			if !slices.Equal(txNumbers, []int{1, 2}) || s.Datas() != 2 || s.RcptCount()["c@example.net"] != 1 {
				t.Errorf("Tx %v, %d datas, recipients %v", txNumbers, s.Datas(), s.RcptCount())
			}
			waitFor(t, func() bool { return s.Conns() == 2 })
		})
	}
}

func equalTx(a, b Tx) bool {
	return a.Conn == b.Conn && a.From == b.From && slices.Equal(a.To, b.To) && a.Body == b.Body &&
		a.SMTPUTF8 == b.SMTPUTF8 && a.Size == b.Size && a.TLS == b.TLS && string(a.Data) == string(b.Data)
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met after 5s")
		}
	}
}

// replyOf returns what the client read of a refusal: "code enhanced
// text".
func replyOf(err error) string {
	se, ok := errors.AsType[*smtp.SMTPError](err)
	if !ok {
		return fmt.Sprintf("not a reply: %v", err)
	}
	ec := se.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, ec[0], ec[1], ec[2], se.Message)
}

// The script's refusals reach the client as they are at each stage, on
// both engines; a refused message is counted but not recorded. A
// multi-line reply carries its enhanced code on each line from
// protocol.Session (RFC 2034 section 3), on the last alone from go-smtp's
// server, where go-smtp's client cannot find it.
func TestScriptRefusals(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			s := Start(t, Options{GoSMTP: e.goSMTP, Script: Script{
				Mail: func(_ *Conn, from string) *protocol.Reply {
					if from == "bad@example.org" {
						return Reply(553, "5.7.1", "sender rejected")
					}
					return nil
				},
				Rcpt: func(_ *Conn, to string) *protocol.Reply {
					if to == "later@example.net" {
						return Reply(451, "4.3.0", "try later\nsecond line")
					}
					return nil
				},
				Data: func(_ *Conn, data []byte) *protocol.Reply {
					if strings.Contains(string(data), "spam") {
						return Reply(554, "5.6.0", "content rejected")
					}
					return nil
				},
			}})
			c := dial(t, s)
			multi := "451 4.3.0 try later\nsecond line"
			if e.goSMTP {
				multi = "451 0.0.0 try later\n4.3.0 second line"
			}
			for _, tc := range []struct{ from, to, data, want string }{
				{"bad@example.org", "a@example.net", "x\r\n", "553 5.7.1 sender rejected"},
				{"a@example.org", "later@example.net", "x\r\n", multi},
				{"a@example.org", "a@example.net", "spam\r\n", "554 5.6.0 content rejected"},
			} {
				if got := replyOf(send(c, tc.from, nil, []string{tc.to}, tc.data)); got != tc.want {
					t.Errorf("%s to %s: %q, want %q", tc.from, tc.to, got, tc.want)
				}
				c.Reset()
			}
			if len(s.Transactions()) != 0 || s.Datas() != 1 {
				t.Errorf("%d transactions, %d datas; want 0 and 1", len(s.Transactions()), s.Datas())
			}
		})
	}
}

// Drop closes the connection before the reply; Hangup after it, as after
// a 421; Hang holds the session until the server closes.
func TestDropHangupHang(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			s := Start(t, Options{GoSMTP: e.goSMTP, Script: Script{Mail: func(c *Conn, from string) *protocol.Reply {
				switch from {
				case "drop@example.org":
					c.Drop()
				case "hangup@example.org":
					c.Hangup()
					return Reply(421, "4.4.2", "closing")
				case "hang@example.org":
					c.Hang()
				}
				return Reply(451, "4.0.0", "unseen")
			}}})
			c := dial(t, s)
			if err := c.Mail("drop@example.org", nil); err == nil || strings.HasPrefix(replyOf(err), "451") {
				t.Errorf("dropped: %v", err)
			}
			c = dial(t, s)
			if got := replyOf(c.Mail("hangup@example.org", nil)); got != "421 4.4.2 closing" {
				t.Errorf("hangup: %q", got)
			}
			if err := c.Noop(); err == nil || strings.HasPrefix(replyOf(err), "250") {
				t.Errorf("after the hangup, NOOP: %v", err)
			}
			nc, err := net.Dial("tcp", s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			c = smtp.NewClient(nc)
			c.CommandTimeout = 200 * time.Millisecond
			if err := c.Hello("client.test"); err != nil {
				t.Fatal(err)
			}
			if err := c.Mail("hang@example.org", nil); !isTimeout(err) {
				t.Errorf("hang: %v", err)
			}
			s.Close() // releases the script
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// A Greet that hangs is a server that accepts and never greets.
func TestGreetHangs(t *testing.T) {
	s := Start(t, Options{Script: Script{Greet: func(c *Conn) *protocol.Reply {
		c.Hang()
		return nil
	}}})
	nc, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := nc.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
		t.Errorf("read %d bytes, %v; want a timeout", n, err)
	}
}

// The limits of a strict server: SIZE advertised, extensions withheld,
// a line of text over MaxLineLength refused (and not counted), one at the
// limit taken.
func TestLimits(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			o := Options{GoSMTP: e.goSMTP, MaxMessageSize: 4096, MaxLineLength: 1000, Withhold: protocol.ExtSMTPUTF8}
			if !e.goSMTP {
				o.Withhold |= protocol.Ext8BITMIME
			}
			s := Start(t, o)
			c := dial(t, s)
			if n, ok := c.MaxMessageSize(); !ok || n != 4096 {
				t.Errorf("SIZE %d, %v", n, ok)
			}
			if ok, _ := c.Extension("SMTPUTF8"); ok {
				t.Error("SMTPUTF8 offered")
			}
			if ok, _ := c.Extension("8BITMIME"); ok == !e.goSMTP {
				t.Errorf("8BITMIME offered: %v", ok)
			}
			if err := send(c, "a@example.org", nil, []string{"b@example.net"}, strings.Repeat("x", 998)+"\r\n"); err != nil {
				t.Errorf("a line of 1000 octets: %v", err)
			}
			c.Reset()
			err := send(c, "a@example.org", nil, []string{"b@example.net"}, strings.Repeat("y", 999)+"\r\n")
			if err == nil || !e.goSMTP && !strings.HasPrefix(replyOf(err), "500 5.5.2 Line longer than 1000 octets") {
				t.Errorf("a line of 1001 octets: %v", err)
			}
			if len(s.Transactions()) != 1 || s.Datas() != 1 {
				t.Errorf("%d transactions, %d datas; want 1 and 1", len(s.Transactions()), s.Datas())
			}
		})
	}
}

// Without the network, Connect and the Conn's steps run the same script
// and record the same way.
func TestConnect(t *testing.T) {
	s := New(Options{Script: Script{Rcpt: func(_ *Conn, to string) *protocol.Reply {
		if to == "no@example.net" {
			return Reply(550, "5.1.1", "no such user")
		}
		return nil
	}}})
	c := s.Connect()
	if r := c.Mail("a@example.org"); r != nil || c.Tx != 1 || c.N != 1 {
		t.Fatalf("Mail: %v, Tx %d, N %d", r, c.Tx, c.N)
	}
	if r := c.Rcpt("no@example.net"); r == nil || r.Error() != "550 5.1.1 no such user" {
		t.Errorf("Rcpt: %v", r)
	}
	if r := c.Data(Tx{From: "a@example.org", To: []string{"b@example.net"}, Data: []byte("x\r\n")}); r != nil {
		t.Errorf("Data: %v", r)
	}
	c.Drop()
	c.Hangup() // nothing to close
	if txs := s.Transactions(); len(txs) != 1 || txs[0].Conn != 1 || string(txs[0].Data) != "x\r\n" || s.Conns() != 1 {
		t.Errorf("transactions %+v, %d connections", txs, s.Conns())
	}
}
