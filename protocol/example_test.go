package protocol_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/mail"
	"net/netip"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/smtp-stdio/smtp-stdio/domain"
	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// A mail server on a TCP port: accept connections, serve each in a
// session of its own, and deliver each message to a function. The
// example then sends itself a message with net/smtp.
func Example_server() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()

	cfg := protocol.DefaultConfig()
	cfg.Hostname = "mx.example.org"
	// Mail for example.org only: anything else would be relaying.
	policy := protocol.PolicyFunc(func(env *protocol.Envelope, rcpt string) *protocol.Reply {
		if d, ok := domain.Of(rcpt); ok {
			if c, err := domain.Canonical(d); err == nil && c == "example.org" {
				return nil
			}
		}
		return &protocol.Reply{Code: 550, Enhanced: "5.7.1", Lines: []string{"Relaying denied"}}
	})
	deliver := protocol.DeliveryFunc(func(env *protocol.Envelope, msg io.Reader) error {
		m, err := mail.ReadMessage(msg) // the header, Received: first
		if err != nil {
			return err
		}
		body, err := io.ReadAll(m.Body)
		fmt.Printf("%s to %v: %s: %q\n", env.From, env.To, m.Header.Get("Subject"), body)
		return err // nil: 250, the message is ours
	})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // the listener was closed
			}
			go func() {
				defer conn.Close()
				client := protocol.Client{Addr: conn.RemoteAddr().(*net.TCPAddr).AddrPort()}
				s := protocol.NewSession(cfg, client, policy, deliver, nil)
				s.Serve(bufio.NewReader(conn), conn, conn) // a net.Conn has read deadlines
			}()
		}
	}()

	err = smtp.SendMail(ln.Addr().String(), nil, "alice@example.net", []string{"bob@example.org"},
		[]byte("Subject: Hello\r\n\r\nHello, Bob.\r\n"))
	fmt.Println("sent:", err)
	// Output:
	// alice@example.net to [bob@example.org]: Hello: "Hello, Bob.\r\n"
	// sent: <nil>
}

// dirDelivery keeps each message in a file of its own in dir, named by
// its queue id. A message is written under a temporary name and renamed
// into place by Commit, after fsync, so that dir never holds half a
// message; only then does the client get 250.
type dirDelivery struct {
	dir string
	n   atomic.Int64 // the last queue id
}

func (d *dirDelivery) Begin(env *protocol.Envelope) (protocol.MessageWriter, error) {
	f, err := os.CreateTemp(d.dir, ".tmp-")
	if err != nil {
		return nil, err // 451 4.3.0
	}
	id := fmt.Sprintf("M%d", d.n.Add(1))
	return &fileMessage{File: f, path: filepath.Join(d.dir, id+".eml"), id: id}, nil
}

// fileMessage is one message being written: Write comes from *os.File.
type fileMessage struct {
	*os.File
	path, id string
}

func (m *fileMessage) QueueID() string { return m.id }

func (m *fileMessage) Commit() error {
	if err := m.Sync(); err != nil {
		return err
	}
	if err := m.Close(); err != nil {
		return err
	}
	return os.Rename(m.Name(), m.path)
}

