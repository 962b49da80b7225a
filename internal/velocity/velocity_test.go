package velocity

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// base is an arbitrary Unix second, far from zero.
const base = 1_700_000_000

func at(sec int64) time.Time { return time.Unix(base+sec, 0) }

var (
	clientA = netip.MustParseAddr("192.0.2.1")
	clientB = netip.MustParseAddr("192.0.2.2")
)

func statePath(t testing.TB) string { return filepath.Join(t.TempDir(), "velocity") }

// mustCheck runs Check and fails the test on an error.
func mustCheck(t *testing.T, path string, c netip.Addr, now time.Time, lim Limits) Decision {
	t.Helper()
	d, err := Check(path, c, now, lim)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// expect checks one session's decision.
func expect(t *testing.T, path string, c netip.Addr, now time.Time, lim Limits, want Decision) {
	t.Helper()
	if d := mustCheck(t, path, c, now, lim); d != want {
		t.Fatalf("%v from %v: got %+v, want %+v", now.Unix()-base, c, d, want)
	}
}

// readState returns the header of the state file at path, failing the
// test if it is not valid or the file is larger than fileSize.
func readState(t *testing.T, path string) *header {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var h header
	if copy(h.page[:], b) != pageSize || !h.valid() || len(b) > fileSize {
		t.Fatalf("state file does not start with a valid header (%d bytes)", len(b))
	}
	return &h
}

func TestLayout(t *testing.T) {
	if offRing+4*ringLen > pageSize || offEvicted+8 > offRing || offKey+keySize > offEvicted {
		t.Errorf("header layout: ring ends at %d", offRing+4*ringLen)
	}
	if offSlots+slotsPerSet*slotSize > pageSize || slotsPerSet != 127 {
		t.Errorf("set layout: %d slots end at %d", slotsPerSet, offSlots+slotsPerSet*slotSize)
	}
	if fileSize > 256<<10 || MaxClients < 8000 {
		t.Errorf("%d bytes for %d clients", fileSize, MaxClients)
	}
	// A session counts for at least ClientWindow.
	if (nBuckets-1)*bucketSec < 60 || ClientWindow != time.Minute {
		t.Errorf("client window %v in %d buckets of %ds", ClientWindow, nBuckets, bucketSec)
	}
	if base%bucketSec != 0 {
		t.Errorf("base is not the start of a bucket")
	}
}

func TestOffDoesNotTouchFile(t *testing.T) {
	path := statePath(t)
	for _, c := range []struct {
		client netip.Addr
		lim    Limits
	}{
		{clientA, Limits{}},
		{clientA, Limits{Window: time.Minute}},
		// A local session has no address: a per-client limit does
		// not apply to it.
		{netip.Addr{}, Limits{MaxPerClient: 5}},
	} {
		d, err := Check(path, c.client, at(0), c.lim)
		if err != nil || !d.Allowed {
			t.Errorf("%+v: %+v, %v", c, d, err)
		}
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file touched: %v", err)
	}
	// Not even a bad path is looked at.
	if _, err := Check("/nonexistent/dir/velocity", clientA, at(0), Limits{}); err != nil {
		t.Error(err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		lim Limits
		ok  bool
	}{
		{Limits{}, true},
		{Limits{Window: time.Second, MaxSessions: 1}, true},
		{Limits{Window: MaxWindow, MaxSessions: 1, MaxPerClient: MaxClientRate}, true},
		{Limits{MaxPerClient: 10}, true}, // no window needed
		{Limits{MaxSessions: 1}, false},
		{Limits{Window: 1500 * time.Millisecond, MaxSessions: 1}, false},
		{Limits{Window: MaxWindow + time.Second, MaxSessions: 1}, false},
		{Limits{MaxPerClient: MaxClientRate + 1}, false},
		{Limits{MaxSessions: -1}, false},
	} {
		if err := c.lim.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.lim, err)
		}
		if _, err := Check(statePath(t), clientA, at(0), c.lim); (err == nil) != c.ok {
			t.Errorf("Check %+v: %v", c.lim, err)
		}
	}
}

