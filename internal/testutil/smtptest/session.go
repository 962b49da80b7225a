package smtptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// accept serves each connection in a protocol.Session of its own.
func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer nc.Close()
			s.serve(nc)
		}()
	}
}

// serve runs one session: the Script through protocol's hooks, a
// PolicyFunc and a DeliveryFunc.
func (s *Server) serve(nc net.Conn) {
	c := s.Connect()
	c.wire = unwrap(nc)
	_, isTLS := nc.(*tls.Conn)
	o := &s.opts
	cfg := protocol.Config{
		Hostname:       o.hostname(),
		MaxMessageSize: o.MaxMessageSize,
		MaxRecipients:  o.MaxRecipients,
		MaxLineLength:  o.MaxLineLength,
		Withhold:       o.Withhold,
		CommandTimeout: timeout,
		DataTimeout:    timeout,
		Software:       "smtptest",
		Greet:          func(protocol.Client) *protocol.Reply { return c.greet() },
		CheckSender:    func(env *protocol.Envelope) *protocol.Reply { return c.Mail(env.From) },
	}
	policy := protocol.PolicyFunc(func(_ *protocol.Envelope, rcpt string) *protocol.Reply { return c.Rcpt(rcpt) })
	deliver := protocol.DeliveryFunc(func(env *protocol.Envelope, msg io.Reader) error {
		b, err := io.ReadAll(msg)
		if err != nil {
			return err // the session gave the message up
		}
		data, ok := untrace(b, cfg.Hostname)
		if !ok {
			return Reply(451, "4.3.0", "smtptest: no Received: header of its own in front of the message")
		}
		tx := Tx{From: env.From, To: env.To, Body: env.Body, SMTPUTF8: env.SMTPUTF8, Size: env.Size, TLS: isTLS, Data: data,
			Ret: env.Ret, EnvID: env.EnvID}
		if len(env.DSN) > 0 {
			for i := range env.To {
				d := env.RcptDSN(i)
				n := ""
				if d.Notify != 0 {
					n = d.Notify.String()
				}
				tx.Notify, tx.ORcpt = append(tx.Notify, n), append(tx.ORcpt, d.ORcpt)
			}
		}
		if r := c.Data(tx); r != nil {
			return r
		}
		return nil
	})
	client := protocol.Client{Addr: nc.RemoteAddr().(*net.TCPAddr).AddrPort()}
	protocol.NewSession(cfg, client, policy, deliver, nil).Serve(bufio.NewReader(nc), nc, nc)
}

// untrace removes the Received: header that the session put in front of
// the message, so that a transaction holds the bytes the client sent. Its
// form is protocol's (trace.go): a first line, then "\tby " and the
// server's name, then "\t" and the date.
func untrace(b []byte, host string) ([]byte, bool) {
	for _, prefix := range []string{"Received: from ", "\tby " + host + " (", "\t"} {
		end := bytes.Index(b, []byte("\r\n"))
		if !bytes.HasPrefix(b, []byte(prefix)) || end < 0 {
			return nil, false
		}
		b = b[end+2:]
	}
	return b, true
}

// unwrap returns the wire under nc, a connection the listener accepted.
func unwrap(nc net.Conn) *wire {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	w, _ := nc.(*wire)
	return w
}
