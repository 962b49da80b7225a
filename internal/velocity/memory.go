package velocity

import (
	"crypto/rand"
	"net/netip"
	"sync"
	"time"
)

// Memory holds the velocity state of one process that serves every
// session itself (smtp-stdio's one-process mode): the header and the set
// pages of the state file, in memory, counted by the same code (record),
// so that the limits mean exactly what they mean in the shared file. It
// is safe for concurrent use. The zero value is not usable: see
// NewMemory.
type Memory struct {
	mu   sync.Mutex
	h    header
	sets map[int]*set // set pages met so far, by number (1 to nSets)
}

// NewMemory returns an empty state with a random key for the client
// hash (as a new state file gets). It returns an error only when the
// system's random source fails.
func NewMemory() (*Memory, error) {
	m := &Memory{sets: map[int]*set{}}
	if _, err := rand.Read(m.h.key()); err != nil {
		return nil, err
	}
	return m, nil
}

// Check records one new session from client at now and reports whether
// it is within lim, as the package's Check does with the state file.
// When no limit applies it records nothing. The error is that of an
// invalid lim.
func (m *Memory) Check(client netip.Addr, now time.Time, lim Limits) (Decision, error) {
	perClient := lim.MaxPerClient > 0 && client.IsValid()
	if lim.MaxSessions == 0 && !perClient {
		return Decision{Allowed: true}, nil
	}
	if err := lim.Validate(); err != nil {
		return Decision{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var (
		cs  = &set{}
		fp  uint64
		num int
	)
	if perClient {
		num, fp = hashClient(m.h.key(), keyOf(client))
		if s, ok := m.sets[num]; ok {
			cs = s
		} else {
			m.sets[num] = cs
		}
	}
	return record(&m.h, cs, now, lim, fp, perClient), nil
}
