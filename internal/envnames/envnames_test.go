package envnames_test

import (
	"slices"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/receiver"
)

func TestUnknown(t *testing.T) {
	env := []string{
		"PATH=/bin",
		"SMTP_SPOOL_DIR=/var/spool/smtp-stdio",
		"SMTP_LOCAL_DOMAIN=example.org", // typo
		"SMTP_SMARTHOST=relay.example:587",
		"SMTP_SMARTHOST_TLS=starttls",
		"SMTP_SMARTHOSTS=x", // typo, outside smtp-send's space
		"SMTP_SEND_RUN_TIME=4m",
		"SMTPX=1",
		"SMTP_=1",
		"RELAYCLIENT=",
		"SMTP_RATE_WINDOW=1m",
	}
	receiverNames, err := envnames.Known(&receiver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	got := envnames.Unknown(env, receiverNames.Has, envnames.InSenderSpace)
	want := []string{"SMTP_LOCAL_DOMAIN", "SMTP_SMARTHOSTS", "SMTP_"}
	if !slices.Equal(got, want) {
		t.Errorf("Unknown = %v, want %v", got, want)
	}
	if got := envnames.Unknown(env); len(got) != 8 {
		t.Errorf("with nothing known: %v", got)
	}
}
