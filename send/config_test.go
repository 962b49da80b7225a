package send

import (
	"slices"
	"testing"
	"time"
)

func TestParseSmarthosts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		mode TLSMode
		want []Host
		err  bool
	}{
		{"mx.example.org", TLSStartTLS, []Host{{"mx.example.org:587", "mx.example.org"}}, false},
		{"mx.example.org", TLSImplicit, []Host{{"mx.example.org:465", "mx.example.org"}}, false},
		{"a.test:2525, b.test", TLSNone, []Host{{"a.test:2525", "a.test"}, {"b.test:25", "b.test"}}, false},
		{"[::1]:25,[::1]", TLSNone, []Host{{"[::1]:25", "::1"}, {"[::1]:25", "::1"}}, false},
		{"a.test,,b.test", TLSNone, nil, true},
		{"", TLSNone, nil, true},
		{":25", TLSNone, nil, true},
	} {
		got, err := ParseSmarthosts(tc.in, tc.mode)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("ParseSmarthosts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	var m TLSMode
	if err := m.UnmarshalText([]byte("TLS")); err != nil || m != TLSImplicit || m.String() != "tls" {
		t.Errorf("UnmarshalText: %v %v", m, err)
	}
	if err := m.UnmarshalText([]byte("ssl")); err == nil {
		t.Error("ssl accepted")
	}
	// Case folds in ASCII only: U+017F (long s) is not an s.
	if err := m.UnmarshalText([]byte("\u017ftarttls")); err == nil {
		t.Errorf("U+017F taken for s: %v", m)
	}
}

func TestBackoff(t *testing.T) {
	c := Config{BackoffMin: 5 * time.Minute, BackoffMax: time.Hour}
	var got []time.Duration
	for a := 1; a <= 6; a++ {
		got = append(got, c.backoff(a))
	}
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour}
	if !slices.Equal(got, want) {
		t.Errorf("backoff %v, want %v", got, want)
	}
	if d := c.backoff(1 << 20); d != time.Hour {
		t.Errorf("backoff after many attempts %v", d)
	}
}

// The per-destination concurrency limit defaults to a fifth of the
// connections, rounded up, at least 2; a value set is kept.
func TestDestinationConcurrencyDefault(t *testing.T) {
	for _, c := range []struct{ conns, set, want int }{{8, 0, 2}, {1, 0, 2}, {20, 0, 4}, {21, 0, 5}, {100, 0, 20}, {8, 7, 7}} {
		got := Config{Connections: c.conns, DestinationConcurrency: c.set}.withDefaults().DestinationConcurrency
		if got != c.want {
			t.Errorf("%d connections, %d set: %d, want %d", c.conns, c.set, got, c.want)
		}
	}
}
