package send

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smarthost is the Transport that Config describes: SMTP (RFC 5321) with
// github.com/emersion/go-smtp to the configured smarthosts, tried in
// order. Each worker's session keeps its connection across messages
// unless Config.NoReuse. A run makes a new one, so that a host down in
// one run is tried again in the next. It is the one place that knows
// SMTP as a client: extensions (SIZE, SMTPUTF8, 8BITMIME and the 7-bit
// downgrade), line length, batching of recipients into transactions,
// reconnection and failover.
//
// The same machinery carries mail to the MX hosts of one destination
// (see mx.go): then mx is set, the hosts are the destination's addresses
// in the order to try them, and the connection is opened with the route's
// TLS policy (dialMX) instead of the smarthost settings.
type smarthost struct {
	cfg   *Config
	log   *slog.Logger
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	tmp   string // directory for the 7-bit versions of messages
	hosts *hostList
	what  string      // "smarthost" or "MX host", in log lines and texts
	mx    *mxPolicy   // nil for the configured smarthost
	down  *downMemory // MX delivery: timeouts remembered across runs
	pool  *connPool   // MX delivery: the run's idle connections; nil for the smarthost
}

// newSmarthost returns the smarthost transport of cfg (with its
// defaults), dialling with dial and making 7-bit versions in tmp.
func newSmarthost(cfg *Config, log *slog.Logger, dial func(ctx context.Context, network, addr string) (net.Conn, error), tmp string) *smarthost {
	return &smarthost{cfg: cfg, log: log, dial: dial, tmp: tmp, hosts: newHostList(cfg.Smarthosts), what: "smarthost"}
}

// NewSession implements Transport: a session without a connection yet.
func (t *smarthost) NewSession() Session { return &smtpSession{t: t} }

// smtpSession is one worker's: its open connection, if any.
type smtpSession struct {
	t *smarthost
	c *conn
}

// Deliver implements Session: transactions until every recipient has an
// outcome, connecting (and reconnecting, or failing over to the next
// host) as needed. A connection-level failure before the data was
// complete means the server cannot have taken the message: the
// transaction is tried again on a new connection, at most once more than
// there are smarthosts.
func (s *smtpSession) Deliver(ctx context.Context, d *Delivery, rec Recorder) error {
	t := s.t
	m := &smtpMsg{Delivery: d, rec: rec}
	defer m.close()
	todo, tries := d.Rcpts, 0
	var abort error
	for len(todo) > 0 && abort == nil {
		if s.c == nil {
			c, f := t.connect(ctx)
			if f != nil {
				rec.Failed(todo, f)
				return nil
			}
			s.c = c
		}
		batch := todo[:min(len(todo), t.cfg.MaxRecipients)]
		rest := todo[len(batch):]
		carry, res, err := s.transaction(m, batch)
		abort = err
		if res.dead || res.conn != nil {
			host := s.c.host
			s.c.close()
			s.c = nil
			if f := res.conn; f != nil {
				t.failed(host, f, res.reused)
				if tries++; tries <= len(t.hosts.hosts)+1 {
					continue
				}
				rec.Failed(batch, f)
			}
		}
		todo = slices.Concat(carry, rest)
	}
	if t.cfg.NoReuse && s.c != nil {
		s.c.quit()
		s.c = nil
	}
	return abort
}

// Close implements Session: QUIT, if a connection is open.
func (s *smtpSession) Close() error {
	s.c.quit()
	s.c = nil
	return nil
}

// release puts the session's connection, if one is open, back into the
// run's pool for the next message to the same host (MX delivery), or
// ends it when there is no pool.
func (s *smtpSession) release() {
	switch {
	case s.c == nil:
	case s.t.pool == nil:
		s.c.quit()
	default:
		s.t.pool.put(s.c.key, s.c)
	}
	s.c = nil
}

// failed takes host i out of the run when f says so (Failure.HostDown:
// the one rule, for every place a host can fail), and logs it once.
func (t *smarthost) failed(i int, f *Failure, reused bool) {
	if t.down != nil {
		t.down.note(t.hosts.hosts[i].Addr, f)
	}
	if f.HostDown(reused) && t.hosts.markDown(i, f) {
		t.log.Warn(t.what+" down for this run", "relay", f.Relay, "stage", f.Stage.String(),
			"code", f.Code, "enhanced", f.Enhanced, "reply", f.Text)
	}
}

// hostList is the run's view of the smarthosts: which are down (RFC 5321
// section 4.5.4.1: a host that failed is not tried again for a while; here,
// for the rest of the run). Shared by the workers.
type hostList struct {
	mu    sync.Mutex
	hosts []Host
	prefs []uint16 // MX preference of each host (RFC 5321 section 5.1); nil for smarthosts
	down  []*Failure
	last  *Failure // the latest failure that took a host down
}