// TestGlobalWindowBoundary: N sessions allowed, the N+1st refused, and
// allowed again exactly when the first ones slide out of the window.
func TestGlobalWindowBoundary(t *testing.T) {
	path := statePath(t)
	lim := Limits{Window: 10 * time.Second, MaxSessions: 3}
	for i := 1; i <= 3; i++ {
		expect(t, path, clientA, at(0), lim, Decision{Allowed: true, Count: i})
	}
	expect(t, path, clientB, at(0).Add(999*time.Millisecond), lim, Decision{Reason: ReasonGlobal, Count: 4})
	// The last second of the window still holds second 0's four.
	expect(t, path, clientB, at(9).Add(999*time.Millisecond), lim, Decision{Reason: ReasonGlobal, Count: 5})
	// Second 0 has left; second 9's refused attempt still counts.
	expect(t, path, clientB, at(10), lim, Decision{Allowed: true, Count: 2})
	expect(t, path, clientB, at(10), lim, Decision{Allowed: true, Count: 3})
	expect(t, path, clientB, at(10), lim, Decision{Reason: ReasonGlobal, Count: 4})
	if p := readState(t, path); p.total() != 8 {
		t.Errorf("total %d, want 8", p.total())
	}
}

// TestGlobalSlidingCount: one session a second; the count is exactly the
// sessions of the last Window seconds.
func TestGlobalSlidingCount(t *testing.T) {
	path := statePath(t)
	lim := Limits{Window: 5 * time.Second, MaxSessions: 5}
	for s := int64(0); s < 20; s++ {
		expect(t, path, clientA, at(s), lim, Decision{Allowed: true, Count: int(min(s+1, 5))})
	}
	// A gap longer than the ring forgets everything.
	expect(t, path, clientA, at(20+ringLen+7), lim, Decision{Allowed: true, Count: 1})
}

func TestPerClient(t *testing.T) {
	path := statePath(t)
	lim := Limits{MaxPerClient: 2}
	expect(t, path, clientA, at(0), lim, Decision{Allowed: true, ClientCount: 1})
	expect(t, path, clientA, at(30), lim, Decision{Allowed: true, ClientCount: 2})
	expect(t, path, clientA, at(30), lim, Decision{Reason: ReasonClient, ClientCount: 3})
	// Another client is not affected.
	expect(t, path, clientB, at(31), lim, Decision{Allowed: true, ClientCount: 1})
	// The session of second 0, in the bucket of seconds 0 to 3, counts
	// until second 63 and has gone at 64.
	expect(t, path, clientA, at(63), lim, Decision{Reason: ReasonClient, ClientCount: 4})
	expect(t, path, clientA, at(64), lim, Decision{Reason: ReasonClient, ClientCount: 4})
	// At 127 only second 64's attempt is left (63's bucket ended at 124).
	expect(t, path, clientA, at(127), lim, Decision{Allowed: true, ClientCount: 2})
	// A local session is counted globally only.
	expect(t, path, netip.Addr{}, at(127), Limits{MaxPerClient: 1, Window: time.Second, MaxSessions: 10},
		Decision{Allowed: true, Count: 2})
}

// TestPerClientWindowEdges: a session counts for 61 to 64 seconds, by
// its place in its 4-second bucket; never less than a minute.
func TestPerClientWindowEdges(t *testing.T) {
	lim := Limits{MaxPerClient: 1}
	for off := int64(0); off < bucketSec; off++ {
		path := statePath(t)
		expect(t, path, clientA, at(off), lim, Decision{Allowed: true, ClientCount: 1})
		// Still counted one second before the bucket's end ...
		expect(t, path, clientB, at(0), lim, Decision{Allowed: true, ClientCount: 1})
		expect(t, path, clientA, at(63), lim, Decision{Reason: ReasonClient, ClientCount: 2})
		if 63-off < 60 {
			t.Fatalf("counted for less than a minute")
		}
		// ... and gone at its end, 64 - off seconds later.
		path = statePath(t)
		expect(t, path, clientA, at(off), lim, Decision{Allowed: true, ClientCount: 1})
		expect(t, path, clientA, at(64), lim, Decision{Allowed: true, ClientCount: 1})
	}
}

