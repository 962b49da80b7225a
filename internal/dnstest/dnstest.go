// Package dnstest is the DNS server of the tests: github.com/miekg/dns
// (v1) on 127.0.0.1, UDP and TCP on one port, answering from records
// given in zone-file syntax, so that MX delivery can be tested offline
// against the resolver it really uses (send.NewResolver pointed at Addr,
// as SMTP_SEND_DNS does).
//
// It answers as a recursive resolver would (RA set: without it Go's
// resolver takes a NODATA answer for a lame referral): the records of
// the name and type asked, NOERROR with no answer (NODATA) for a name
// that has records of other types only, NXDOMAIN for a name with none,
// and SERVFAIL for a name set by ServFail; a CNAME is followed to its
// target's records; answers about zones set by Secure carry the AD bit,
// as from a validating resolver.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running test DNS server. Its methods are safe for
// concurrent use.
type Server struct {
	// Addr is "127.0.0.1:port", for UDP and TCP alike.
	Addr string

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool
	secure   []string // zones whose answers carry AD
	queries  []string // "name TYPE", in order
	udp, tcp *dns.Server
}

// Start starts a server on 127.0.0.1 with the records rrs (zone-file
// lines such as "example.test. MX 10 mx1.example.test.", TTL 60 unless
// given) and stops it when the test ends. A bad record fails the test.
func Start(t testing.TB, rrs ...string) *Server {
	t.Helper()
	s := &Server{rrs: map[string][]dns.RR{}, servfail: map[string]bool{}}
	s.Add(t, rrs...)
	// A free UDP port may be taken for TCP: try again with another.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if try == 20 {
				t.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
			}
		}
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-started
	<-started
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

// Add adds records (zone-file lines); a bad one fails the test.
func (s *Server) Add(t testing.TB, rrs ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range rrs {
		rr, err := dns.NewRR("$TTL 60\n" + line)
		if err != nil || rr == nil {
			t.Fatalf("dnstest: record %q: %v", line, err)
		}
		name := strings.ToLower(rr.Header().Name)
		s.rrs[name] = append(s.rrs[name], rr)
	}
}

// Remove removes the records of name (with or without the final dot)
// of type typ ("TXT", "MX", ...).
func (s *Server) Remove(name, typ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := strings.ToLower(dns.Fqdn(name))
	kept := s.rrs[n][:0]
	for _, rr := range s.rrs[n] {
		if dns.TypeToString[rr.Header().Rrtype] != typ {
			kept = append(kept, rr)
		}
	}
	s.rrs[n] = kept
}

// ServFail makes every question about name (with or without the final
// dot) get SERVFAIL, as from a resolver that cannot reach the domain's
// servers.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[strings.ToLower(dns.Fqdn(name))] = true
}

// Secure makes the answers about zone and the names under it
// authenticated (the AD bit set, as a validating resolver sets it for a
// DNSSEC-signed zone) when the query asks for DNSSEC (DO or AD set).
func (s *Server) Secure(zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secure = append(s.secure, strings.ToLower(dns.Fqdn(zone)))
}

// isSecure reports whether name is in a zone set by Secure.
func (s *Server) isSecure(name string) bool {
	for _, z := range s.secure {
		if dns.IsSubDomain(z, name) {
			return true
		}
	}
	return false
}

// Queries returns the questions asked so far, as "name TYPE" lines.
func (s *Server) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// serve answers one query.
func (s *Server) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	s.mu.Lock()
	for _, qu := range q.Question {
		name := strings.ToLower(qu.Name)
		s.queries = append(s.queries, name+" "+dns.TypeToString[qu.Qtype])
		wantsAD := q.AuthenticatedData || q.IsEdns0() != nil && q.IsEdns0().Do()
		secure := s.isSecure(name)
		// A CNAME is followed, as a recursive resolver does: the chain
		// and the target's records in the answer, authenticated only
		// when every name of it is in a secure zone.
		for hop := 0; ; hop++ {
			if s.servfail[name] {
				m.Rcode = dns.RcodeServerFailure
				break
			}
			if len(s.rrs[name]) == 0 {
				m.Rcode = dns.RcodeNameError
				break
			}
			var cname *dns.CNAME
			found := false
			for _, rr := range s.rrs[name] {
				if rr.Header().Rrtype == qu.Qtype {
					m.Answer = append(m.Answer, dns.Copy(rr))
					found = true
				} else if c, ok := rr.(*dns.CNAME); ok {
					cname = c
				}
			}
			if found || cname == nil || hop == 8 {
				break
			}
			m.Answer = append(m.Answer, dns.Copy(cname))
			name = strings.ToLower(cname.Target)
			secure = secure && s.isSecure(name)
		}
		if wantsAD && secure && m.Rcode != dns.RcodeServerFailure {
			m.AuthenticatedData = true
		}
	}
	s.mu.Unlock()
	w.WriteMsg(m)
}
