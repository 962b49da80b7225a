package sender

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/receiver"
)

// clearSMTP unsets every SMTP_* variable for the test.
func clearSMTP(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envnames.Prefix) {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// bareValues gives each kind of setting, as envconfig's usage names it, a
// value that differs from its default, so that a variable read under its
// bare name shows in the loaded settings.
var bareValues = map[string]string{
	"String":        "evil",
	"Integer":       "7",
	"Duration":      "7s",
	"True or False": "false",
	"TLSMode":       "none",
	"Level":         "debug",
}

// TestUnprefixedNamesIgnored sets the bare name of every setting
// (HOSTNAME, SPOOL_DIR, SMARTHOST, SMARTHOST_TLS, SEND_RUN_TIME, ...), as
// a container or a careless shell does, and finds the loaded settings
// unchanged: only SMTP_* names are read.
func TestUnprefixedNamesIgnored(t *testing.T) {
	clearSMTP(t)
	t.Setenv("SMTP_SMARTHOST", "relay.test:587")
	want, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := envconfig.Usagef("smtp", &Config{}, &b, "{{range .}}{{usage_key .}}\t{{usage_type .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(b.String()) {
		key, typ, _ := strings.Cut(strings.TrimSpace(line), "\t")
		v, ok := bareValues[typ]
		if !ok {
			t.Fatalf("%s: no test value for type %q", key, typ)
		}
		t.Setenv(strings.TrimPrefix(key, envnames.Prefix), v)
	}
	got, err := Load()
	if err != nil {
		t.Fatalf("with the bare names set: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("a bare name changed the settings:\n got %+v\nwant %+v", got, want)
	}
	c, err := got.SendConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname == "evil" || len(c.Smarthosts) != 1 || c.Smarthosts[0].Addr != "relay.test:587" {
		t.Errorf("config %+v", c)
	}
}

// TestConfigErrorEscaped: a configuration error quotes the bad value,
// which comes from the environment; it reaches the terminal escaped.
func TestConfigErrorEscaped(t *testing.T) {
	t.Setenv("SMTP_SPOOL_DIR", t.TempDir())
	t.Setenv("SMTP_SMARTHOST", "relay.test")
	t.Setenv("SMTP_SEND_CONNECTIONS", "8\x1b[2J\u202e")
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"smtp-send"}, &stdout, &stderr); code != exitConfig {
		t.Fatalf("exit %d; stderr %q", code, stderr.String())
	}
	if strings.ContainsAny(stderr.String(), "\x1b\u202e") || !strings.Contains(stderr.String(), `8\x1b[2J\u202e`) {
		t.Errorf("stderr %q", stderr.String())
	}
}

// The settings become a send.Config: the password from its file (without
// the newline), default ports by TLS mode, reuse switched off.
func TestSettingsConfig(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	clearSMTP(t)
	t.Setenv("SMTP_SMARTHOST", "a.test, b.test:2525")
	t.Setenv("SMTP_SMARTHOST_TLS", "tls")
	t.Setenv("SMTP_SMARTHOST_USERNAME", "u")
	t.Setenv("SMTP_SMARTHOST_PASSWORD_FILE", pw)
	t.Setenv("SMTP_SEND_REUSE", "false")
	t.Setenv("SMTP_SEND_DESTINATION_CONCURRENCY", "3")
	t.Setenv("SMTP_HOSTNAME", "me.test")
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if unknown, err := unknownSettings(os.Environ()); err != nil || len(unknown) != 0 {
		t.Fatal(unknown, err)
	}
	c, err := s.SendConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != "s3cret" || c.Smarthosts[0].Addr != "a.test:465" || c.Smarthosts[1].Addr != "b.test:2525" ||
		!c.NoReuse || c.Hostname != "me.test" || c.Connections != 8 || c.QueueLifetime != 120*time.Hour || c.DestinationConcurrency != 3 ||
		c.TLSConfig.ServerName != "" || c.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Errorf("config %+v", c)
	}
}

// TestSettingNames: every variable smtp-send reads is known; a typo in
// smtp-send's own space is a configuration error; smtp-stdio's variables
// are known too, and any other SMTP_* name is returned for a warning.
func TestSettingNames(t *testing.T) {
	names, err := envnames.Names(&Config{})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/bin", "SMTP_LOCAL_DOMAINS=example.org", "SMTP_MAX_RECIPIENTS=5", "SMTP_SPOOLDIR=/elsewhere"}
	for _, k := range names {
		env = append(env, k+"=x")
	}
	if got, err := unknownSettings(env); err != nil || !slices.Equal(got, []string{"SMTP_SPOOLDIR"}) {
		t.Errorf("unknown %v, %v", got, err)
	}
	clearSMTP(t)
	t.Setenv("SMTP_SPOOLDIR", "/elsewhere")
	if _, err := Load(); err != nil {
		t.Fatal(err)
	}
	for _, typo := range []string{"SMTP_SEND_CONECTIONS", "SMTP_SMARTHOST_PASSWD", "SMTP_SEND_"} {
		t.Run(typo, func(t *testing.T) {
			t.Setenv(typo, "2")
			if _, err := Load(); err == nil || !strings.Contains(err.Error(), "unknown variable "+typo) {
				t.Errorf("Load: %v", err)
			}
		})
	}
}

// TestNamesLeftToSmtpSend: every variable smtp-send reads is in its own
// space (envnames.InSenderSpace), which smtp-stdio leaves alone without
// knowing Config, or is also one of smtp-stdio's (SMTP_SPOOL_DIR,
// SMTP_HOSTNAME); and no setting of smtp-stdio is in that space. So
// neither program warns of the other's variables.
func TestNamesLeftToSmtpSend(t *testing.T) {
	own, err := envnames.Names(&Config{})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := envnames.Known(&receiver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range own {
		if !envnames.InSenderSpace(k) && !theirs.Has(k) {
			t.Errorf("%s is neither in smtp-send's space nor one of smtp-stdio's: smtp-stdio would warn of it", k)
		}
	}
	for k := range theirs {
		if envnames.InSenderSpace(k) {
			t.Errorf("smtp-stdio's %s is in smtp-send's space: smtp-send would refuse it as a typo", k)
		}
	}
}
