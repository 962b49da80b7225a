package spool

import (
	"hash/crc32"
	"sync"
)

// The CRC-32C (Castagnoli) of the message bytes, as the message-crc32c
// field holds it. hash/crc32 computes it with SSE4.2 where the CPU has
// it, but its first use in a process builds tables for that (about
// 0.2 ms), which a short session would spend on a message of a few KiB.
// So the writers start with a table-driven software CRC (slicing by 8,
// whose 8 KiB table takes microseconds to build) and hand over to
// hash/crc32 past softCRCLimit bytes, where its speed pays. Both follow
// crc32.Update's convention, so the running value carries over.

// softCRCLimit is the number of bytes after which a crc hands over to
// hash/crc32, in bytes.
const softCRCLimit = 1 << 20

// slicing8 is the slicing-by-8 table of the reflected Castagnoli
// polynomial: slicing8[0] is the byte-at-a-time table, slicing8[k][b]
// the CRC of b followed by k zero bytes.
var slicing8 = sync.OnceValue(func() *[8][256]uint32 {
	var t [8][256]uint32
	const poly = 0x82f63b78 // Castagnoli, reflected
	for i := range 256 {
		c := uint32(i)
		for range 8 {
			if c&1 == 1 {
				c = c>>1 ^ poly
			} else {
				c >>= 1
			}
		}
		t[0][i] = c
	}
	for i := range 256 {
		c := t[0][i]
		for k := 1; k < 8; k++ {
			c = t[0][c&0xff] ^ c>>8
			t[k][i] = c
		}
	}
	return &t
})

// softUpdate returns the CRC-32C of the bytes behind crc followed by p,
// as crc32.Update(crc, castagnoli table, p) does.
func softUpdate(crc uint32, p []byte) uint32 {
	t := slicing8()
	c := ^crc
	for len(p) >= 8 {
		c ^= uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
		c = t[7][c&0xff] ^ t[6][c>>8&0xff] ^ t[5][c>>16&0xff] ^ t[4][c>>24] ^
			t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]]
		p = p[8:]
	}
	for _, b := range p {
		c = t[0][byte(c)^b] ^ c>>8
	}
	return ^c
}

// crc is a hash.Hash32 of CRC-32C (Castagnoli) that uses softUpdate for
// the first softCRCLimit bytes and hash/crc32 after them.
type crc struct {
	sum uint32
	n   int64
}

func newCRC() *crc { return &crc{} }

// Write implements hash.Hash; it never fails.
func (c *crc) Write(p []byte) (int, error) {
	if c.n < softCRCLimit {
		c.sum = softUpdate(c.sum, p)
	} else {
		c.sum = crc32.Update(c.sum, castagnoli(), p)
	}
	c.n += int64(len(p))
	return len(p), nil
}

// Sum32 implements hash.Hash32: the CRC of the bytes written so far.
func (c *crc) Sum32() uint32 { return c.sum }

// Sum implements hash.Hash: b with the CRC appended, big-endian.
func (c *crc) Sum(b []byte) []byte {
	s := c.sum
	return append(b, byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
}

// Reset implements hash.Hash.
func (c *crc) Reset() { c.sum, c.n = 0, 0 }

// Size implements hash.Hash: 4 bytes.
func (c *crc) Size() int { return 4 }

// BlockSize implements hash.Hash: 1 byte.
func (c *crc) BlockSize() int { return 1 }
