package send

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtp-stdio/smtp-stdio/dane"
	"github.com/smtp-stdio/smtp-stdio/domain"
	"github.com/smtp-stdio/smtp-stdio/mtasts"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// defaultRoute is the route of a recipient that no table line names,
// when there is no smarthost either: its domain's MX hosts.
var defaultRoute = route.Route{Kind: route.SMTP}

// mxPolicy is how a destination's connections are made.
type mxPolicy struct {
	// tls is the destination's policy, never route.TLSDefault (see
	// policyOf and applyPolicy).
	tls route.TLSPolicy
	// dane holds the hosts DANE speaks for, by name; their policy is
	// DANE's.
	dane map[string]*daneHost
}

// hostPolicy returns the TLS policy of the MX host name, and its DANE
// records when DANE speaks for it.
func (p *mxPolicy) hostPolicy(name string) (route.TLSPolicy, *daneHost) {
	if d := p.dane[name]; d != nil {
		return d.policy(), d
	}
	return p.tls, nil
}

// policyOf returns the TLS policy in force for route r, and where it
// came from, for logs and --explain.
func policyOf(r route.Route) (route.TLSPolicy, string) {
	if r.TLS != route.TLSDefault {
		return r.TLS, fmt.Sprintf("tls=%s on %s line %d", r.TLS, r.File, r.Line)
	}
	return route.TLSMay, "the default: opportunistic STARTTLS (RFC 7435), certificates not verified"
}

// router is the Transport when smtp-send delivers by itself: each
// recipient goes where the route table (Config.Routes) sends it, to its
// domain's MX hosts when no line names it, or to the smarthost
// (Config.Smarthosts) when there is one. A run makes a new one, so that
// DNS answers and hosts found down last only for the run.
type router struct {
	cfg       *Config
	log       *slog.Logger
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	tmp       string
	res       Resolver
	smarthost *smarthost // nil without Config.Smarthosts
	sts       *mtasts.Getter
	dane      *dane.Resolver // nil: DANE off
	down      *downMemory
	pool      *connPool // idle connections to MX hosts, shared by the workers

	mu    sync.Mutex
	dests map[string]*destEntry
	// lmtpDown holds a *serverDown per LMTP route (localKey).
	lmtpDown sync.Map
	now      func() time.Time // the run's clock (mbox From_ lines)
}

// destEntry is one destination of a run: looked up once, shared by the
// workers, with its hosts' down state (hostList).
type destEntry struct {
	once  sync.Once
	dest  destination
	relay *smarthost // nil when dest.Fail
}

// newRouter returns the router of one run, with cfg (its defaults set),
// dialling with dial, asking res, making 7-bit versions of messages in
// tmp, and reading now for the memory of timed-out hosts.
func newRouter(cfg *Config, log *slog.Logger, dial func(ctx context.Context, network, addr string) (net.Conn, error), tmp string, res Resolver, now func() time.Time) *router {
	t := &router{cfg: cfg, log: log, dial: dial, tmp: tmp, res: res, dests: map[string]*destEntry{},
		sts: newSTSGetter(cfg, res, dial, false), dane: newDANE(cfg), down: loadDown(cfg.DownFile, tmp, now), now: now,
		pool: &connPool{max: max(4*cfg.Connections, 16)}}
	if len(cfg.Smarthosts) > 0 {
		t.smarthost = newSmarthost(cfg, log, dial, tmp)
	}
	return t
}

// NewSession implements Transport.
func (t *router) NewSession() Session { return &routedSession{t: t} }

// finish ends the idle connections to MX hosts and saves what the run
// learnt that outlives it: the MX addresses that timed out. The run calls
// it after the last session closed.
func (t *router) finish() error {
	t.pool.close()
	return t.down.save()
}

// destKey names the destination of a recipient of domain dom on route
// r: recipients with the same key share connections. The TLS policy is
// part of it, so that a connection made under one policy never carries
// mail that another requires.
func destKey(r route.Route, dom string) string {
	hop := r.Nexthop()
	if r.Host == "" {
		hop += dom
	}
	return hop + " tls=" + r.TLS.String()
}

