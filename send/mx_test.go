package send

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/dnstest"
	"github.com/smtp-stdio/smtp-stdio/internal/testutil/smtptest"
	"github.com/smtp-stdio/smtp-stdio/protocol"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/route"
)

// mxFixture is a fixture without a smarthost, whose DNS is a dnstest
// server and whose dialler sends each "ip:25" to the smtptest server
// registered for that address (an address with none is refused).
type mxFixture struct {
	*fixture
	dns   *dnstest.Server
	hosts map[string]string // "127.0.0.2:25" -> the server's address
}

func newMXFixture(t *testing.T, rrs ...string) *mxFixture {
	f := &mxFixture{fixture: newFixture(t), dns: dnstest.Start(t, rrs...), hosts: map[string]string{}}
	f.s.Resolver = NewResolver(f.dns.Addr)
	f.s.Config.MXLoopback = true
	refused := refusedAddr(t)
	d := &net.Dialer{}
	f.s.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		f.mu.Lock()
		f.dials[addr]++
		to, ok := f.hosts[addr]
		f.mu.Unlock()
		if !ok {
			to = refused
		}
		return d.DialContext(ctx, network, to)
	}
	return f
}

// serve makes ip's port 25 the server srv.
func (f *mxFixture) serve(ip string, srv *smtptest.Server) {
	f.mu.Lock()
	f.hosts[ip+":25"] = srv.Addr
	f.mu.Unlock()
}

// MX order and failover: the first MX refuses connections, the second
// defers MAIL (so the third is tried), the third takes both recipients
// of its domain in one transaction; another domain's recipient goes to
// its own MX on its own connection; an error route bounces at once.
func TestMXDeliveryOrderAndGrouping(t *testing.T) {
	f := newMXFixture(t,
		"a.test. MX 10 mx1.a.test.", "a.test. MX 20 mx2.a.test.", "a.test. MX 30 mx3.a.test.",
		"mx1.a.test. A 127.0.0.2", "mx2.a.test. A 127.0.0.3", "mx3.a.test. A 127.0.0.4",
		"b.test. A 127.0.0.5")
	busy := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Mail: func(*smtptest.Conn, string) *protocol.Reply {
		return smtptest.Reply(451, "4.3.2", "busy")
	}}})
	good, other := smtptest.Start(t, smtptest.Options{}), smtptest.Start(t, smtptest.Options{})
	f.serve("127.0.0.3", busy)
	f.serve("127.0.0.4", good)
	f.serve("127.0.0.5", other)
	tb, err := route.Parse(strings.NewReader("closed.test error:5.7.1 closed for good\n* smtp:\n"), "routes")
	if err != nil {
		t.Fatal(err)
	}
	f.s.Config.Routes = tb
	id := f.queue("s@example.org", []string{"x@a.test", "z@b.test", "w@closed.test", "y@A.test"}, body("mx"))
	st := f.run(false)
	if st.Delivered != 3 || st.Failed != 1 || st.DSNs != 1 {
		t.Fatalf("stats %+v", st)
	}
	txs := good.Transactions()
	if len(txs) != 1 || !slices.Equal(txs[0].To, []string{"x@a.test", "y@A.test"}) || !strings.Contains(string(txs[0].Data), "Subject: mx") {
		t.Errorf("mx3 got %+v", txs)
	}
	if txs := other.Transactions(); len(txs) != 1 || !slices.Equal(txs[0].To, []string{"z@b.test"}) {
		t.Errorf("b.test's implicit MX got %+v", txs)
	}
	if n := len(busy.Transactions()); n != 0 || busy.Conns() != 1 {
		t.Errorf("busy MX: %d transactions, %d connections", n, busy.Conns())
	}
	if n := f.dialCount("127.0.0.2:25"); n != 1 {
		t.Errorf("refusing MX dialled %d times", n)
	}
	if f.state(id) != nil || !slices.Contains(f.names("failed"), id) {
		t.Errorf("state %v, failed/ %v", f.state(id), f.names("failed"))
	}
	bounces := f.queuedFrom("")
	if len(bounces) != 1 || !strings.Contains(content(t, bounces[0]), "5.7.1") || !strings.Contains(content(t, bounces[0]), "closed for good") {
		t.Errorf("bounce: %d", len(bounces))
	}
}

