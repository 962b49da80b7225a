package receiver

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
)

// TestSettingNames: envnames' list of smtp-stdio's variables is exactly
// the set envconfig reads into Config, so no setting is ever reported as
// unknown and no stale name is accepted.
func TestSettingNames(t *testing.T) {
	var b bytes.Buffer
	if err := envconfig.Usagef(Prefix, &Config{}, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(b.String())
	slices.Sort(want)
	got := envnames.Receiver()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("settingNames:\n%v\nenvconfig:\n%v", got, want)
	}
}
