package send

import (
	"strings"
	"sync"
	"time"
)

// poolIdle is how long an idle connection to an MX host is kept for the
// next message: well inside the 5 minutes a server waits for our next
// command (RFC 5321 section 4.5.3.2.7), so that it is rarely gone when
// taken. A connection that is gone all the same costs one reconnection
// (txResult.reused).
const poolIdle = 60 * time.Second

// connPool holds a run's idle connections to MX hosts, shared by the
// workers, so that every message to a host goes over a connection that
// is already open when there is one: several messages to one domain, and
// to several domains whose MX host is the same (Postfix's scache does
// the same for its smtp processes). A connection is taken out while a
// worker uses it and put back after the message; a connection is only
// ever taken for the key it was made under (poolKey), so that mail is
// never carried by a connection made under a weaker TLS policy.
type connPool struct {
	// max is the most idle connections kept; the oldest is closed to
	// make room. A run keeps four per worker, at least 16: a worker
	// going from one MX host to another leaves one behind each time.
	max int

	mu   sync.Mutex
	idle []pooled // oldest first
}

// pooled is one idle connection.
type pooled struct {
	key   string
	c     *conn
	since time.Time // when it was put back (monotonic)
}

// get takes out the idle connection of key put back last, or returns nil
// when there is none; connections idle longer than poolIdle are closed
// on the way.
func (p *connPool) get(key string) *conn {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	var stale []*conn
	var got *conn
	now := time.Now()
	keep := p.idle[:0]
	for _, e := range p.idle {
		if now.Sub(e.since) > poolIdle {
			stale = append(stale, e.c)
			continue
		}
		keep = append(keep, e)
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	for i := len(p.idle) - 1; i >= 0; i-- {
		if p.idle[i].key == key {
			got = p.idle[i].c
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	quitAll(stale)
	return got
}

// put keeps c, made under key, for the next message; when the pool is
// full the oldest idle connection is closed.
func (p *connPool) put(key string, c *conn) {
	p.mu.Lock()
	var out *conn
	if len(p.idle) >= max(p.max, 1) {
		out = p.idle[0].c
		p.idle = append(p.idle[:0], p.idle[1:]...)
	}
	p.idle = append(p.idle, pooled{key: key, c: c, since: time.Now()})
	p.mu.Unlock()
	out.quit()
}

// close ends every idle connection (QUIT, in parallel): the run is over.
func (p *connPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	cs := make([]*conn, 0, len(p.idle))
	for _, e := range p.idle {
		cs = append(cs, e.c)
	}
	p.idle = nil
	p.mu.Unlock()
	quitAll(cs)
}

// quitAll ends the connections cs in parallel.
func quitAll(cs []*conn) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.quit()
		}()
	}
	wg.Wait()
}

// poolKey names what a connection to host i of an MX destination was
// made under: the address, the name the certificate was checked against
// and the TLS policy, with the DANE records that authenticated it. Two
// destinations whose connections to a host have the same key may share
// them.
func (t *smarthost) poolKey(i int) string {
	h := t.hosts.hosts[i]
	pol, dh := t.mx.hostPolicy(h.Name)
	var b strings.Builder
	b.WriteString(h.Addr + " " + h.Name + " tls=" + pol.String())
	if dh != nil {
		for _, r := range dh.recs {
			b.WriteString(" " + r.String())
		}
	}
	return b.String()
}
