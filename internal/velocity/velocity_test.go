package velocity

import (
	"bytes"
	"crypto/rand"
	"errors"
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

func readPage(t *testing.T, path string) *page {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p page
	// Check never grows the file; junk after the page is left alone.
	if copy(p[:], b) != pageSize || !p.valid() {
		t.Fatalf("state file does not start with a valid page (%d bytes)", len(b))
	}
	return &p
}

func TestLayout(t *testing.T) {
	if offSlots+nSlots*slotSize > pageSize || nSlots < 32 {
		t.Fatalf("layout: %d slots end at %d", nSlots, offSlots+nSlots*slotSize)
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
	if p := readPage(t, path); p.total() != 8 {
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
	// At 59 the session of second 0 still counts; at 60 it has gone.
	expect(t, path, clientA, at(59), lim, Decision{Reason: ReasonClient, ClientCount: 4})
	expect(t, path, clientA, at(60), lim, Decision{Reason: ReasonClient, ClientCount: 4})
	// At 119 only second 60's attempt is left.
	expect(t, path, clientA, at(119), lim, Decision{Allowed: true, ClientCount: 2})
	// A local session is counted globally only.
	expect(t, path, netip.Addr{}, at(119), Limits{MaxPerClient: 1, Window: time.Second, MaxSessions: 10},
		Decision{Allowed: true, Count: 2})
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

// TestEviction: a full table drops the client seen least recently, and
// only that one.
func TestEviction(t *testing.T) {
	path := statePath(t)
	lim := Limits{MaxPerClient: 1}
	client := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for i := range nSlots {
		expect(t, path, client(i), at(int64(i)), lim, Decision{Allowed: true, ClientCount: 1})
	}
	// One more client evicts client 0, the stalest.
	expect(t, path, client(nSlots), at(nSlots), lim, Decision{Allowed: true, ClientCount: 1})
	// Client 1 is still known ...
	expect(t, path, client(1), at(nSlots+1), lim, Decision{Reason: ReasonClient, ClientCount: 2})
	// ... client 0 is forgotten, and comes back in client 2's slot.
	expect(t, path, client(0), at(nSlots+2), lim, Decision{Allowed: true, ClientCount: 1})
	expect(t, path, client(3), at(nSlots+3), lim, Decision{Reason: ReasonClient, ClientCount: 2})
	expect(t, path, client(2), at(nSlots+4), lim, Decision{Allowed: true, ClientCount: 1})
	if fi, err := os.Stat(path); err != nil || fi.Size() != pageSize {
		t.Errorf("state file size: %v %v", fi, err)
	}
}

// TestCorruptFileReset: whatever is in the file, Check starts afresh and
// leaves a valid page.
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
	random := make([]byte, pageSize)
	rand.Read(random)
	flipped := good()
	flipped[offRing+4*mod(base, ringLen)] ^= 0x40
	version2 := good()
	version2[len(magic)-1] = 2
	torn := append(good()[:pageSize/2], bytes.Repeat([]byte{0xff}, pageSize/2)...)
	for name, content := range map[string][]byte{
		"empty":     {},
		"short":     good()[:100],
		"random":    random,
		"bit flip":  flipped,
		"version 2": version2,
		"torn":      torn,
		"text":      bytes.Repeat([]byte("not a velocity file\n"), 300),
	} {
		t.Run(name, func(t *testing.T) {
			path := statePath(t)
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			expect(t, path, clientA, at(0), lim, Decision{Allowed: true, Count: 1, ClientCount: 1})
			if p := readPage(t, path); p.total() != 1 {
				t.Errorf("total %d after reset", p.total())
			}
		})
	}
	// A valid page followed by junk: the page is kept.
	path := statePath(t)
	if err := os.WriteFile(path, append(good(), "junk"...), 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, path, clientA, at(0), lim, Decision{Allowed: true, Count: 6, ClientCount: 6})
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
	// B's minute, moved to end at -3496, is over at -3436.
	expect(t, path, clientB, at(-3436), lim, Decision{Allowed: true, Count: 1, ClientCount: 1})
	// Absurd clocks: before 1970, past year 36812. No panic, no error,
	// and the counts stay small.
	for _, now := range []time.Time{time.Unix(-1e12, 0), time.Unix(0, 0), time.Unix(1<<50, 0), at(0)} {
		d := mustCheck(t, path, clientA, now, lim)
		if d.Count > 6 || d.Count < 1 || d.ClientCount < 1 {
			t.Errorf("%v: %+v", now, d)
		}
	}
	readPage(t, path)
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