// A null MX bounces at once with 5.1.10 and nothing is dialled; a
// SERVFAIL defers without a bounce, and counts towards expiry.
func TestMXNullAndServfail(t *testing.T) {
	f := newMXFixture(t, "null.test. MX 0 .")
	f.dns.ServFail("down.test")
	id := f.queue("s@example.org", []string{"a@null.test", "b@down.test"}, body("x"))
	st := f.run(false)
	if st.Failed != 1 || st.Deferred != 1 || st.DSNs != 1 || len(f.dials) != 0 {
		t.Fatalf("stats %+v, dials %v", st, f.dials)
	}
	s := f.state(id)
	if s == nil || s.Rcpts[0].Status != queue.Failed || s.Rcpts[0].Enhanced != "5.1.10" || s.Rcpts[0].Code != 556 ||
		s.Rcpts[1].Status != queue.Pending || s.Rcpts[1].Enhanced != "4.4.3" {
		t.Fatalf("state %+v", s)
	}
	// Past the queue lifetime the deferred recipient expires: a DNS
	// failure of the destination is not ours, as a smarthost's would be.
	f.s.Config.QueueLifetime, f.s.Config.MinAttempts = 1, 1
	f.clk.Add(2 * f.s.Config.withDefaults().BackoffMax)
	f.run(true)
	if f.state(id) != nil || !slices.Contains(f.names("failed"), id) ||
		!strings.Contains(f.logs.String(), "rcpt=b@down.test status=expired") {
		t.Errorf("not expired: %v", f.names("failed"))
	}
}

// Opportunistic TLS: STARTTLS with a certificate no one can verify still
// encrypts; a handshake that fails is followed by clear text under the
// default policy, and by nothing under tls=encrypt or tls=verify, which
// defer instead.
func TestMXOpportunisticTLS(t *testing.T) {
	srvConf, _ := testCA(t)
	old := srvConf.Clone()
	old.MaxVersion = tls.VersionTLS11 // below our minimum: the handshake fails
	for _, tc := range []struct {
		name   string
		conf   *tls.Config
		policy string
		tls    bool // delivered over TLS
		ok     bool // delivered
	}{
		{"self-signed", srvConf, "", true, true},
		{"handshake-fails", old, "", false, true},
		{"handshake-fails-encrypt", old, " tls=encrypt", false, false},
		{"unverified-verify", srvConf, " tls=verify", false, false},
		{"unverified-encrypt", srvConf, " tls=encrypt", true, true},
		{"none", srvConf, " tls=none", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newMXFixture(t, "t.test. MX 10 mx.test.", "mx.test. A 127.0.0.2")
			srv := smtptest.Start(t, smtptest.Options{StartTLS: tc.conf})
			f.serve("127.0.0.2", srv)
			tb, err := route.Parse(strings.NewReader("t.test smtp:"+tc.policy+"\n"), "routes")
			if err != nil {
				t.Fatal(err)
			}
			f.s.Config.Routes = tb
			f.queue("s@example.org", []string{"a@t.test"}, body("tls"))
			st := f.run(false)
			txs := srv.Transactions()
			if tc.ok != (st.Delivered == 1) || tc.ok != (len(txs) == 1) || tc.ok && txs[0].TLS != tc.tls {
				t.Errorf("stats %+v, transactions %+v", st, txs)
			}
			if !tc.ok && st.Deferred != 1 {
				t.Errorf("not deferred: %+v", st)
			}
		})
	}
}

