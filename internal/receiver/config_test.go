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

func TestUnknownSettings(t *testing.T) {
	env := []string{
		"PATH=/bin",
		"SMTP_SPOOL_DIR=/var/spool/smtp-stdio",
		"SMTP_LOCAL_DOMAIN=example.org", // typo
		"SMTP_MAX_MESAGE_SIZE=10",       // typo
		"SMTP_SMARTHOST=relay.example:587",
		"SMTP_SMARTHOST_TLS=starttls",
		"SMTP_SEND_RUN_TIME=4m",
		"SMTPX=1",
		"RELAYCLIENT=",
		"TCPREMOTEIP=192.0.2.1",
		"SMTP_RATE_WINDOW=1m",
	}
	got := unknownSettings(env)
	want := []string{"SMTP_LOCAL_DOMAIN", "SMTP_MAX_MESAGE_SIZE"}
	if !slices.Equal(got, want) {
		t.Errorf("unknownSettings = %v, want %v", got, want)
	}
}