// TestPerClientAndGlobal: refused attempts count against both limits, and
// the per-client reason wins when both are over.
func TestPerClientAndGlobal(t *testing.T) {
	path := statePath(t)
	lim := Limits{Window: time.Minute, MaxSessions: 4, MaxPerClient: 2}
	expect(t, path, clientA, at(0), lim, Decision{Allowed: true, Count: 1, ClientCount: 1})
	expect(t, path, clientA, at(1), lim, Decision{Allowed: true, Count: 2, ClientCount: 2})
	expect(t, path, clientA, at(2), lim, Decision{Reason: ReasonClient, Count: 3, ClientCount: 3})
	expect(t, path, clientB, at(3), lim, Decision{Allowed: true, Count: 4, ClientCount: 1})
	expect(t, path, clientB, at(4), lim, Decision{Reason: ReasonGlobal, Count: 5, ClientCount: 2})
	expect(t, path, clientA, at(5), lim, Decision{Reason: ReasonClient, Count: 6, ClientCount: 4})
}

func TestClientKey(t *testing.T) {
	same := [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{"192.0.2.7", "::ffff:192.0.2.7"},
		{"fe80::1%eth0", "fe80::2"},
	}
	differ := [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.7", "192.0.2.8"},
		{"::", "::ffff:0.0.0.0"},
	}
	for _, c := range same {
		if keyOf(netip.MustParseAddr(c[0])) != keyOf(netip.MustParseAddr(c[1])) {
			t.Errorf("%s and %s are different clients", c[0], c[1])
		}
	}
	for _, c := range differ {
		if keyOf(netip.MustParseAddr(c[0])) == keyOf(netip.MustParseAddr(c[1])) {
			t.Errorf("%s and %s are the same client", c[0], c[1])
		}
	}
	// And through the file: two addresses of one /64 share one limit.
	path := statePath(t)
	lim := Limits{MaxPerClient: 1}
	expect(t, path, netip.MustParseAddr("2001:db8::1"), at(0), lim, Decision{Allowed: true, ClientCount: 1})
	expect(t, path, netip.MustParseAddr("2001:db8::abcd"), at(0), lim, Decision{Reason: ReasonClient, ClientCount: 2})
	expect(t, path, netip.MustParseAddr("2001:db8:0:1::1"), at(0), lim, Decision{Allowed: true, ClientCount: 1})
}

// clientsInSet returns n IPv4 clients that hash to set page num under
// the key of the state file at path.
func clientsInSet(t *testing.T, path string, num, n int) []netip.Addr {
	t.Helper()
	key := readState(t, path).key()
	var cs []netip.Addr
	for i := 0; len(cs) < n; i++ {
		if i > 1<<24 {
			t.Fatal("no clients for the set")
		}
		c := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if got, _ := hashClient(key, keyOf(c)); got == num {
			cs = append(cs, c)
		}
	}
	return cs
}

// TestEviction: a set page full of active clients gives the slot of the
// one seen least recently, and only that one, to a newcomer; a slot whose
// sessions no longer count is taken without forgetting anyone.
func TestEviction(t *testing.T) {
	path := statePath(t)
	lim := Limits{MaxPerClient: 1}
	mustCheck(t, path, clientA, at(0), lim)
	num, _ := hashClient(readState(t, path).key(), keyOf(clientA))
	// clientA holds one slot of the page: slotsPerSet-1 more fill it.
	cs := clientsInSet(t, path, num, slotsPerSet+2)
	for i := range slotsPerSet - 1 {
		expect(t, path, cs[i], at(1+int64(i)*50/slotsPerSet), lim, Decision{Allowed: true, ClientCount: 1})
	}
	if ev := readState(t, path).evicted(); ev != 0 {
		t.Fatalf("%d evictions with a page just full", ev)
	}
	// One more client evicts clientA, the stalest.
	expect(t, path, cs[slotsPerSet-1], at(55), lim, Decision{Allowed: true, ClientCount: 1})
	// cs[0] is still known ...
	expect(t, path, cs[0], at(56), lim, Decision{Reason: ReasonClient, ClientCount: 2})
	// ... clientA is forgotten, and comes back in cs[1]'s slot.
	expect(t, path, clientA, at(57), lim, Decision{Allowed: true, ClientCount: 1})
	expect(t, path, cs[2], at(58), lim, Decision{Reason: ReasonClient, ClientCount: 2})
	expect(t, path, cs[1], at(59), lim, Decision{Allowed: true, ClientCount: 1})
	if ev := readState(t, path).evicted(); ev != 3 {
		t.Errorf("%d evictions, want 3", ev)
	}
	// Once the first clients' sessions no longer count (cs[4] was seen
	// at second 2, in the bucket that stops counting at 64), a newcomer
	// takes a slot of theirs and nobody is forgotten.
	expect(t, path, cs[slotsPerSet], at(64), lim, Decision{Allowed: true, ClientCount: 1})
	if ev := readState(t, path).evicted(); ev != 3 {
		t.Errorf("%d evictions, want still 3", ev)
	}
	// Another page is untouched by all this.
	other := clientsInSet(t, path, num%nSets+1, 1)[0]
	expect(t, path, other, at(64), lim, Decision{Allowed: true, ClientCount: 1})
	if fi, err := os.Stat(path); err != nil || fi.Size() > fileSize {
		t.Errorf("state file size: %v %v", fi, err)
	}
}

