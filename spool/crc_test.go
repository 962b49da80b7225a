package spool

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// FuzzCRC holds the software CRC-32C and the hand-over against
// hash/crc32: the same value for any bytes cut into any two writes.
func FuzzCRC(f *testing.F) {
	f.Add([]byte("123456789"), 3)
	f.Add(make([]byte, 100), 0)
	f.Fuzz(func(t *testing.T, p []byte, cut int) {
		want := crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli))
		if got := softUpdate(0, p); got != want {
			t.Fatalf("softUpdate(%q) = %08x, want %08x", p, got, want)
		}
		if cut < 0 || cut > len(p) {
			cut = len(p) / 2
		}
		c := newCRC()
		c.Write(p[:cut])
		c.Write(p[cut:])
		if c.Sum32() != want {
			t.Fatalf("two writes of %q at %d: %08x, want %08x", p, cut, c.Sum32(), want)
		}
	})
}

// TestCRCHandOver: a message longer than softCRCLimit, written in odd
// pieces, has hash/crc32's CRC-32C; "123456789" has the check value of
// RFC 3720 appendix B.4, 0xe3069283.
func TestCRCHandOver(t *testing.T) {
	if got := softUpdate(0, []byte("123456789")); got != 0xe3069283 {
		t.Errorf("check value %08x", got)
	}
	p := make([]byte, 3*softCRCLimit+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	c := newCRC()
	for rest := p; len(rest) > 0; {
		n := min(len(rest), 1+r.IntN(200000))
		c.Write(rest[:n])
		rest = rest[n:]
	}
	if want := crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)); c.Sum32() != want {
		t.Errorf("%08x, want %08x", c.Sum32(), want)
	}
}