func newHostList(hosts []Host) *hostList {
	return &hostList{hosts: hosts, down: make([]*Failure, len(hosts))}
}

// up returns the indexes of the hosts not down, in configured order.
func (h *hostList) up() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ix []int
	for i, f := range h.down {
		if f == nil {
			ix = append(ix, i)
		}
	}
	return ix
}

// markDown records that host i failed with f; it returns true the first
// time, so the caller logs it once.
func (h *hostList) markDown(i int, f *Failure) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.down[i] == nil
	if first {
		h.down[i] = f
	}
	h.last = f
	return first
}

// lastFailure returns the failure that took the last host down, or nil.
func (h *hostList) lastFailure() *Failure {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// conn is one open SMTP connection to a smarthost, owned by one worker's
// session.
type conn struct {
	c     *smtp.Client
	tc    *timedConn
	host  int
	relay string
	key   string // MX delivery: what it was made under (poolKey)
	txs   int    // transactions started on it: >0 means reused
	open  bool   // a transaction was begun and not ended by a final reply: RSET first
	tls   bool   // the connection is TLS-protected
	utf8  bool   // SMTPUTF8 offered (RFC 6531)
	eight bool   // 8BITMIME offered (RFC 6152)
	max   int64
}

func (s *conn) close() {
	if s != nil && s.c != nil {
		s.c.Close()
	}
}

// quit ends the connection politely; errors do not matter any more.
func (s *conn) quit() {
	if s == nil {
		return
	}
	if err := s.c.Quit(); err != nil {
		s.c.Close()
	}
}

// timedConn enforces the per-step timeouts of RFC 5321 section 4.5.3.2 on
// top of go-smtp's: every write of message data gets its own deadline
// (block), and while limit is set no deadline may lie further away (go-smtp
// uses its 5-minute default before CommandTimeout can be set).
type timedConn struct {
	net.Conn
	block time.Duration
	limit time.Duration
}

// SetDeadline implements net.Conn, moving t no later than the limit from
// now.
func (c *timedConn) SetDeadline(t time.Time) error {
	if c.limit > 0 && !t.IsZero() {
		t = minTime(t, time.Now().Add(c.limit))
	}
	return c.Conn.SetDeadline(t)
}

// Write implements net.Conn, with a deadline of one block timeout per
// write.
func (c *timedConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.block)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// connect opens a connection to the first smarthost that is up, in order,
// marking each one that fails as down; for MX delivery an idle connection
// to that host from the run's pool comes first. It returns the failure of
// the last host tried, or the run's last host failure when all were down
// already.
func (t *smarthost) connect(ctx context.Context) (*conn, *Failure) {
	order := t.hosts.up()
	if t.hosts.prefs != nil && t.pool != nil {
		// An idle connection to any of the most preferred MX hosts
		// first; then a new one, to one of them at random.
		tier := spreadTier(order, t.hosts.prefs)
		for _, i := range order[:tier] {
			if c := t.pool.get(t.poolKey(i)); c != nil {
				c.host = i
				return c, nil
			}
		}
	} else if t.hosts.prefs != nil {
		spreadTier(order, t.hosts.prefs)
	}
	var last *Failure
	for _, i := range order {
		key := ""
		if t.pool != nil {
			key = t.poolKey(i)
			if c := t.pool.get(key); c != nil {
				c.host = i
				return c, nil
			}
		}
		c, f := t.dialHost(ctx, i)
		if f == nil {
			c.key = key
			return c, nil
		}
		f.setup = true
		t.failed(i, f, false)
		last = f
	}
	if last == nil {
		last = t.hosts.lastFailure()
	}
	if last == nil {
		last = localFailure("", "4.4.1", "no "+t.what+" available")
	}
	return nil, last
}

// spreadTier rotates the leading indexes of order (into prefs, the MX
// preference of each host) that share the first one's by a random count, and returns how many
// they are: RFC 5321 section 5.1's equal-preference hosts then share the
// connections of a run, as Postfix's smtp_randomize_addresses does for
// each delivery, instead of the run's first choice taking them all. The
// order past them, and among them, is otherwise kept.
func spreadTier(order []int, prefs []uint16) int {
	n := 0
	for n < len(order) && prefs[order[n]] == prefs[order[0]] {
		n++
	}
	if n > 1 {
		k := rand.IntN(n)
		tier := slices.Concat(order[k:n], order[:k])
		copy(order, tier)
	}
	return n
}

// dialHost connects to smarthost i and makes the connection ready for
// MAIL: TLS as configured, EHLO, AUTH. Every failure is the host's (or
// our configuration's), never the message's.
func (t *smarthost) dialHost(ctx context.Context, i int) (*conn, *Failure) {
	if t.mx != nil {
		return t.dialMX(ctx, i)
	}
	cfg := t.cfg
	h := t.hosts.hosts[i]
	fail := func(stage Stage, err error) (*conn, *Failure) {
		return nil, classify(stage, h.Addr, err)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	raw, err := t.dial(dctx, "tcp", h.Addr)
	cancel()
	if err != nil {
		return fail(StageConnect, err)
	}
	tc := &timedConn{Conn: raw, block: cfg.BlockTimeout, limit: cfg.CommandTimeout}
	tlsConf := t.tlsConfig(h)
	var c *smtp.Client
	switch cfg.TLS {
	case TLSImplicit:
		tconn := tls.Client(tc, tlsConf)
		tc.SetDeadline(time.Now().Add(cfg.CommandTimeout))
		if err := tconn.Handshake(); err != nil {
			raw.Close()
			return fail(StageTLS, err)
		}
		c = smtp.NewClient(tconn)
	case TLSStartTLS:
		// go-smtp says "EHLO localhost" before STARTTLS; our name follows
		// in the EHLO after it. The handshake itself runs at that EHLO.
		c, err = smtp.NewClientStartTLS(tc, tlsConf)
		if err != nil {
			raw.Close()
			if strings.Contains(err.Error(), "doesn't support STARTTLS") {
				return nil, &Failure{Stage: StageTLS, Relay: h.Addr, Enhanced: "4.7.10", Err: err,
					Text: "STARTTLS not offered and TLS is required (no downgrade to clear text)"}
			}
			return fail(StageTLS, err)
		}
	default:
		c = smtp.NewClient(tc)
	}
	c.CommandTimeout = cfg.CommandTimeout
	c.SubmissionTimeout = cfg.DataTimeout
	tc.limit = 0
	if err := c.Hello(cfg.Hostname); err != nil {
		c.Close()
		stage := StageHello
		if isTLSError(err) {
			stage = StageTLS
		}
		return fail(stage, err)
	}
	_, isTLS := c.TLSConnectionState()
	if cfg.TLS != TLSNone && !isTLS {
		c.Close()
		return nil, localFailure(h.Addr, "4.7.10", "TLS required but not in effect")
	}
	s := &conn{c: c, tc: tc, host: i, relay: h.Addr, tls: isTLS}
	s.utf8, _ = c.Extension("SMTPUTF8")
	s.eight, _ = c.Extension("8BITMIME")
	if n, ok := c.MaxMessageSize(); ok {
		s.max = int64(n)
	}
	if cfg.Username != "" {
		if f := t.auth(s); f != nil {
			c.Close()
			return nil, f
		}
	}
	return s, nil
}

// auth authenticates with PLAIN, else LOGIN (RFC 4954), refusing to send
// the password in clear text unless AuthWithoutTLS.
func (t *smarthost) auth(s *conn) *Failure {
	cfg := t.cfg
	if !s.tls && !cfg.AuthWithoutTLS {
		return &Failure{Stage: StageAuth, Relay: s.relay, Enhanced: "4.7.11",
			Text: "refusing AUTH without TLS (set SMTP_SMARTHOST_AUTH_WITHOUT_TLS to allow)"}
	}
	var mech sasl.Client
	switch {
	case s.c.SupportsAuth("PLAIN"):
		mech = sasl.NewPlainClient("", cfg.Username, cfg.Password)
	case s.c.SupportsAuth("LOGIN"):
		mech = sasl.NewLoginClient(cfg.Username, cfg.Password)
	default:
		return &Failure{Stage: StageAuth, Relay: s.relay, Enhanced: "4.7.12",
			Text: "smarthost offers neither AUTH PLAIN nor AUTH LOGIN"}
	}
	if err := s.c.Auth(mech); err != nil {
		return classify(StageAuth, s.relay, err)
	}
	return nil
}

func (t *smarthost) tlsConfig(h Host) *tls.Config {
	var c *tls.Config
	if t.cfg.TLSConfig != nil {
		c = t.cfg.TLSConfig.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = h.Name
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

func isTLSError(err error) bool {
	var re tls.RecordHeaderError
	var ae tls.AlertError
	var ve *tls.CertificateVerificationError
	return errors.As(err, &re) || errors.As(err, &ae) || errors.As(err, &ve)
}
