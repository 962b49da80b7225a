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

// TestSendmailSpace: SMTP_SENDMAIL_* is sendmail's own namespace, which
// Unknown leaves alone for smtp-stdio's and smtp-send's warnings (both
// call it), and which is neither in smtp-send's space nor among the
// receiver's settings.
func TestSendmailSpace(t *testing.T) {
	env := []string{"SMTP_SENDMAIL_DOMAIN=example.org", "SMTP_SENDMAIL_DOMIAN=typo", "SMTP_SENDMAILX=1", "SMTP_SEND_RUN_TIME=4m"}
	receiverNames, err := envnames.Known(&receiver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	got := envnames.Unknown(env, receiverNames.Has, envnames.InSenderSpace)
	if want := []string{"SMTP_SENDMAILX"}; !slices.Equal(got, want) {
		t.Errorf("Unknown = %v, want %v", got, want)
	}
	for _, n := range []string{"SMTP_SENDMAIL_DOMAIN", "SMTP_SENDMAIL_"} {
		if !envnames.InSendmailSpace(n) || envnames.InSenderSpace(n) || receiverNames.Has(n) {
			t.Errorf("%s: sendmail's %v, smtp-send's %v, receiver's %v", n,
				envnames.InSendmailSpace(n), envnames.InSenderSpace(n), receiverNames.Has(n))
		}
	}
	for _, n := range []string{"SMTP_SENDMAILX", "SMTP_SEND_RUN_TIME", "SMTP_SPOOL_DIR"} {
		if envnames.InSendmailSpace(n) {
			t.Errorf("%s in sendmail's space", n)
		}
	}
}
