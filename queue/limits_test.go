package queue

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// ClipText keeps short texts, and cuts long ones on a UTF-8 boundary to
// exactly MaxText octets or a little less, ending in TextCut.
func TestClipText(t *testing.T) {
	if s := strings.Repeat("a", MaxText); ClipText(s) != s {
		t.Error("a text of MaxText octets was cut")
	}
	for _, unit := range []string{"a", "é", "€", "𝄞", "\xff", "\x80"} {
		for pad := range 4 {
			s := strings.Repeat("a", pad) + strings.Repeat(unit, 2*MaxText)
			c := ClipText(s)
			if len(c) > MaxText || len(c) < MaxText-3 || !strings.HasSuffix(c, TextCut) ||
				!strings.HasPrefix(s, strings.TrimSuffix(c, TextCut)) {
				t.Errorf("%q pad %d: %d octets %q", unit, pad, len(c), c[max(0, len(c)-12):])
			}
			if utf8.ValidString(s) && !utf8.ValidString(c) {
				t.Errorf("%q pad %d: cut inside a UTF-8 sequence", unit, pad)
			}
		}
	}
}

// worstRcpt is a recipient whose JSON encoding is as long as the state
// writer allows: the longest address, a 200 kB multi-line 451 reply,
// every other free-text field as long, all of characters that
// encoding/json escapes as six octets, the longest status, number and
// time.
func worstRcpt(i int) Rcpt {
	var reply strings.Builder
	for reply.Len() < 200<<10 {
		reply.WriteString("451-4.3.0 <&> mailbox busy, \x01 try again later\r\n")
	}
	long := strings.Repeat("<", 200<<10)
	addr := fmt.Sprintf("%s%04d@x.y", strings.Repeat("<", spool.MaxAddrLen-8), i)
	return Rcpt{
		Addr: addr, Status: Pending, Code: math.MinInt64, Enhanced: long,
		Text: reply.String(), Stage: long, Relay: long, DSN: long, Action: long, Delayed: long, Expired: true,
		At: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -(23*3600+59*60))),
	}
}

// Every state file the writer can produce is readable: the worst case,
// spool.MaxRecipients recipients each with the longest address and a 200 kB
// multi-line reply (the smarthost of issue 8 item 8), fully escaped, is
// written and read back, within the reader's limit. One recipient more,
// or a longer address, is refused by the writer rather than written
// unreadable.
func TestStateWorstCaseReadable(t *testing.T) {
	q := newQueue(t)
	end := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -(23*3600+59*60)))
	st := &State{ID: strings.Repeat("9", spool.MaxQueueIDLen), Seq: math.MaxUint64 - 1, Arrival: end,
		Attempts: math.MinInt64, First: end, Last: end, Next: end.Add(-time.Hour)}
	for i := range spool.MaxRecipients {
		st.Rcpts = append(st.Rcpts, worstRcpt(i))
	}
	addrs := make([]string, len(st.Rcpts))
	for i, r := range st.Rcpts {
		addrs[i] = r.Addr
	}
	name, err := q.writeState(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(q.sp.Path(StateDir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worst-case state file: %d bytes, reader's limit %d", fi.Size(), maxStateSize)
	if fi.Size() > int64(maxStateSize) {
		t.Errorf("state file %d bytes, past the reader's limit %d", fi.Size(), maxStateSize)
	}
	got, err := q.LoadState([]string{name})
	if err != nil {
		t.Fatalf("the writer's worst case is unreadable: %v", err)
	}
	if len(got.Rcpts) != spool.MaxRecipients {
		t.Fatalf("%d recipients", len(got.Rcpts))
	}
	for i, r := range got.Rcpts {
		if r.Addr != addrs[i] || len(r.Text) > MaxText || !strings.HasSuffix(r.Text, TextCut) ||
			!strings.HasPrefix(r.Text, "451-4.3.0 <&> mailbox busy") {
			t.Fatalf("recipient %d: %q %q", i, r.Addr, r.Text)
		}
	}

	st.Rcpts = append(st.Rcpts, Rcpt{Addr: "one@more"})
	if _, err := q.writeState(st, nil); err == nil {
		t.Error("a state of spool.MaxRecipients+1 recipients was written")
	}
	st.Rcpts = []Rcpt{{Addr: strings.Repeat("a", spool.MaxAddrLen+1)}}
	if _, err := q.writeState(st, nil); err == nil {
		t.Error("an address longer than spool.MaxAddrLen was written")
	}
}

// maxRcptJSON is the longest recipient record, and not much more: a
// recipient whose every string is '<' (six octets each in JSON) up to its
// limit comes within a few dozen octets of it.
func TestRcptBound(t *testing.T) {
	r := worstRcpt(0)
	r.Addr = strings.Repeat("<", spool.MaxAddrLen)
	r.Text = strings.Repeat("<", 200<<10)
	r.clip()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxRcptJSON || maxRcptJSON-len(b) > 7*len(TextCut)*jsonEscape {
		t.Errorf("worst record %d octets, bound %d", len(b), maxRcptJSON)
	}
}

// Every journal the writer can produce is readable: spool.MaxRecipients records
// of one worst-case recipient each read back whole, not torn. A journal
// already at the reader's limit takes no more records.
func TestJournalWorstCaseReadable(t *testing.T) {
	q := newQueue(t)
	id := testEnvelope(t).QueueID
	for i := range spool.MaxRecipients {
		r := worstRcpt(i)
		r.Status = Done
		if err := q.appendJournal(id, JournalEntry{Set: []Update{{Index: math.MinInt64, Rcpt: r}}}); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	entries, torn, err := q.ReadJournal(id)
	if err != nil || torn || len(entries) != spool.MaxRecipients {
		t.Fatalf("%d records, torn %v, err %v", len(entries), torn, err)
	}

	full := q.sp.Path(StateDir, JournalName("20261121T111825.0000000000000001"))
	if err := os.WriteFile(full, []byte(strings.Repeat("\n", maxJournalSize)), spool.FileMode); err != nil {
		t.Fatal(err)
	}
	e := JournalEntry{Set: []Update{{Index: 0, Rcpt: Rcpt{Addr: "a@b", Status: Done}}}}
	if err := q.appendJournal("20261121T111825.0000000000000001", e); err == nil {
		t.Error("a record appended past the reader's limit")
	}
}