// v1Page is a valid state file of format version 1: one 4 KiB page of 34
// client slots, which the current format replaces.
func v1Page() []byte {
	p := make([]byte, pageSize)
	copy(p, "SMTPVEL\x01")
	binary.LittleEndian.PutUint64(p[12:], base)
	binary.LittleEndian.PutUint64(p[20:], 5)
	binary.LittleEndian.PutUint32(p[32+4*(base%ringLen):], 5)
	binary.LittleEndian.PutUint32(p[offCRC:], crc32.Checksum(p[offCRC+4:], castagnoli()))
	return p
}

// TestCorruptFileReset: whatever is in the file, Check starts afresh and
// leaves a valid state: the header and the one client page it wrote.
func TestCorruptFileReset(t *testing.T) {
	lim := Limits{Window: time.Minute, MaxSessions: 100, MaxPerClient: 100}
	good := func() []byte {
		path := statePath(t)
		for range 5 {
			mustCheck(t, path, clientA, at(0), lim)
		}
		b, _ := os.ReadFile(path)
		return b
	}
	random := make([]byte, fileSize)
	rand.Read(random)
	flipped := good()
	flipped[offRing+4*mod(base, ringLen)] ^= 0x40
	otherVersion := good()
	otherVersion[len(magic)-1] = 3
	torn := append(good()[:pageSize/2], bytes.Repeat([]byte{0xff}, pageSize/2)...)
	for name, content := range map[string][]byte{
		"empty":     {},
		"short":     good()[:100],
		"random":    random,
		"bit flip":  flipped,
		"version 1": v1Page(),
		"version 3": otherVersion,
		"torn":      torn,
		"text":      bytes.Repeat([]byte("not a velocity file\n"), 30000),
	} {
		t.Run(name, func(t *testing.T) {
			path := statePath(t)
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			expect(t, path, clientA, at(0), lim, Decision{Allowed: true, Count: 1, ClientCount: 1})
			h := readState(t, path)
			if h.total() != 1 {
				t.Errorf("total %d after reset", h.total())
			}
			// Nothing old is left: the file holds the header and
			// clientA's page, at its offset.
			num, _ := hashClient(h.key(), keyOf(clientA))
			if fi, err := os.Stat(path); err != nil || fi.Size() != int64(num+1)*pageSize {
				t.Errorf("size %v after reset, want %d (%v)", fi.Size(), (num+1)*pageSize, err)
			}
		})
	}
	// A valid header and a damaged client page: only that page's
	// clients are forgotten.
	path := statePath(t)
	b := good()
	num, _ := hashClient(b[offKey:offKey+keySize], keyOf(clientA))
	b[num*pageSize+100] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, path, clientA, at(0), lim, Decision{Allowed: true, Count: 6, ClientCount: 1})
	// A client page written under another key (another file's) is
	// empty too.
	b, c := good(), good()
	num, _ = hashClient(b[offKey:offKey+keySize], keyOf(clientA))
	numC, _ := hashClient(c[offKey:offKey+keySize], keyOf(clientA))
	if len(b) < (num+1)*pageSize {
		b = append(b, make([]byte, (num+1)*pageSize-len(b))...)
	}
	copy(b[num*pageSize:][:pageSize], c[numC*pageSize:][:pageSize])
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, path, clientA, at(0), lim, Decision{Allowed: true, Count: 6, ClientCount: 1})
}

