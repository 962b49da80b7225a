package send

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/route"
)

// lmtpSession delivers over LMTP (RFC 2033) with go-smtp's LMTP client
// to the unix socket or host of one route, keeping its connection across
// the worker's messages. LMTP is SMTP with one reply per accepted
// recipient after the data (RFC 2033 section 4.2), so each recipient's
// fate is known and recorded on its own: a 250 as delivered, a 4xx
// deferred, a 5xx failed. A server that is down or refuses LHLO defers
// every recipient (an LMTP server has no queue of its own).
type lmtpSession struct {
	cfg   *Config
	log   *slog.Logger
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	route route.Route
	down  *serverDown // shared by the workers' sessions of the route
	c     *smtp.Client
	txs   int // transactions on c
}

// serverDown remembers, for the rest of a run, that a route's LMTP
// server could not be reached or refused LHLO, as a smarthost is marked
// down (RFC 5321 section 4.5.4.1): its other messages are deferred at
// once instead of each waiting for a connection timeout.
type serverDown struct {
	mu sync.Mutex
	f  *Failure
}

// get returns the failure that took the server down, nil if it is up.
func (d *serverDown) get() *Failure {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.f
}

// set marks the server down with f.
func (d *serverDown) set(f *Failure) {
	d.mu.Lock()
	d.f = f
	d.mu.Unlock()
}

// lmtpAddr is the address of route r's server: "unix:/path" or
// "host:port".
func lmtpAddr(r route.Route) string {
	if r.Socket != "" {
		return "unix:" + r.Socket
	}
	port := r.Port
	if port == 0 {
		port = route.DefaultLMTPPort
	}
	return net.JoinHostPort(r.Host, strconv.Itoa(port))
}

