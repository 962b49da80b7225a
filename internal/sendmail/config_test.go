package sendmail

import (
	"slices"
	"strings"
	"testing"
)

// TestLoad: SMTP_SENDMAIL_DOMAIN defaults to SMTP_HOSTNAME; an unknown
// SMTP_SENDMAIL_* is an error; an SMTP_* that no program reads is
// returned for a warning, while smtp-stdio's and smtp-send's are not.
func TestLoad(t *testing.T) {
	t.Setenv("SMTP_SPOOL_DIR", "/s")
	t.Setenv("SMTP_HOSTNAME", "h.test")
	environ := []string{"SMTP_SPOOL_DIR=/s", "SMTP_HOSTNAME=h.test", "SMTP_MAX_RECIPIENTS=5", "SMTP_SMARTHOST=x", "SMTP_SEND_RUN_TIME=1m", "SMTP_SPOOLDIR=typo", "PATH=/bin"}
	c, unknown, err := Load(environ)
	if err != nil {
		t.Fatal(err)
	}
	if c.SpoolDir != "/s" || c.Hostname != "h.test" || c.SendmailDomain != "h.test" {
		t.Errorf("%+v", c)
	}
	if !slices.Equal(unknown, []string{"SMTP_SPOOLDIR"}) {
		t.Errorf("unknown %v", unknown)
	}
	t.Setenv("SMTP_SENDMAIL_DOMAIN", "d.test")
	if c, _, err := Load(append(environ, "SMTP_SENDMAIL_DOMAIN=d.test")); err != nil || c.SendmailDomain != "d.test" {
		t.Errorf("%+v, %v", c, err)
	}
	t.Setenv("SMTP_SENDMAIL_DOMAIN", "not a domain")
	if _, _, err := Load(environ); err == nil || !strings.Contains(err.Error(), "SMTP_SENDMAIL_DOMAIN") {
		t.Errorf("a bad SMTP_SENDMAIL_DOMAIN: %v", err)
	}
	t.Setenv("SMTP_SENDMAIL_DOMAIN", "")
	if _, _, err := Load(append(environ, "SMTP_SENDMAIL_DOMAINS=d.test")); err == nil || !strings.Contains(err.Error(), "SMTP_SENDMAIL_DOMAINS") {
		t.Errorf("an unknown SMTP_SENDMAIL_ variable: %v", err)
	}
}