// destination returns the run's entry for route r and domain dom,
// looking it up the first time.
func (t *router) destination(ctx context.Context, key string, r route.Route, dom string) *destEntry {
	t.mu.Lock()
	e, ok := t.dests[key]
	if !ok {
		e = &destEntry{}
		t.dests[key] = e
	}
	t.mu.Unlock()
	e.once.Do(func() {
		e.dest = lookupDestination(ctx, t.res, r, dom, t.self())
		if !t.cfg.MXLoopback {
			dropLoopback(&e.dest, r, dom)
		}
		port := r.Port
		if port == 0 {
			port = t.cfg.MXPort
		}
		var plan stsPlan
		daneHosts := applyDANE(ctx, t.dane, r, mxName(r, dom), port, &e.dest, t.log)
		if daneHosts == nil && e.dest.Fail == nil {
			plan = applyPolicy(ctx, t.sts, r, dom, &e.dest, t.log)
		} else if daneHosts != nil {
			plan.tls, _ = policyOf(r)
		}
		if e.dest.Fail != nil {
			t.log.Warn("no MX host to deliver to", "destination", key, "err", e.dest.Fail.Error())
			return
		}
		hl := mxHostList(e.dest, port)
		for i, h := range hl.hosts {
			if f := t.down.down(h.Addr); f != nil && hl.markDown(i, f) {
				t.log.Info("MX host skipped: it timed out in an earlier run", "relay", h.Addr, "mx", h.Name, "reply", f.Text)
			}
		}
		e.relay = &smarthost{cfg: t.cfg, log: t.log, dial: t.dial, tmp: t.tmp, hosts: hl, what: "MX host",
			mx: &mxPolicy{tls: plan.tls, dane: daneHosts}, down: t.down, pool: t.pool}
	})
	return e
}

// mxName is the name whose MX records route r uses for a recipient in
// dom.
func mxName(r route.Route, dom string) string {
	if r.Host != "" {
		return r.Host
	}
	return dom
}

// self is our name in its canonical form, to recognise ourselves among
// the MX hosts.
func (t *router) self() string {
	s, err := domain.Canonical(t.cfg.Hostname)
	if err != nil {
		return ""
	}
	return s
}

// Route returns the route of the recipient addr under cfg, and whether
// it goes to the smarthost instead (no table line names it and
// cfg.Smarthosts is set).
func (c *Config) Route(addr string) (r route.Route, smarthost bool) {
	if r, ok := c.Routes.Lookup(addr); ok {
		return r, false
	}
	if len(c.Smarthosts) > 0 {
		return route.Route{}, true
	}
	return defaultRoute, false
}

// routedSession is one worker's: the smarthost session and the local
// sessions. Its connections to MX hosts are taken from the run's pool
// for each destination of a message and put back after it (connPool).
type routedSession struct {
	t     *router
	sh    Session
	local map[string]Session // by localKey
}

// group is the recipients of one message that go to one place.
type group struct {
	key    string
	route  route.Route
	dom    string
	rcpts  []int
	direct bool // to the smarthost
}

