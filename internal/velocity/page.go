package velocity

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"sync"
	"time"
)

// The state file is fileSize bytes: one header page and nSets pages of
// client slots, each page read and written whole, on its own, at its
// page-aligned offset. A session reads and writes the header and, when
// it has a client address, the one set page its client hashes to: 8 KiB
// of I/O whatever the number of clients. All integers are little-endian.
//
// Header, page 0:
//
//	offset  size  field
//	     0     8  magic "SMTPVEL" and the format version (2)
//	     8     4  CRC-32C (Castagnoli) of bytes 12 to the end of the page
//	    12     8  head: the newest second recorded (Unix time; 0 = empty)
//	    20     8  total: sessions ever recorded (for tests and debugging)
//	    28     4  reserved, zero
//	    32    16  key: the AES-128 key of the client hash, random, made
//	              with the file
//	    48     8  evictions: clients forgotten while still in their window
//	              to make room for another (for tests and debugging)
//	    56     8  reserved, zero
//	    64  1200  global ring: ringLen uint32 counters, second s at s%ringLen
//
// Set page p, for p from 1 to nSets:
//
//	 0     4  CRC-32C of the key, p as a uint32, and bytes 4 to the end
//	 4    12  reserved, zero
//	16  4064  slotsPerSet client slots of slotSize bytes:
//	            8  fingerprint of the client (see hashClient)
//	            8  last: the newest second counted (0 = free slot)
//	           16  one uint8 counter per bucketSec seconds, bucket b
//	               (seconds bucketSec*b to bucketSec*b+bucketSec-1) at
//	               b%nBuckets
//
// A set page whose CRC does not check (never written, torn, or written
// under another key) is empty: the key in its CRC ties every set page to
// the header it was written with, so a new header, with a new key, makes
// every old set page empty without a write.
//
// Invariants: every counter is for a second (or bucket) in the ringLen
// seconds (or nBuckets buckets) ending at head (or last), older ones
// having been zeroed; and head is the newest second in the header.
const (
	pageSize = 4096
	nSets    = 63
	fileSize = (1 + nSets) * pageSize

	ringLen    = 300
	offCRC     = 8
	offHead    = 12
	offTotal   = 20
	offKey     = 32
	offEvicted = 48
	offRing    = 64
	keySize    = 16

	bucketSec   = 4
	nBuckets    = 16
	slotSize    = 8 + 8 + nBuckets
	offSlots    = 16
	slotsPerSet = (pageSize - offSlots) / slotSize

	// clientRing is the per-client window in whole seconds: a session
	// counts until its bucket is nBuckets-1 buckets behind the current
	// one, 61 to 64 seconds, never less than clientRing.
	clientRing = (nBuckets - 1) * bucketSec

	magic = "SMTPVEL\x02"

	// maxSec bounds the clock so that no arithmetic on seconds can
	// overflow, whatever a broken clock says (year 36812).
	maxSec = 1 << 40
)

// castagnoli is made at first use, not at start-up: a session with the
// limits off never checks a page, and building hash/crc32's tables costs
// a fresh process about 0.2 ms.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

type page [pageSize]byte

// header is page 0.
type header struct{ page }

func (h *header) valid() bool {
	return string(h.page[:len(magic)]) == magic &&
		binary.LittleEndian.Uint32(h.page[offCRC:]) == crc32.Checksum(h.page[offCRC+4:], castagnoli())
}

func (h *header) seal() {
	copy(h.page[:], magic)
	binary.LittleEndian.PutUint32(h.page[offCRC:], crc32.Checksum(h.page[offCRC+4:], castagnoli()))
}

func (h *header) head() int64         { return int64(binary.LittleEndian.Uint64(h.page[offHead:])) }
func (h *header) setHead(s int64)     { binary.LittleEndian.PutUint64(h.page[offHead:], uint64(s)) }
func (h *header) total() uint64       { return binary.LittleEndian.Uint64(h.page[offTotal:]) }
func (h *header) setTotal(n uint64)   { binary.LittleEndian.PutUint64(h.page[offTotal:], n) }
func (h *header) key() []byte         { return h.page[offKey:][:keySize] }
func (h *header) evicted() uint64     { return binary.LittleEndian.Uint64(h.page[offEvicted:]) }
func (h *header) ring(s int64) []byte { return h.page[offRing+4*mod(s, ringLen):][:4] }

func (h *header) countEviction() {
	binary.LittleEndian.PutUint64(h.page[offEvicted:], h.evicted()+1)
}

// set is a page of client slots.
type set struct{ page }

// setSum is the CRC of set page n under key.
func (s *set) sum(key []byte, n int) uint32 {
	var num [4]byte
	binary.LittleEndian.PutUint32(num[:], uint32(n))
	c := crc32.Update(crc32.Checksum(key, castagnoli()), castagnoli(), num[:])
	return crc32.Update(c, castagnoli(), s.page[4:])
}

