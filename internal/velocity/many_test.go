package velocity

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// manyClient returns distinct client i: IPv4 addresses and IPv6 /64s in
// turn.
func manyClient(i int) netip.Addr {
	if i%2 == 0 {
		return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	}
	var a [16]byte
	copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8})
	binary.BigEndian.PutUint32(a[4:], uint32(i))
	a[15] = 1
	return netip.AddrFrom16(a)
}

// TestManyClients: with 1,000 and 5,000 distinct clients active in the
// window, one that goes over its limit is refused, one under it is not,
// and every one is still counted exactly: none forgotten, none sharing
// another's counts.
func TestManyClients(t *testing.T) {
	for _, n := range []int{1000, 5000} {
		path := statePath(t)
		lim := Limits{Window: time.Minute, MaxSessions: 1 << 20, MaxPerClient: 3}
		// The first session of each, spread over 50 seconds: client 0
		// is the one seen least recently.
		for i := range n {
			d := mustCheck(t, path, manyClient(i), at(int64(i*50/n)), lim)
			if !d.Allowed || d.ClientCount != 1 {
				t.Fatalf("n=%d: first session of client %d: %+v", n, i, d)
			}
		}
		over, under := manyClient(0), manyClient(n/2)
		expect(t, path, over, at(55), lim, Decision{Allowed: true, Count: n + 1, ClientCount: 2})
		expect(t, path, over, at(55), lim, Decision{Allowed: true, Count: n + 2, ClientCount: 3})
		expect(t, path, over, at(55), lim, Decision{Reason: ReasonClient, Count: n + 3, ClientCount: 4})
		expect(t, path, under, at(56), lim, Decision{Allowed: true, Count: n + 4, ClientCount: 2})
		// Every other client's second session is its second.
		for i := 1; i < n; i++ {
			if i == n/2 {
				continue
			}
			d := mustCheck(t, path, manyClient(i), at(57), lim)
			if !d.Allowed || d.ClientCount != 2 {
				t.Fatalf("n=%d: second session of client %d: %+v", n, i, d)
			}
		}
		h := readState(t, path)
		if h.evicted() != 0 {
			t.Errorf("n=%d: %d clients forgotten", n, h.evicted())
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() > fileSize {
			t.Errorf("n=%d: state file %v %v", n, fi.Size(), err)
		}
	}
}

// oracle is the exact model of the per-client count: every session
// remembered, counted while its 4-second bucket is one of the last
// nBuckets, a full bucket counted as more than any limit.
type oracle map[netip.Addr][]int64

func (o oracle) record(c netip.Addr, t int64) int {
	o[c] = append(o[c], t)
	per := map[int64]int{}
	for _, s := range o[c] {
		if bucketOf(t)-bucketOf(s) < nBuckets {
			per[bucketOf(s)]++
		}
	}
	n := 0
	for _, k := range per {
		if k >= 255 {
			k = MaxClientRate + 1
		}
		n += k
	}
	return n
}

// exactMinute is the number of sessions of c in the 60 seconds ending at t.
func (o oracle) exactMinute(c netip.Addr, t int64) int {
	n := 0
	for _, s := range o[c] {
		if t-s < 60 {
			n++
		}
	}
	return n
}

// checker records one session and decides it, as Check does; evicted
// returns the number of clients it forgot.
type checker interface {
	check(t *testing.T, c netip.Addr, now time.Time, lim Limits) Decision
	evicted(t *testing.T) uint64
}

// fileState is the state file, through Check.
type fileState string

func (f fileState) check(t *testing.T, c netip.Addr, now time.Time, lim Limits) Decision {
	t.Helper()
	return mustCheck(t, string(f), c, now, lim)
}

func (f fileState) evicted(t *testing.T) uint64 {
	if _, err := os.Stat(string(f)); err != nil {
		return 0
	}
	return readState(t, string(f)).evicted()
}

// memState is the state of the file in memory: the same pages and the
// same record, without the system calls, for fuzzing at speed.
type memState struct {
	h    header
	sets [1 + nSets]set
}

func (m *memState) check(_ *testing.T, c netip.Addr, now time.Time, lim Limits) Decision {
	num, fp := hashClient(m.h.key(), keyOf(c))
	return record(&m.h, &m.sets[num], now, lim, fp, true)
}

func (m *memState) evicted(*testing.T) uint64 { return m.h.evicted() }

// runOracle runs the sessions ops describes against st and the oracle:
// each op is a client number and a step forward of the clock, in seconds.
// The per-client count must equal the model's and never be below the
// exact count of the last minute, and the global count must be exact.
func runOracle(t *testing.T, st checker, ops [][2]int) {
	lim := Limits{Window: 17 * time.Second, MaxSessions: 1 << 20, MaxPerClient: 20}
	o := oracle{}
	var all []int64
	now := int64(0)
	for i, op := range ops {
		now += int64(op[1])
		c := manyClient(op[0])
		d := st.check(t, c, at(now), lim)
		want := o.record(c, base+now)
		all = append(all, now)
		global := 0
		for _, s := range all {
			if now-s < 17 {
				global++
			}
		}
		if d.ClientCount != want || d.Count != global || d.Allowed != (want <= 20) {
			t.Fatalf("op %d (client %d at %d): %+v, want client count %d, count %d", i, op[0], now, d, want, global)
		}
		// Past MaxClientRate the count only has to be over any limit.
		if exact := min(o.exactMinute(c, base+now), MaxClientRate+1); d.ClientCount < exact {
			t.Fatalf("op %d: client count %d below the exact %d of the last minute", i, d.ClientCount, exact)
		}
	}
	if ev := st.evicted(t); ev != 0 {
		t.Fatalf("%d clients forgotten", ev)
	}
}

// TestAgainstOracle: random traffic through the state file, from a few
// busy clients to thousands of quiet ones, held to the exact model.
func TestAgainstOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ clients, ops, maxStep int }{
		{1, 600, 0},      // one client, one bucket: the counter saturates
		{3, 2000, 2},     // a few clients, many sessions each
		{50, 3000, 3},    // busy
		{3000, 4000, 1},  // many quiet clients
		{200, 2000, 130}, // long gaps
	} {
		ops := make([][2]int, c.ops)
		for i := range ops {
			ops[i] = [2]int{r.IntN(c.clients), r.IntN(c.maxStep + 1)}
			if c.maxStep == 1 && r.IntN(4) != 0 {
				ops[i][1] = 0
			}
		}
		runOracle(t, fileState(statePath(t)), ops)
	}
}