// Abort removes the temporary file; after Commit there is none.
func (m *fileMessage) Abort() error {
	m.Close()
	if err := os.Remove(m.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// A Delivery of one's own, here one that writes each message to a file
// in a directory. The session runs over a scripted dialog, as one over
// stdin and stdout would: a Session needs only a reader and a writer.
func ExampleDelivery() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := protocol.DefaultConfig()
	cfg.Hostname = "mx.example.org"
	cfg.Software = "example" // in the Received: header
	cfg.Now = func() time.Time { return time.Date(2026, 11, 21, 11, 18, 25, 0, time.UTC) }
	accept := protocol.PolicyFunc(func(*protocol.Envelope, string) *protocol.Reply { return nil })
	s := protocol.NewSession(cfg, protocol.Client{Local: true}, accept, &dirDelivery{dir: dir}, nil)
	dialog := "HELO client.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n" +
		"DATA\r\nSubject: Hello\r\n\r\nHello, Bob.\r\n.\r\nQUIT\r\n"
	var replies bytes.Buffer
	err = s.Serve(bufio.NewReader(strings.NewReader(dialog)), &replies, nil)
	fmt.Print(strings.ReplaceAll(replies.String(), "\r\n", "\n"))
	fmt.Println("Serve:", err)

	msg, err := os.ReadFile(filepath.Join(dir, "M1.eml"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(strings.ReplaceAll(string(msg), "\r\n", "\n"))
	// Output:
	// 220 mx.example.org ESMTP ready
	// 250 mx.example.org greets client.example
	// 250 2.1.0 Sender OK
	// 250 2.1.5 Recipient OK
	// 354 Start mail input; end with <CRLF>.<CRLF>
	// 250 2.0.0 OK queued as M1
	// 221 2.0.0 mx.example.org closing connection
	// Serve: <nil>
	// Received: from client.example
	// 	by mx.example.org (example, local) with SMTP id M1;
	// 	Sat, 21 Nov 2026 11:18:25 +0000
	// Subject: Hello
	//
	// Hello, Bob.
}

// A policy that refuses senders at MAIL FROM (Config.CheckSender), here
// every sender in one domain, in whatever form the client spells it.
func ExampleConfig_checkSender() {
	cfg := protocol.DefaultConfig()
	cfg.Hostname = "mx.example.org"
	cfg.CheckSender = func(env *protocol.Envelope) *protocol.Reply {
		if d, ok := domain.Of(env.From); ok {
			if c, _ := domain.Canonical(d); c == "spam.example" {
				return &protocol.Reply{Code: 550, Enhanced: "5.7.1", Lines: []string{"Sender refused"}}
			}
		}
		return nil
	}
	s := protocol.NewSession(cfg, protocol.Client{Local: true}, nil, nil, nil)
	dialog := "HELO client.example\r\nMAIL FROM:<eve@Spam.EXAMPLE>\r\nMAIL FROM:<alice@example.net>\r\nQUIT\r\n"
	var replies bytes.Buffer
	s.Serve(bufio.NewReader(strings.NewReader(dialog)), &replies, nil)
	fmt.Print(strings.ReplaceAll(replies.String(), "\r\n", "\n"))
	// Output:
	// 220 mx.example.org ESMTP ready
	// 250 mx.example.org greets client.example
	// 550 5.7.1 Sender refused
	// 250 2.1.0 Sender OK
	// 221 2.0.0 mx.example.org closing connection
}

// Hooks at both ends of a session: Config.Greet refuses a client before
// the greeting with 554, after which the session only waits for QUIT
// (RFC 5321 section 3.1), and Config.OnClose is told how it ended.
func ExampleConfig_greet() {
	cfg := protocol.DefaultConfig()
	cfg.Hostname = "mx.example.org"
	blocked := netip.MustParsePrefix("192.0.2.0/24") // or a DNS blocklist
	cfg.Greet = func(c protocol.Client) *protocol.Reply {
		if blocked.Contains(c.Addr.Addr()) {
			return &protocol.Reply{Code: 554, Lines: []string{"mx.example.org No SMTP service for " + c.Addr.Addr().String()}}
		}
		return nil // the usual 220
	}
	cfg.OnClose = func(sum protocol.Summary) {
		fmt.Printf("closed: %v, %d messages, %d errors\n", sum.Err, sum.Messages, sum.Errors)
	}
	client := protocol.Client{Addr: netip.MustParseAddrPort("192.0.2.1:50000")}
	s := protocol.NewSession(cfg, client, nil, nil, nil)
	var replies bytes.Buffer
	s.Serve(bufio.NewReader(strings.NewReader("EHLO client.example\r\nQUIT\r\n")), &replies, nil)
	fmt.Print(strings.ReplaceAll(replies.String(), "\r\n", "\n"))
	// Output:
	// closed: <nil>, 0 messages, 2 errors
	// 554 mx.example.org No SMTP service for 192.0.2.1
	// 503 5.5.1 Session refused: only QUIT is accepted
	// 221 2.0.0 mx.example.org closing connection
}