func (s *set) valid(key []byte, n int) bool {
	return binary.LittleEndian.Uint32(s.page[:]) == s.sum(key, n)
}

func (s *set) seal(key []byte, n int) {
	binary.LittleEndian.PutUint32(s.page[:], s.sum(key, n))
}

// slot is a view of one client slot.
type slot []byte

func (s *set) slot(i int) slot { return slot(s.page[offSlots+i*slotSize:][:slotSize]) }

func (s slot) fingerprint() uint64  { return binary.LittleEndian.Uint64(s) }
func (s slot) last() int64          { return int64(binary.LittleEndian.Uint64(s[8:])) }
func (s slot) setLast(t int64)      { binary.LittleEndian.PutUint64(s[8:], uint64(t)) }
func (s slot) counts() []byte       { return s[16:][:nBuckets] }
func (s slot) bucket(b int64) *byte { return &s.counts()[mod(b, nBuckets)] }

// live reports whether the slot holds sessions that still count at t.
func (s slot) live(t int64) bool {
	last := s.last()
	return last != 0 && bucketOf(t)-bucketOf(last) < nBuckets
}

// record counts one session at now in the header and, when perClient,
// in set, and decides it against lim.
func record(h *header, st *set, now time.Time, lim Limits, fp uint64, perClient bool) Decision {
	t := min(max(now.Unix(), 1), maxSec)
	switch head := h.head(); {
	case head == 0:
	case t < head:
		// The clock went back. Move the whole history back with it:
		// recent sessions stay recent, the window keeps sliding, and
		// no index goes negative.
		h.shift(head - t)
	case t > head:
		for s := head + 1; s <= t && s-head <= ringLen; s++ {
			put32(h.ring(s), 0)
		}
	}
	h.setHead(t)

	if c := get32(h.ring(t)); c < math.MaxUint32 {
		put32(h.ring(t), c+1)
	}
	h.setTotal(h.total() + 1)

	var d Decision
	if lim.MaxSessions > 0 {
		w := int64(lim.Window / time.Second)
		for s := t - w + 1; s <= t; s++ {
			d.Count += int(get32(h.ring(s)))
		}
	}
	if perClient {
		sl, evicted := st.find(fp, t)
		if evicted {
			h.countEviction()
		}
		if c := sl.bucket(bucketOf(t)); *c < math.MaxUint8 {
			*c++
		}
		for _, c := range sl.counts() {
			// A full counter stands for more sessions than any
			// limit allows.
			if c == math.MaxUint8 {
				d.ClientCount += MaxClientRate + 1
			} else {
				d.ClientCount += int(c)
			}
		}
	}
	switch {
	case perClient && d.ClientCount > lim.MaxPerClient:
		d.Reason = ReasonClient
	case lim.MaxSessions > 0 && d.Count > lim.MaxSessions:
		d.Reason = ReasonGlobal
	default:
		d.Allowed = true
	}
	return d
}

// find returns the slot of the client with fingerprint fp, brought
// forward to second t. A client without one takes a slot whose sessions
// no longer count, else the slot seen least recently, whose client is
// forgotten (evicted is then true).
func (s *set) find(fp uint64, t int64) (sl slot, evicted bool) {
	var free, stalest slot
	for i := range slotsPerSet {
		c := s.slot(i)
		if c.last() != 0 && c.fingerprint() == fp {
			c.advance(t)
			return c, false
		}
		if free == nil && !c.live(t) {
			free = c
		}
		if stalest == nil || c.last() < stalest.last() {
			stalest = c
		}
	}
	if free == nil {
		free, evicted = stalest, true
	}
	clear(free)
	binary.LittleEndian.PutUint64(free, fp)
	free.setLast(t)
	return free, evicted
}

// advance brings the slot to second t: the buckets after last's up to
// t's are zeroed. When the clock went back (t before last), the buckets
// move back with it, so that last's bucket becomes t's: the client's
// recent sessions stay recent.
func (s slot) advance(t int64) {
	last := s.last()
	lb, tb := bucketOf(last), bucketOf(t)
	switch {
	case tb < lb:
		var old [nBuckets]byte
		copy(old[:], s.counts())
		for k := int64(0); k < nBuckets; k++ {
			*s.bucket(tb - k) = old[mod(lb-k, nBuckets)]
		}
	case tb > lb:
		for b := lb + 1; b <= tb && b-lb <= nBuckets; b++ {
			*s.bucket(b) = 0
		}
	}
	s.setLast(t)
}

// shift moves every second of the global ring back by d seconds.
func (h *header) shift(d int64) {
	head := h.head()
	var old [4 * ringLen]byte
	copy(old[:], h.page[offRing:])
	for k := int64(0); k < ringLen; k++ {
		s := head - k
		copy(h.ring(s-d), old[4*mod(s, ringLen):][:4])
	}
}

// bucketOf returns the per-client bucket of second t.
func bucketOf(t int64) int64 { return t / bucketSec }

func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

func get32(b []byte) uint32    { return binary.LittleEndian.Uint32(b) }
func put32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