// connect opens the connection and says LHLO.
func (s *lmtpSession) connect(ctx context.Context) *Failure {
	relay := lmtpAddr(s.route)
	network, addr := "tcp", relay
	if s.route.Socket != "" {
		network, addr = "unix", s.route.Socket
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	raw, err := s.dial(dctx, network, addr)
	cancel()
	if err != nil {
		return classify(StageConnect, relay, err)
	}
	c := smtp.NewClientLMTP(&timedConn{Conn: raw, block: s.cfg.BlockTimeout})
	c.CommandTimeout = s.cfg.CommandTimeout
	c.SubmissionTimeout = s.cfg.DataTimeout
	if err := c.Hello(s.cfg.Hostname); err != nil {
		c.Close()
		return classify(StageHello, relay, err)
	}
	s.c, s.txs = c, 0
	return nil
}

// Deliver implements Session: transactions of at most
// Config.MaxRecipients recipients until each has an outcome. A
// recipient's address given twice goes in a later transaction, since
// LMTP's replies after the data are matched to recipients by address.
// A connection lost on a reused connection before the data was complete
// is tried once more on a new one; otherwise the recipients without a
// reply are deferred.
func (s *lmtpSession) Deliver(ctx context.Context, d *Delivery, rec Recorder) error {
	todo, retried := d.Rcpts, false
	for len(todo) > 0 {
		if s.c == nil {
			if f := s.down.get(); f != nil {
				rec.Failed(todo, f)
				return nil
			}
			if f := s.connect(ctx); f != nil {
				s.log.Warn("LMTP server down for this run", "relay", f.Relay, "stage", f.Stage.String(), "err", f.Text)
				s.down.set(f)
				rec.Failed(todo, f)
				return nil
			}
		}
		var batch, later []int
		seen := map[string]bool{}
		for _, i := range todo {
			if a := d.Envelope.To[i]; len(batch) < s.cfg.MaxRecipients && !seen[a] {
				seen[a] = true
				batch = append(batch, i)
			} else {
				later = append(later, i)
			}
		}
		carry, lost, err := s.transaction(d, batch, rec)
		if err != nil {
			s.drop()
			return err
		}
		if lost != nil {
			reused := s.txs > 0
			s.drop()
			if reused && !retried && lost.Stage != StageDot {
				retried = true
				todo = append(batch, later...)
				continue
			}
			rec.Failed(carry, lost)
			carry = nil
		}
		s.txs++
		todo = append(carry, later...)
	}
	return nil
}

// transaction sends the message to batch: MAIL, one RCPT each, DATA,
// the data, and reads one reply per accepted recipient (RFC 2033 section
// 4.2). Refusals go to rec as they come; the accepted recipients are
// recorded as delivered, each with its own reply and all in one record,
// before anything else is sent. It returns the recipients a 452 left for
// another transaction (RFC 5321 section 4.5.3.1.10), or with lost the
// connection failure and the recipients it left without an outcome; err
// is an error reading the message or recording an outcome.
func (s *lmtpSession) transaction(d *Delivery, batch []int, rec Recorder) (carry []int, lost *Failure, err error) {
	env, relay := d.Envelope, lmtpAddr(s.route)
	utf8 := env.SMTPUTF8 || !isASCII(env.From)
	for _, i := range batch {
		utf8 = utf8 || !isASCII(env.To[i])
	}
	if ok, _ := s.c.Extension("SMTPUTF8"); utf8 && !ok {
		// RFC 6531 section 3.2, as over SMTP; go-smtp would refuse to
		// send MAIL with an error that is no reply.
		rec.Failed(batch, localFailure(relay, "5.6.7", "the LMTP server does not offer SMTPUTF8 (RFC 6531), which this message needs"))
		return nil, nil, nil
	}
	if err := s.c.Mail(env.From, &smtp.MailOptions{Size: d.Size, UTF8: utf8}); err != nil {
		f := classify(StageMail, relay, err)
		if f.Code == 0 || f.Code == 421 {
			return batch, f, nil
		}
		rec.Failed(batch, f)
		s.reset()
		return nil, nil, nil
	}
	var accepted []int
	for n, i := range batch {
		err := s.c.Rcpt(env.To[i], nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		f := classify(StageRcpt, relay, err)
		switch {
		case f.Code == 0 || f.Code == 421:
			// No data was sent: the accepted ones cannot have been
			// delivered either.
			return append(accepted, batch[n:]...), f, nil
		case f.tooManyRcpts() && len(accepted) > 0:
			carry = append(carry, batch[n:]...)
		default:
			rec.Failed([]int{i}, f)
			continue
		}
		break
	}
	if len(accepted) == 0 {
		s.reset()
		return carry, nil, nil
	}
	w, err := s.c.Data()
	if err != nil {
		f := classify(StageData, relay, err)
		if f.Code == 0 || f.Code == 421 {
			return append(accepted, carry...), f, nil
		}
		rec.Failed(accepted, f)
		s.reset()
		return carry, nil, nil
	}
	if _, err := io.Copy(w, d.Content()); err != nil {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
			return append(accepted, carry...), classify(StageData, relay, err), nil
		}
		return nil, nil, err
	}
	resp, err := w.CloseWithLMTPResponse()
	var refused smtp.LMTPDataError
	errors.As(err, &refused)
	var missing, done []int
	var reps []Reply
	for _, i := range accepted {
		a := env.To[i]
		switch {
		case resp[a] != nil:
			enh, text := splitEnhanced(oneLine(resp[a].StatusText))
			done = append(done, i)
			reps = append(reps, Reply{Stage: StageDot, Code: 250, Enhanced: enh, Text: text, Relay: relay, Action: actionDelivered})
		case refused[a] != nil:
			rec.Failed([]int{i}, classify(StageDot, relay, refused[a]))
		default:
			missing = append(missing, i)
		}
	}
	if len(done) > 0 {
		// Every 250 of the transaction in one record, before anything
		// else is sent.
		if err := rec.DeliveredEach(done, reps); err != nil {
			return nil, nil, err
		}
	}
	if len(missing) > 0 {
		// The server may have delivered to them: the duplicate window
		// of docs/send.md.
		return append(missing, carry...), &Failure{Stage: StageDot, Relay: relay,
			Text: "connection lost before the server's reply for this recipient after the data"}, nil
	}
	return carry, nil, nil
}

// reset ends a transaction left open with RSET; a failure drops the
// connection.
func (s *lmtpSession) reset() {
	if err := s.c.Reset(); err != nil {
		s.drop()
	}
}

// drop closes the connection without QUIT.
func (s *lmtpSession) drop() {
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
}

// Close implements Session: QUIT.
func (s *lmtpSession) Close() error {
	if s.c == nil {
		return nil
	}
	err := s.c.Quit()
	s.drop()
	return err
}
