package envnames

import (
	"strings"
	"testing"
)

// TestProcessReadsOnlyPrefixed: a split_words field reads SMTP_ and its
// name, never the bare name, set or not.
func TestProcessReadsOnlyPrefixed(t *testing.T) {
	type spec struct {
		SpoolDir string `split_words:"true" default:"/var/spool/x"`
		Hostname string
		Inner    struct {
			MaxThings int `split_words:"true"`
		}
	}
	t.Setenv("SPOOL_DIR", "/tmp/evil")
	t.Setenv("HOSTNAME", "evil")
	t.Setenv("MAX_THINGS", "7")
	t.Setenv("INNER_MAX_THINGS", "7")
	var s spec
	if err := Process(&s); err != nil {
		t.Fatal(err)
	}
	if s.SpoolDir != "/var/spool/x" || s.Hostname != "" || s.Inner.MaxThings != 0 {
		t.Errorf("unprefixed names were read: %+v", s)
	}
	t.Setenv("SMTP_SPOOL_DIR", "/srv/spool")
	t.Setenv("SMTP_HOSTNAME", "mx.example")
	t.Setenv("SMTP_INNER_MAX_THINGS", "3")
	if err := Process(&s); err != nil {
		t.Fatal(err)
	}
	if s.SpoolDir != "/srv/spool" || s.Hostname != "mx.example" || s.Inner.MaxThings != 3 {
		t.Errorf("prefixed names not read: %+v", s)
	}
}

// TestProcessRefusesAltKey: a field tagged envconfig:"X", at any depth,
// is refused before anything is read, since envconfig would fall back
// to the bare X.
func TestProcessRefusesAltKey(t *testing.T) {
	type inner struct {
		Level string `envconfig:"LEVEL"`
	}
	for name, spec := range map[string]any{
		"top": &struct {
			Hostname string `envconfig:"HOSTNAME"`
		}{},
		"nested": &struct{ Log inner }{},
		"pointer": &struct {
			Log *inner
		}{},
	} {
		t.Setenv("HOSTNAME", "evil")
		t.Setenv("LEVEL", "evil")
		err := Process(spec)
		if err == nil || !strings.Contains(err.Error(), "without the SMTP_ prefix") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := Process(&struct {
		Hidden string `envconfig:"HOSTNAME" ignored:"true"`
	}{}); err != nil {
		t.Errorf("an ignored field: %v", err)
	}
	if err := Process(new(int)); err == nil {
		t.Error("a non-struct accepted")
	}
}