// With a route table and a smarthost, the table decides and the
// smarthost takes what no line matches; without a table the smarthost
// takes everything, with no DNS question asked.
func TestRoutesWithSmarthost(t *testing.T) {
	relay := smtptest.Start(t, smtptest.Options{})
	mx := smtptest.Start(t, smtptest.Options{})
	f := newMXFixture(t, "direct.test. A 127.0.0.2")
	f.serve("127.0.0.2", mx)
	f.hosts[relay.Addr] = relay.Addr
	f.s.Config.Smarthosts = []Host{{Addr: relay.Addr, Name: "127.0.0.1"}}
	f.queue("s@example.org", []string{"a@direct.test", "b@elsewhere.test"}, body("x"))
	f.run(false)
	if n := len(f.dns.Queries()); n != 0 || len(mx.Transactions()) != 0 || len(relay.Transactions()) != 1 {
		t.Fatalf("without a table: %d DNS queries, MX %d, smarthost %d", n, len(mx.Transactions()), len(relay.Transactions()))
	}
	tb, err := route.Parse(strings.NewReader("direct.test smtp:\n"), "routes")
	if err != nil {
		t.Fatal(err)
	}
	f.s.Config.Routes = tb
	f.queue("s@example.org", []string{"a@direct.test", "b@elsewhere.test"}, body("y"))
	f.run(false)
	if txs := mx.Transactions(); len(txs) != 1 || !slices.Equal(txs[0].To, []string{"a@direct.test"}) {
		t.Errorf("MX got %+v", txs)
	}
	if txs := relay.Transactions(); len(txs) != 2 || !slices.Equal(txs[1].To, []string{"b@elsewhere.test"}) {
		t.Errorf("smarthost got %+v", txs)
	}
}

// A server that does not know EHLO (502) gets HELO, with no extensions;
// one that refuses it otherwise is a failure with its reply.
func TestEHLOFallsBackToHELO(t *testing.T) {
	for _, tc := range []struct {
		ehloReply string
		ok        bool
	}{
		{"502 5.5.1 unknown command", true},
		{"500 syntax error", true},
		{"421 4.3.2 go away", false},
	} {
		c, s := net.Pipe()
		var seen []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			r := bufio.NewReader(s)
			for _, reply := range []string{tc.ehloReply, "250 hello"} {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				seen = append(seen, strings.TrimSpace(l))
				io.WriteString(s, reply+"\r\n")
				if !tc.ok {
					return
				}
			}
		}()
		ext, err := ehlo(c, textproto.NewReader(bufio.NewReader(c)), "me.test")
		c.Close()
		<-done
		s.Close()
		want := []string{"EHLO me.test", "HELO me.test"}
		if !tc.ok {
			want = want[:1]
		}
		if (err == nil) != tc.ok || tc.ok && len(ext) != 0 || !slices.Equal(seen, want) {
			t.Errorf("%s: ext %v, err %v, commands %q", tc.ehloReply, ext, err, seen)
		}
	}
}

// An MX host that offers STARTTLS and then refuses it (454) gets the mail
// in clear text under the default policy, on a new connection, and none
// under tls=encrypt.
func TestMXStartTLSRefused(t *testing.T) {
	for _, policy := range []string{"", " tls=encrypt"} {
		f := newMXFixture(t, "t.test. MX 10 mx.test.", "mx.test. A 127.0.0.2")
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		srv := smtptest.Start(t, smtptest.Options{})
		// A proxy that offers STARTTLS on the first connection, refuses it
		// with 454 and hangs up; later connections go to srv.
		first := make(chan struct{}, 1)
		first <- struct{}{}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				select {
				case <-first:
					go func() {
						defer c.Close()
						r := bufio.NewReader(c)
						io.WriteString(c, "220 mx.test ESMTP\r\n")
						r.ReadString('\n')
						io.WriteString(c, "250-mx.test\r\n250 STARTTLS\r\n")
						r.ReadString('\n')
						io.WriteString(c, "454 4.7.0 TLS not available now\r\n")
						r.ReadString('\n')
					}()
				default:
					go func() {
						defer c.Close()
						s, err := net.Dial("tcp", srv.Addr)
						if err != nil {
							return
						}
						defer s.Close()
						go io.Copy(s, c)
						io.Copy(c, s)
					}()
				}
			}
		}()
		f.mu.Lock()
		f.hosts["127.0.0.2:25"] = ln.Addr().String()
		f.mu.Unlock()
		tb, err := route.Parse(strings.NewReader("t.test smtp:"+policy+"\n"), "routes")
		if err != nil {
			t.Fatal(err)
		}
		f.s.Config.Routes = tb
		f.queue("s@example.org", []string{"a@t.test"}, body("x"))
		st := f.run(false)
		if want := policy == ""; (st.Delivered == 1) != want || (len(srv.Transactions()) == 1) != want {
			t.Errorf("policy %q: stats %+v", policy, st)
		}
	}
}

