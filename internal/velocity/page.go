package velocity

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"time"
)

// The state file is one page, read and written whole. All integers are
// little-endian.
//
//	offset  size  field
//	     0     8  magic "SMTPVEL" and the format version (1)
//	     8     4  CRC-32C (Castagnoli) of bytes 12 to the end
//	    12     8  head: the newest second recorded (Unix time; 0 = empty)
//	    20     8  total: sessions ever recorded (for tests and debugging)
//	    28     4  reserved, zero
//	    32  1200  global ring: ringLen uint32 counters, second s at s%ringLen
//	  1232  2856  nSlots client slots of slotSize bytes:
//	                16  client key (see clientKey)
//	                 8  last: the newest second counted (0 = free slot)
//	                60  one uint8 counter per second, second s at s%60
//	  4088     8  unused, zero
//
// Invariants: every counter is for a second in the ringLen (or 60)
// seconds ending at head (or last), older ones having been zeroed; and
// head is the newest second anywhere in the page.
const (
	pageSize   = 4096
	ringLen    = 300
	clientRing = 60
	slotSize   = 16 + 8 + clientRing
	offCRC     = 8
	offHead    = 12
	offTotal   = 20
	offRing    = 32
	offSlots   = offRing + 4*ringLen
	nSlots     = (pageSize - offSlots) / slotSize

	magic = "SMTPVEL\x01"

	// maxSec bounds the clock so that no arithmetic on seconds can
	// overflow, whatever a broken clock says (year 36812).
	maxSec = 1 << 40
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type page [pageSize]byte

func (p *page) valid() bool {
	return string(p[:len(magic)]) == magic &&
		binary.LittleEndian.Uint32(p[offCRC:]) == crc32.Checksum(p[offCRC+4:], castagnoli)
}

func (p *page) seal() {
	copy(p[:], magic)
	binary.LittleEndian.PutUint32(p[offCRC:], crc32.Checksum(p[offCRC+4:], castagnoli))
}

func (p *page) head() int64         { return int64(binary.LittleEndian.Uint64(p[offHead:])) }
func (p *page) setHead(s int64)     { binary.LittleEndian.PutUint64(p[offHead:], uint64(s)) }
func (p *page) total() uint64       { return binary.LittleEndian.Uint64(p[offTotal:]) }
func (p *page) setTotal(n uint64)   { binary.LittleEndian.PutUint64(p[offTotal:], n) }
func (p *page) ring(s int64) []byte { return p[offRing+4*mod(s, ringLen):][:4] }

// slot is a view of client slot i.
type slot []byte

func (p *page) slot(i int) slot { return slot(p[offSlots+i*slotSize:][:slotSize]) }

func (s slot) key() []byte       { return s[:16] }
func (s slot) last() int64       { return int64(binary.LittleEndian.Uint64(s[16:])) }
func (s slot) setLast(t int64)   { binary.LittleEndian.PutUint64(s[16:], uint64(t)) }
func (s slot) counts() []byte    { return s[24:][:clientRing] }
func (s slot) count(t int64) int { return int(s.counts()[mod(t, clientRing)]) }

// record counts one session at now and decides it against lim.
func (p *page) record(now time.Time, lim Limits, key clientKey, perClient bool) Decision {
	t := min(max(now.Unix(), 1), maxSec)
	switch head := p.head(); {
	case head == 0:
	case t < head:
		// The clock went back. Move the whole history back with it:
		// recent sessions stay recent, the window keeps sliding, and
		// no index goes negative.
		p.shift(head - t)
	case t > head:
		for s := head + 1; s <= t && s-head <= ringLen; s++ {
			put32(p.ring(s), 0)
		}
	}
	p.setHead(t)

	if c := get32(p.ring(t)); c < math.MaxUint32 {
		put32(p.ring(t), c+1)
	}
	p.setTotal(p.total() + 1)

	var d Decision
	if lim.MaxSessions > 0 {
		w := int64(lim.Window / time.Second)
		for s := t - w + 1; s <= t; s++ {
			d.Count += int(get32(p.ring(s)))
		}
	}
	if perClient {
		sl := p.find(key, t)
		cs := sl.counts()
		// A full counter stays full: it can only make the client look
		// busier than 255 a second, and no limit is above 255.
		if i := mod(t, clientRing); cs[i] < math.MaxUint8 {
			cs[i]++
		}
		for _, c := range cs {
			d.ClientCount += int(c)
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

// find returns key's slot brought forward to second t, taking the
// stalest slot (a free one first) when key has none.
func (p *page) find(key clientKey, t int64) slot {
	stalest := p.slot(0)
	for i := range nSlots {
		sl := p.slot(i)
		if sl.last() != 0 && bytes.Equal(sl.key(), key[:]) {
			sl.advance(t)
			return sl
		}
		if sl.last() < stalest.last() {
			stalest = sl
		}
	}
	clear(stalest)
	copy(stalest.key(), key[:])
	stalest.setLast(t)
	return stalest
}

// advance zeroes the counters of the seconds after last up to t.
func (s slot) advance(t int64) {
	last := s.last()
	for x := last + 1; x <= t && x-last <= clientRing; x++ {
		s.counts()[mod(x, clientRing)] = 0
	}
	s.setLast(max(t, last))
}

// shift moves every recorded second back by d seconds.
func (p *page) shift(d int64) {
	head := p.head()
	var old [4 * ringLen]byte
	copy(old[:], p[offRing:offSlots])
	for k := int64(0); k < ringLen; k++ {
		s := head - k
		copy(p.ring(s-d), old[4*mod(s, ringLen):][:4])
	}
	for i := range nSlots {
		sl := p.slot(i)
		last := sl.last()
		if last == 0 {
			continue
		}
		if last-d < 1 {
			clear(sl)
			continue
		}
		var oc [clientRing]byte
		copy(oc[:], sl.counts())
		for k := int64(0); k < clientRing; k++ {
			s := last - k
			sl.counts()[mod(s-d, clientRing)] = oc[mod(s, clientRing)]
		}
		sl.setLast(last - d)
	}
}

func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

func get32(b []byte) uint32    { return binary.LittleEndian.Uint32(b) }
func put32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
