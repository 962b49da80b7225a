package transcript

import (
	"fmt"
	"strings"
	"testing"
)

// Committed is a message that the session under test committed.
type Committed struct {
	ID string
	// Envelope is the message's envelope as "name: value" lines, as the
	// spool file holds it; nil where the target keeps none.
	Envelope []string
	Content  []byte
}

// CheckMessages fails the test, without stopping it, unless got are the
// script's messages, in order, and no others.
func (s *Script) CheckMessages(t testing.TB, got []Committed) {
	t.Helper()
	for i := range max(len(got), len(s.Messages)) {
		switch {
		case i >= len(got):
			t.Errorf("%s: message %d not committed, want:\n%s", s.where(s.Messages[i].Line, i), i+1, s.Messages[i].text())
		case i >= len(s.Messages):
			t.Errorf("unexpected message %s committed:\n%s", got[i].ID, got[i].Content)
		default:
			if err := s.Messages[i].check(got[i]); err != nil {
				t.Errorf("%s: message %s: %v", s.where(s.Messages[i].Line, i), got[i].ID, err)
			}
		}
	}
}

// text is the message as its M: lines give it, for failure messages.
func (m *Message) text() string {
	var b strings.Builder
	for _, l := range m.Content {
		b.WriteString(l + "\r\n")
	}
	return b.String()
}

// check returns how got differs from m.
func (m *Message) check(got Committed) error {
	if len(m.Envelope) > 0 {
		if got.Envelope == nil {
			return fmt.Errorf("E: lines, but this target keeps no envelope")
		}
		if err := checkEnvelope(m.Envelope, got.Envelope); err != nil {
			return err
		}
	}
	if len(m.Content) == 0 {
		return nil
	}
	content := string(got.Content)
	lines := strings.Split(strings.TrimSuffix(content, "\r\n"), "\r\n")
	ok := strings.HasSuffix(content, "\r\n") && len(lines) == len(m.Content)
	for i := 0; ok && i < len(lines); i++ {
		ok = Match(m.Content[i], lines[i])
	}
	if !ok {
		return fmt.Errorf("\n%q\nwant\n%q", content, m.text())
	}
	return nil
}

// checkEnvelope checks that each field named in want has, in got, exactly
// the values want gives it, in order. Space around a value does not
// count: "E: body:" is the empty BODY.
func checkEnvelope(want, got []string) error {
	byName := func(lines []string) map[string][]string {
		m := map[string][]string{}
		for _, l := range lines {
			name, value, _ := strings.Cut(l, ":")
			m[name] = append(m[name], strings.TrimSpace(value))
		}
		return m
	}
	gotBy := byName(got)
	for name, ws := range byName(want) {
		gs := gotBy[name]
		ok := len(gs) == len(ws)
		for i := 0; ok && i < len(ws); i++ {
			ok = Match(ws[i], gs[i])
		}
		if !ok {
			return fmt.Errorf("envelope %s: %q, want %q", name, gs, ws)
		}
	}
	return nil
}