// FuzzAgainstOracle: any sequence of up to 2,000 sessions, on the pages
// in memory; each three bytes are a client (of up to 4,096) and a step of
// the clock (0 to 15 seconds, or 100).
func FuzzAgainstOracle(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 1, 1, 0, 5, 0, 0, 255})
	f.Add(make([]byte, 3*300))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ops [][2]int
		for ; len(b) >= 3 && len(ops) < 2000; b = b[3:] {
			step := int(b[2] & 15)
			if b[2] >= 0xf0 {
				step = 100
			}
			ops = append(ops, [2]int{int(binary.LittleEndian.Uint16(b) & 4095), step})
		}
		m := &memState{}
		binary.LittleEndian.PutUint64(m.h.key(), uint64(len(ops))*0x9e3779b97f4a7c15)
		runOracle(t, m, ops)
	})
}

// TestNotARegularFile: a FIFO planted in place of the state file neither
// hangs the session nor is written to; Check reports it.
func TestNotARegularFile(t *testing.T) {
	path := statePath(t)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Check(path, clientA, at(0), Limits{MaxPerClient: 1})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a FIFO taken for the state file")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Check hangs on a FIFO")
	}
}

// BenchmarkCheckManyClients is BenchmarkCheck with 5,000 clients in
// turn: the cost does not grow with the number of clients.
func BenchmarkCheckManyClients(b *testing.B) {
	path := statePath(b)
	lim := Limits{Window: time.Minute, MaxSessions: 1 << 30, MaxPerClient: MaxClientRate}
	i := 0
	for b.Loop() {
		d, err := Check(path, manyClient(i%5000), at(int64(i/100)), lim)
		if err != nil || !d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
		i++
	}
}
