package send

import (
	"context"
	"sync"

	"github.com/smtp-stdio/smtp-stdio/queue"
)

// sched hands a run's due messages to its workers, and keeps the
// per-destination concurrency limit (Config.DestinationConcurrency): at
// most limit workers deliver to one MX destination at a time, so that
// one slow or unreachable domain cannot take every connection while mail
// to other domains waits (Postfix's default_destination_concurrency_limit).
//
// A worker whose message goes to a destination already at its limit does
// not wait for it: it postpones the message (those recipients) and takes
// the next; the message comes back, before any not yet started, when the
// destination has a free slot again. Slots are taken without waiting and
// a worker holds at most one, so workers never wait for each other.
type sched struct {
	ctx   context.Context
	limit int

	mu   sync.Mutex
	cond *sync.Cond
	due  []queue.Entry
	next int // due[next:] not yet handed out
	// later holds the messages waiting for a destination's slot, by
	// destination, oldest first; keys lists those destinations in the
	// order their first message was put aside; waiting counts them all.
	later   map[string][]*queue.Entry
	keys    []string
	waiting int
	slots   map[string]int // destinations' slots in use, by destKey
	busy    int            // workers with a message in hand
	stop    bool           // the run's context is done: hand out nothing more (wakes take)
}

// newSched returns the scheduler of the messages due, stopping when ctx
// is done; it returns, too, the function that releases ctx's watch.
func newSched(ctx context.Context, due []queue.Entry, limit int) (*sched, func() bool) {
	s := &sched{ctx: ctx, limit: max(limit, 1), due: due, slots: map[string]int{}, later: map[string][]*queue.Entry{}}
	s.cond = sync.NewCond(&s.mu)
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.stop = true
		s.mu.Unlock()
		s.cond.Broadcast()
	})
	return s, stop
}

// take returns the next message for a worker, and whether it was
// postponed before (it was started already): a postponed message whose
// destination has a free slot first, else the next due message. It waits
// while every message left is postponed and other workers are busy, and
// returns nil when there is nothing more to deliver or the run stops.
func (s *sched) take() (*queue.Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The context's own state is asked too: AfterFunc's call may come
	// after this.
	for !s.stop && s.ctx.Err() == nil {
		for i, k := range s.keys {
			if s.slots[k] >= s.limit {
				continue
			}
			e := s.later[k][0]
			if s.later[k] = s.later[k][1:]; len(s.later[k]) == 0 {
				delete(s.later, k)
				s.keys = append(s.keys[:i], s.keys[i+1:]...)
			}
			s.waiting--
			s.busy++
			return e, true
		}
		if s.next < len(s.due) {
			s.next++
			s.busy++
			return &s.due[s.next-1], false
		}
		if s.waiting == 0 && s.busy == 0 {
			return nil, false
		}
		s.cond.Wait()
	}
	return nil, false
}

// wait puts e aside until destination key has a free slot; the worker
// that calls it is still busy.
func (s *sched) wait(e *queue.Entry, key string) {
	s.mu.Lock()
	if len(s.later[key]) == 0 {
		s.keys = append(s.keys, key)
	}
	s.later[key] = append(s.later[key], e)
	s.waiting++
	s.mu.Unlock()
}

// done is called when a worker has finished with the message it took.
func (s *sched) done() {
	s.mu.Lock()
	s.busy--
	s.mu.Unlock()
	s.cond.Broadcast()
}

// acquire takes a slot of destination key if one is free.
func (s *sched) acquire(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots[key] >= s.limit {
		return false
	}
	s.slots[key]++
	return true
}

// release gives back a slot of destination key, and wakes the workers
// waiting for postponed messages.
func (s *sched) release(key string) {
	s.mu.Lock()
	if s.slots[key]--; s.slots[key] <= 0 {
		delete(s.slots, key)
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// left returns the number of messages not delivered when the run
// stopped: never handed out, or postponed and not taken again.
func (s *sched) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.due) - s.next + s.waiting
}
