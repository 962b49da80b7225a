package velocity

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// TestMemoryMeansTheSame: the in-memory state and the state file give
// the same decisions, with the same counts, for the same sessions: 3,000
// sessions of 60 clients (IPv4 and IPv6) over ten minutes, seconds
// apart, under a per-client and a global limit.
func TestMemoryMeansTheSame(t *testing.T) {
	path := filepath.Join(t.TempDir(), "velocity")
	m, err := NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{Window: time.Minute, MaxSessions: 400, MaxPerClient: 6}
	r := rand.New(rand.NewPCG(7, 8))
	var clients []netip.Addr
	for i := range 30 {
		clients = append(clients, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		clients = append(clients, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i), 15: 1}))
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	refused := 0
	for i := range 3000 {
		now = now.Add(time.Duration(r.IntN(400)) * time.Millisecond)
		c := clients[r.IntN(len(clients))]
		want, err := Check(path, c, now, lim)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Check(c, now, lim)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("session %d from %v at %v: memory %+v, file %+v", i, c, now, got, want)
		}
		if !got.Allowed {
			refused++
		}
	}
	if refused == 0 {
		t.Errorf("no session refused: the limits were never tested")
	}
}