// TestClockBackwards: when the clock steps back, the history moves back
// with it, so the limit neither forgets the recent sessions nor freezes.
func TestClockBackwards(t *testing.T) {
	path := statePath(t)
	lim := Limits{Window: 10 * time.Second, MaxSessions: 3, MaxPerClient: 2}
	expect(t, path, clientA, at(100), lim, Decision{Allowed: true, Count: 1, ClientCount: 1})
	expect(t, path, clientB, at(105), lim, Decision{Allowed: true, Count: 2, ClientCount: 1})
	expect(t, path, clientB, at(105), lim, Decision{Allowed: true, Count: 3, ClientCount: 2})
	// One hour back: second 100 is now second -3500, 105 is -3495.
	// Per client, each history moves back so that its newest bucket is
	// now's.
	expect(t, path, clientA, at(-3495), lim, Decision{Reason: ReasonGlobal, Count: 4, ClientCount: 2})
	expect(t, path, clientB, at(-3495), lim, Decision{Reason: ReasonClient, Count: 5, ClientCount: 3})
	// Time goes on from there: the four sessions of -3495 are in the
	// window until -3486, and A's in its minute.
	expect(t, path, clientA, at(-3486), lim, Decision{Reason: ReasonClient, Count: 5, ClientCount: 3})
	clientC := netip.MustParseAddr("192.0.2.3")
	expect(t, path, clientC, at(-3485), lim, Decision{Allowed: true, Count: 2, ClientCount: 1})
	// A one-second step back moves everything by one second too: A's
	// session of -3486 is at -3487, still in the window.
	expect(t, path, clientC, at(-3486), lim, Decision{Allowed: true, Count: 3, ClientCount: 2})
	// B's three sessions, moved to -3495's bucket (seconds -3496 to
	// -3493), count until -3433 and are over at -3432.
	expect(t, path, clientB, at(-3433), lim, Decision{Reason: ReasonClient, Count: 1, ClientCount: 4})
	expect(t, path, clientB, at(-3432), lim, Decision{Allowed: true, Count: 2, ClientCount: 2})
	// Absurd clocks: before 1970, past year 36812. No panic, no error,
	// and the counts stay small.
	for _, now := range []time.Time{time.Unix(-1e12, 0), time.Unix(0, 0), time.Unix(1<<50, 0), at(0)} {
		d := mustCheck(t, path, clientA, now, lim)
		if d.Count > 6 || d.Count < 1 || d.ClientCount < 1 {
			t.Errorf("%v: %+v", now, d)
		}
	}
	readState(t, path)
}

func TestFileMode(t *testing.T) {
	path := statePath(t)
	mustCheck(t, path, clientA, at(0), Limits{MaxPerClient: 1})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v", fi, err)
	}
	// A symbolic link planted in place of the state file is not followed.
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(path, link)
	if _, err := Check(link, clientA, at(0), Limits{MaxPerClient: 1}); err == nil {
		t.Error("followed a symbolic link")
	}
}

// BenchmarkCheck is the cost a session under the limits pays: open, lock,
// read, update, write and close the state file, with both limits on.
func BenchmarkCheck(b *testing.B) {
	path := statePath(b)
	lim := Limits{Window: time.Minute, MaxSessions: 1 << 30, MaxPerClient: MaxClientRate}
	var clients [16]netip.Addr
	for i := range clients {
		clients[i] = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
	}
	i := 0
	for b.Loop() {
		d, err := Check(path, clients[i%len(clients)], at(int64(i)), lim)
		if err != nil || !d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
		i++
	}
}

// BenchmarkCheckOff: with the limits off Check is free.
func BenchmarkCheckOff(b *testing.B) {
	for b.Loop() {
		Check("/nonexistent", clientA, at(0), Limits{})
	}
}