// Connection reuse: within a run, messages to one destination share one
// connection, and so do destinations whose MX host is the same, even with
// another destination's message in between; with several workers, an MX
// host gets no more connections than there are workers. The next run
// connects anew.
func TestMXConnectionReuse(t *testing.T) {
	f := newMXFixture(t, "a.test. MX 10 mx.shared.test.", "b.test. MX 10 mx.shared.test.",
		"mx.shared.test. A 127.0.0.2", "c.test. A 127.0.0.3")
	shared, c := smtptest.Start(t, smtptest.Options{}), smtptest.Start(t, smtptest.Options{})
	f.serve("127.0.0.2", shared)
	f.serve("127.0.0.3", c)
	for _, to := range []string{"r1@a.test", "r2@a.test", "r3@c.test", "r4@b.test", "r5@a.test", "r6@b.test"} {
		f.queue("s@example.org", []string{to}, body("x"))
		f.clk.Add(time.Second)
	}
	if st := f.run(false); st.Delivered != 6 {
		t.Fatalf("stats %+v", st)
	}
	if len(shared.Transactions()) != 5 || shared.Conns() != 1 {
		t.Errorf("mx.shared.test: %d transactions over %d connections, want 5 over 1", len(shared.Transactions()), shared.Conns())
	}
	if len(c.Transactions()) != 1 || c.Conns() != 1 {
		t.Errorf("c.test: %d transactions over %d connections", len(c.Transactions()), c.Conns())
	}

	f.s.Config.Connections = 3
	for i := range 30 {
		f.queue("s@example.org", []string{fmt.Sprintf("r%d@%c.test", i, 'a'+i%3)}, body("x"))
		f.clk.Add(time.Second)
	}
	if st := f.run(false); st.Delivered != 30 {
		t.Fatalf("stats %+v", st)
	}
	// a.test and b.test: 20 messages over at most 3 more connections;
	// c.test: 10 over at most 3.
	if n, cs := len(shared.Transactions()), shared.Conns(); n != 25 || cs < 2 || cs > 4 {
		t.Errorf("mx.shared.test: %d transactions over %d connections, want 25 over 2 to 4", n, cs)
	}
	if n, cs := len(c.Transactions()), c.Conns(); n != 11 || cs < 2 || cs > 4 {
		t.Errorf("c.test: %d transactions over %d connections, want 11 over 2 to 4", n, cs)
	}
}

// An MX address that timed out is remembered across runs for a while
// (qmail's tcpto): the next runs go to the next MX at once, or defer
// without dialling; after downFor it is tried again. A refused
// connection is not remembered.
func TestMXTimeoutRememberedAcrossRuns(t *testing.T) {
	f := newMXFixture(t, "a.test. MX 10 mx1.a.test.", "a.test. MX 20 mx2.a.test.",
		"mx1.a.test. A 127.0.0.2", "mx2.a.test. A 127.0.0.3")
	f.s.Config.ConnectTimeout = 100 * time.Millisecond
	f.s.Config.BackoffMin, f.s.Config.BackoffMax = time.Minute, time.Minute
	dial := f.s.Dial
	f.s.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == "127.0.0.2:25" { // a black hole: the connection times out
			f.mu.Lock()
			f.dials[addr]++
			f.mu.Unlock()
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return dial(ctx, network, addr) // 127.0.0.3 refuses
	}
	f.queue("s@example.org", []string{"a@a.test"}, body("x"))
	f.run(false)
	if f.dialCount("127.0.0.2:25") != 1 || f.dialCount("127.0.0.3:25") != 1 {
		t.Fatalf("first run: dials %v", f.dials)
	}
	if _, err := os.Stat(f.sp.Path("mx-down")); err != nil {
		t.Fatalf("nothing remembered: %v", err)
	}
	f.clk.Add(5 * time.Minute)
	f.run(true)
	if f.dialCount("127.0.0.2:25") != 1 || f.dialCount("127.0.0.3:25") != 2 ||
		!strings.Contains(f.logs.String(), "MX host skipped: it timed out in an earlier run") {
		t.Errorf("second run: dials %v", f.dials)
	}
	f.clk.Add(downFor)
	f.run(true)
	if f.dialCount("127.0.0.2:25") != 2 {
		t.Errorf("after downFor: dials %v", f.dials)
	}
}

