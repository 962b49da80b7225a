package main

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
)

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
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envnames.Prefix) {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("SMTP_SMARTHOST", "relay.test:587")
	var want settings
	if _, err := loadSettings(&want); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := envconfig.Usagef(envPrefix, &settings{}, &b, "{{range .}}{{usage_key .}}\t{{usage_type .}}\n{{end}}"); err != nil {
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
	var got settings
	if _, err := loadSettings(&got); err != nil {
		t.Fatalf("with the bare names set: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("a bare name changed the settings:\n got %+v\nwant %+v", got, want)
	}
	c, err := got.config()
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
	if code := run(nil, &stdout, &stderr); code != exConfig {
		t.Fatalf("exit %d; stderr %q", code, stderr.String())
	}
	if strings.ContainsAny(stderr.String(), "\x1b\u202e") || !strings.Contains(stderr.String(), `8\x1b[2J\u202e`) {
		t.Errorf("stderr %q", stderr.String())
	}
}
