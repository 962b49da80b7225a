package envnames

import (
	"slices"
	"testing"
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
	got := Unknown(env, IsReceiver, InSenderSpace)
	want := []string{"SMTP_LOCAL_DOMAIN", "SMTP_SMARTHOSTS", "SMTP_"}
	if !slices.Equal(got, want) {
		t.Errorf("Unknown = %v, want %v", got, want)
	}
	if got := Unknown(env); len(got) != 8 {
		t.Errorf("with nothing known: %v", got)
	}
}