// Deliver implements Session: it groups the recipients by destination
// (an error route fails them at once) and delivers to each destination
// in one go, its recipients in as few transactions as the server
// allows.
func (s *routedSession) Deliver(ctx context.Context, d *Delivery, rec Recorder) error {
	t := s.t
	var groups []*group
	byKey := map[string]*group{}
	for _, i := range d.Rcpts {
		addr := d.Envelope.To[i]
		r, toSmarthost := t.cfg.Route(addr)
		key := "smarthost"
		dom := ""
		switch {
		case toSmarthost:
		case r.Kind == route.Error:
			rec.Failed([]int{i}, &Failure{Stage: StageLocal, Enhanced: r.Status, Text: r.Text})
			continue
		case r.Kind.Local():
			key = localKey(r)
		default:
			raw, _ := domain.Of(addr)
			dom, _ = domain.Canonical(raw)
			if dom == "" && r.Host == "" {
				rec.Failed([]int{i}, localFailure("", "5.1.2", "recipient has no domain to look up"))
				continue
			}
			key = destKey(r, dom)
		}
		g := byKey[key]
		if g == nil {
			g = &group{key: key, route: r, dom: dom, direct: toSmarthost}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.rcpts = append(g.rcpts, i)
	}
	for _, g := range groups {
		sub := *d
		sub.Rcpts = g.rcpts
		if g.direct {
			if s.sh == nil {
				s.sh = t.smarthost.NewSession()
			}
			if err := s.sh.Deliver(ctx, &sub, rec); err != nil {
				return err
			}
			continue
		}
		if g.route.Kind.Local() {
			ls := s.local[g.key]
			if ls == nil {
				if s.local == nil {
					s.local = map[string]Session{}
				}
				ls = t.newLocalSession(g.route)
				s.local[g.key] = ls
			}
			if err := ls.Deliver(ctx, &sub, rec); err != nil {
				return err
			}
			continue
		}
		slots, limited := rec.(destSlots)
		if limited && !slots.acquire(g.key) {
			t.log.Debug("destination at its concurrency limit: its recipients wait for a free connection in this run",
				"id", d.Envelope.QueueID, "destination", g.key, "limit", t.cfg.DestinationConcurrency)
			slots.postpone(g.key)
			continue
		}
		err := s.deliverMX(ctx, g, &sub, rec)
		if limited {
			slots.release(g.key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// destSlots is what a run's Recorder offers a Session for the
// per-destination concurrency limit (sched): a slot of the destination
// is taken, without waiting, for the time of its delivery; without one,
// its recipients are postponed (they get no outcome now, and the message
// comes back in the run when a slot is free).
type destSlots interface {
	acquire(key string) bool
	release(key string)
	postpone(key string)
}

// deliverMX delivers the recipients of group g (message d) to their MX
// destination, over a connection from the run's pool when there is one.
func (s *routedSession) deliverMX(ctx context.Context, g *group, d *Delivery, rec Recorder) error {
	e := s.t.destination(ctx, g.key, g.route, g.dom)
	if e.dest.Fail != nil {
		f := *e.dest.Fail
		f.dest = true
		rec.Failed(g.rcpts, &f)
		return nil
	}
	ss := &smtpSession{t: e.relay}
	err := ss.Deliver(ctx, d, destRecorder{rec})
	ss.release()
	return err
}

// Close implements Session: QUIT on every open connection but those to
// MX hosts, which the pool holds until the run ends (router.finish).
func (s *routedSession) Close() error {
	if s.sh != nil {
		s.sh.Close()
	}
	for _, ls := range s.local {
		ls.Close()
	}
	return nil
}

// destRecorder marks the failures of MX delivery as the destination's,
// so that they count towards expiry (Failure.Expires).
type destRecorder struct{ Recorder }

// Failed implements Recorder.
func (r destRecorder) Failed(rcpts []int, f *Failure) {
	f.dest = true
	r.Recorder.Failed(rcpts, f)
}

// dialMX connects to host i of an MX destination and makes the
// connection ready for MAIL under the destination's TLS policy:
//
//   - none: clear text;
//   - may: STARTTLS when the host offers it, the certificate checked and
//     the result logged but not required (RFC 7435 section 3); a failed
//     handshake is followed by one clear-text attempt on a new
//     connection, since nothing requires TLS (RFC 7435 section 6.2);
//   - encrypt: STARTTLS required, the certificate not verified;
//   - verify: STARTTLS required and a certificate valid for the host's
//     name.
//
// Every failure is the host's: the next one is tried.
func (t *smarthost) dialMX(ctx context.Context, i int) (*conn, *Failure) {
	h := t.hosts.hosts[i]
	pol, dh := t.mx.hostPolicy(h.Name)
	if dh != nil && dh.bogus != nil {
		// RFC 7672 section 2.1.1: bogus TLSA records make the host
		// unusable until they validate.
		return nil, &Failure{Stage: StageTLS, Relay: h.Addr, Enhanced: "4.7.5", setup: true,
			Text: "DANE: the TLSA records of " + h.Name + " fail DNSSEC validation"}
	}
	c, f, handshake := t.openMX(ctx, i, pol, dh)
	if handshake && pol == route.TLSMay {
		t.log.Warn("TLS handshake failed; trying again in clear text, as the opportunistic policy allows",
			"relay", h.Addr, "mx", h.Name, "err", f.Text)
		c, f, _ = t.openMX(ctx, i, route.TLSNone, nil)
	}
	return c, f
}

// openMX opens one connection to host i: the greeting and EHLO are read here,
// then STARTTLS when tryTLS and the host offers it; go-smtp takes the
// connection over after that (its EHLO is the one RFC 3207 section 4.2
// requires after TLS, and a harmless repeat without it). handshake
// reports a failure of STARTTLS: a refusal of the command or of the TLS
// handshake.
func (t *smarthost) openMX(ctx context.Context, i int, pol route.TLSPolicy, dh *daneHost) (_ *conn, _ *Failure, handshake bool) {
	tryTLS := pol != route.TLSNone
	cfg, h := t.cfg, t.hosts.hosts[i]
	setup := func(f *Failure) (*conn, *Failure, bool) {
		f.setup = true
		return nil, f, false
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	raw, err := t.dial(dctx, "tcp", h.Addr)
	cancel()
	if err != nil {
		return setup(classify(StageConnect, h.Addr, err))
	}
	tc := &timedConn{Conn: raw, block: cfg.BlockTimeout}
	tc.SetDeadline(time.Now().Add(cfg.CommandTimeout))
	br := bufio.NewReader(tc)
	tr := textproto.NewReader(br)
	fail := func(stage Stage, err error) (*conn, *Failure, bool) {
		raw.Close()
		return setup(replyFailure(stage, h.Addr, err))
	}
	// RFC 5321 section 4.2: a 554 (or any non-2xx) greeting means no
	// service here; the next MX host may give it (Postfix's
	// smtp_skip_5xx_greeting).
	if _, _, err := tr.ReadResponse(220); err != nil {
		return fail(StageHello, err)
	}
	ext, err := ehlo(tc, tr, cfg.Hostname)
	if err != nil {
		return fail(StageHello, err)
	}
	var out net.Conn = tc
	verified := false
	if tryTLS && ext["STARTTLS"] {
		if _, err := io.WriteString(tc, "STARTTLS\r\n"); err != nil {
			return fail(StageTLS, err)
		}
		if _, _, err := tr.ReadResponse(220); err != nil {
			// A refused STARTTLS (454, RFC 3207 section 4) is a failed
			// handshake to the opportunistic policy: clear text may
			// follow, on a new connection.
			c, f, _ := fail(StageTLS, err)
			return c, f, true
		}
		if br.Buffered() > 0 {
			// Bytes sent before the handshake would be taken as
			// protected (CVE-2011-0411's mirror on the client).
			return fail(StageTLS, errors.New("server sent data after its STARTTLS reply"))
		}
		tconn := tls.Client(tc, mxTLSConfig(h, pol, dh, &verified))
		if err := tconn.HandshakeContext(ctx); err != nil {
			raw.Close()
			_, f, _ := setup(&Failure{Stage: StageTLS, Relay: h.Addr, Err: err, Text: oneLine("TLS handshake: " + err.Error())})
			return nil, f, true
		}
		out = tconn
	} else if pol == route.TLSEncrypt || pol == route.TLSVerify {
		raw.Close()
		why := "the route requires TLS (tls=" + pol.String() + ")"
		if dh != nil {
			why = "DANE requires TLS (its TLSA records)"
		} else if t.mx.tls != pol || t.mx.tls == route.TLSVerify {
			why = "the policy requires TLS (tls=" + pol.String() + ")"
		}
		return setup(&Failure{Stage: StageTLS, Relay: h.Addr, Enhanced: "4.7.10",
			Text: "STARTTLS not offered and " + why})
	} else if br.Buffered() > 0 {
		return fail(StageHello, errors.New("server sent data after its EHLO reply"))
	}
	tc.SetDeadline(time.Time{})
	// go-smtp reads a greeting first: it gets a copy of the one read.
	c := smtp.NewClient(&greetedConn{Conn: out, greeting: "220 " + h.Name + " ESMTP\r\n"})
	c.CommandTimeout = cfg.CommandTimeout
	c.SubmissionTimeout = cfg.DataTimeout
	if err := c.Hello(cfg.Hostname); err != nil {
		c.Close()
		return setup(classify(StageHello, h.Addr, err))
	}
	// go-smtp sees the TLS connection through greetedConn, so it cannot
	// tell: whether STARTTLS ran is known here.
	_, isTLS := out.(*tls.Conn)
	level := slog.LevelDebug
	if isTLS && !verified {
		// RFC 7435: encrypted all the same, and said so.
		level = slog.LevelInfo
	}
	t.log.Log(ctx, level, "connected to MX host", "relay", h.Addr, "mx", h.Name, "tls", isTLS, "verified", verified)
	s := &conn{c: c, tc: tc, host: i, relay: h.Addr, tls: isTLS}
	s.utf8, _ = c.Extension("SMTPUTF8")
	s.eight, _ = c.Extension("8BITMIME")
	if n, ok := c.MaxMessageSize(); ok {
		s.max = int64(n)
	}
	return s, nil, false
}

// mxTLSConfig is the TLS configuration for MX host h under policy pol.
// With DANE records (dh) the certificate must match them (dane.Verify);
// under the verify policy it must be valid for h.Name (roots: the
// system's, or SSL_CERT_FILE); otherwise any certificate is taken, and
// whether it would have verified is written to *verified for the log.
func mxTLSConfig(h Host, pol route.TLSPolicy, dh *daneHost, verified *bool) *tls.Config {
	if dh != nil && len(dh.recs) > 0 {
		var also []string
		if dh.base != "" {
			also = []string{dh.base}
		}
		c := dane.TLSConfig(h.Name, dh.recs, also...)
		check := c.VerifyConnection
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			err := check(cs)
			*verified = err == nil
			return err
		}
		return c
	}
	c := &tls.Config{ServerName: h.Name, MinVersion: tls.VersionTLS12}
	if pol == route.TLSVerify {
		c.VerifyConnection = func(tls.ConnectionState) error {
			*verified = true
			return nil
		}
		return c
	}
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		opts := x509.VerifyOptions{DNSName: h.Name, Intermediates: x509.NewCertPool()}
		for _, ic := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(ic)
		}
		_, err := cs.PeerCertificates[0].Verify(opts)
		*verified = err == nil
		return nil
	}
	return c
}

// ehlo sends EHLO name and returns the extensions of the reply (RFC 5321
// section 4.1.1.1), keyed by their upper-case keyword. A server that
// does not know EHLO (500 or 502) gets HELO, and has no extensions (RFC
// 5321 section 3.2), as go-smtp does after it.
func ehlo(w io.Writer, tr *textproto.Reader, name string) (map[string]bool, error) {
	if _, err := io.WriteString(w, "EHLO "+name+"\r\n"); err != nil {
		return nil, err
	}
	_, msg, err := tr.ReadResponse(250)
	var pe *textproto.Error
	if errors.As(err, &pe) && (pe.Code == 500 || pe.Code == 502) {
		if _, err := io.WriteString(w, "HELO "+name+"\r\n"); err != nil {
			return nil, err
		}
		_, _, err = tr.ReadResponse(250)
		return map[string]bool{}, err
	}
	if err != nil {
		return nil, err
	}
	ext := map[string]bool{}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			ext[strings.ToUpper(f[0])] = true
		}
	}
	return ext, nil
}

// replyFailure turns an error of the exchange before go-smtp takes over
// into a Failure: a reply (a *textproto.Error) keeps its code and
// enhanced code, anything else is classified as a network error.
func replyFailure(stage Stage, relay string, err error) *Failure {
	var pe *textproto.Error
	if errors.As(err, &pe) {
		enh, text := splitEnhanced(oneLine(pe.Msg))
		return &Failure{Stage: stage, Relay: relay, Code: pe.Code, Enhanced: enh, Text: text}
	}
	return classify(stage, relay, err)
}

// greetedConn hands go-smtp a greeting that was already read from the
// connection, then the connection itself.
type greetedConn struct {
	net.Conn
	greeting string
}

// Read implements net.Conn: the greeting first.
func (g *greetedConn) Read(p []byte) (int, error) {
	if g.greeting != "" {
		n := copy(p, g.greeting)
		g.greeting = g.greeting[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}
