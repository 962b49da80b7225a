package smtptest

import (
	"io"
	"log"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// newGoSMTP returns go-smtp's server running the Script, for what
// protocol.Session does not do: STARTTLS, AUTH, reply text that is not
// printable ASCII.
func (s *Server) newGoSMTP() *smtp.Server {
	o := &s.opts
	gs := smtp.NewServer(smtp.BackendFunc(func(gc *smtp.Conn) (smtp.Session, error) {
		c := s.Connect()
		c.wire = unwrap(gc.Conn())
		gss := &goSession{c: c, gc: gc}
		if o.User != "" {
			return &goAuthSession{gss}, nil
		}
		return gss, nil
	}))
	gs.Domain = o.hostname()
	gs.TLSConfig = o.StartTLS
	gs.AllowInsecureAuth = true
	gs.EnableSMTPUTF8 = o.Withhold&protocol.ExtSMTPUTF8 == 0
	gs.MaxMessageBytes = o.MaxMessageSize
	gs.MaxRecipients = o.MaxRecipients
	if o.MaxLineLength > 0 {
		gs.MaxLineLength = o.MaxLineLength
	}
	gs.ReadTimeout, gs.WriteTimeout = timeout, timeout
	gs.ErrorLog = log.New(io.Discard, "", 0)
	return gs
}

// goSession is one go-smtp session: it keeps the envelope and asks the
// Conn, as protocol's hooks do.
type goSession struct {
	c  *Conn
	gc *smtp.Conn
	tx Tx
}

func (s *goSession) Reset()        { s.tx = Tx{} }
func (s *goSession) Logout() error { return nil }

func (s *goSession) Mail(from string, o *smtp.MailOptions) error {
	s.tx = Tx{From: from}
	if o != nil {
		s.tx.Body, s.tx.SMTPUTF8, s.tx.Size = string(o.Body), o.UTF8, o.Size
	}
	return goError(s.c.Mail(from))
}

func (s *goSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := goError(s.c.Rcpt(to)); err != nil {
		return err
	}
	s.tx.To = append(s.tx.To, to)
	return nil
}

func (s *goSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err // cut short, or a line too long
	}
	tx := s.tx
	tx.Data = b
	_, tx.TLS = s.gc.TLSConnectionState()
	return goError(s.c.Data(tx))
}

// goAuthSession offers AUTH PLAIN (RFC 4954) with the server's
// credentials.
type goAuthSession struct{ *goSession }

func (a *goAuthSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (a *goAuthSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		srv := a.c.srv
		srv.mu.Lock()
		srv.auths++
		srv.mu.Unlock()
		if user != srv.opts.User || pass != srv.opts.Password {
			return smtp.ErrAuthFailed
		}
		return nil
	}), nil
}

// goError is a script's reply as go-smtp's server takes it.
func goError(r *protocol.Reply) error {
	if r == nil {
		return nil
	}
	e := &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCodeNotSet, Message: strings.Join(r.Lines, "\n")}
	if p := strings.Split(r.Enhanced, "."); len(p) == 3 {
		for i := range p {
			e.EnhancedCode[i], _ = strconv.Atoi(p[i])
		}
	}
	return e
}