// The per-destination concurrency limit: a.test's MX stalls at the end
// of the data; with 4 workers and at most 2 per destination, b.test's
// mail (one message of it also for a.test) is delivered while a.test's
// are stuck, and a.test never has more than 2 connections. When a.test
// answers, the rest of its mail follows in the same run, each message in
// one attempt.
func TestMXDestinationConcurrency(t *testing.T) {
	f := newMXFixture(t, "a.test. A 127.0.0.2", "b.test. A 127.0.0.3")
	stall := make(chan struct{})
	slow := smtptest.Start(t, smtptest.Options{Script: smtptest.Script{Data: func(*smtptest.Conn, []byte) *protocol.Reply {
		select {
		case <-stall:
		case <-time.After(20 * time.Second):
		}
		return nil
	}}})
	fast := smtptest.Start(t, smtptest.Options{})
	f.serve("127.0.0.2", slow)
	f.serve("127.0.0.3", fast)
	f.s.Config.Connections, f.s.Config.DestinationConcurrency = 4, 2
	f.s.Config.DataTimeout = time.Minute // a.test stalls longer than the wait below
	for i := range 6 {
		f.queue("s@example.org", []string{fmt.Sprintf("a%d@a.test", i)}, body("a"))
		f.clk.Add(time.Second)
	}
	both := f.queue("s@example.org", []string{"x@a.test", "y@b.test"}, body("both"))
	f.clk.Add(time.Second)
	for i := range 3 {
		f.queue("s@example.org", []string{fmt.Sprintf("b%d@b.test", i)}, body("b"))
		f.clk.Add(time.Second)
	}
	done := make(chan Stats)
	go func() {
		st, err := f.s.Run(context.Background(), false)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- st
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(fast.Transactions()) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n, stuck := len(fast.Transactions()), slow.Datas(); n != 4 || stuck != 2 || len(slow.Transactions()) != 0 {
		t.Errorf("while a.test stalls: b.test got %d messages (want 4), a.test holds %d (want 2)", n, stuck)
	}
	close(stall)
	st := <-done
	if st.Delivered != 11 || st.Started != 10 || st.Left != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := len(slow.Transactions()); n != 7 || slow.Conns() > 2 {
		t.Errorf("a.test: %d messages over %d connections, want 7 over at most 2", n, slow.Conns())
	}
	if f.state(both) != nil || strings.Contains(f.logs.String(), "attempts=2") {
		t.Errorf("a message counted two attempts in one run, or kept a state: %v", f.state(both))
	}
}

// Hosts of equal MX preference share a run's connections (RFC 5321
// section 5.1; Postfix's smtp_randomize_addresses): each new connection
// starts at one of them at random, so neither takes all the mail, and a
// less preferred host takes none while they answer.
func TestEqualPreferenceSpreadInRun(t *testing.T) {
	f := newMXFixture(t, "a.test. MX 10 mx1.a.test.", "a.test. MX 10 mx2.a.test.", "a.test. MX 20 mx3.a.test.",
		"mx1.a.test. A 127.0.0.2", "mx2.a.test. A 127.0.0.3", "mx3.a.test. A 127.0.0.4")
	mx1, mx2, mx3 := smtptest.Start(t, smtptest.Options{}), smtptest.Start(t, smtptest.Options{}), smtptest.Start(t, smtptest.Options{})
	f.serve("127.0.0.2", mx1)
	f.serve("127.0.0.3", mx2)
	f.serve("127.0.0.4", mx3)
	f.s.Config.NoReuse = true // a new connection, and a new choice, per message
	const n = 24
	for i := range n {
		f.queue("s@example.org", []string{fmt.Sprintf("r%d@a.test", i)}, body("x"))
		f.clk.Add(time.Second)
	}
	if st := f.run(false); st.Delivered != n {
		t.Fatalf("stats %+v", st)
	}
	// Each host gets half on average; all 24 to one has odds 2^-23.
	n1, n2 := len(mx1.Transactions()), len(mx2.Transactions())
	if n1+n2 != n || n1 == 0 || n2 == 0 {
		t.Errorf("mx1 %d, mx2 %d transactions of %d: the equal-preference hosts did not share them", n1, n2, n)
	}
	if n3 := len(mx3.Transactions()); n3 != 0 {
		t.Errorf("mx3 (preference 20) took %d messages while mx1 and mx2 were up", n3)
	}
}
