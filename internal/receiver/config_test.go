package receiver

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
)

// TestSettingNames: every variable envconfig reads into Config is known
// to smtp-stdio, so no setting is ever reported as unknown; a misspelt
// name is reported, smtp-send's are left to smtp-send.
func TestSettingNames(t *testing.T) {
	var b bytes.Buffer
	if err := envconfig.Usagef(Prefix, &Config{}, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/bin", "SMTP_LOCAL_DOMAIN=example.org", "SMTP_SMARTHOST=relay.example:587", "SMTP_SEND_RUN_TIME=1m"}
	for _, k := range strings.Fields(b.String()) {
		env = append(env, k+"=x")
	}
	got, err := unknownSettings(env)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"SMTP_LOCAL_DOMAIN"}; !slices.Equal(got, want) {
		t.Errorf("unknown %v, want %v", got, want)
	}
}

// TestSyslogSettingIsConfigs: the setting refuse reads on its own is
// Config's field, with the same type and tags, so it reads the same
// variable.
func TestSyslogSettingIsConfigs(t *testing.T) {
	for f := range reflect.TypeFor[syslogSetting]().Fields() {
		cf, ok := reflect.TypeFor[Config]().FieldByName(f.Name)
		if !ok || cf.Type != f.Type || cf.Tag.Get("split_words") != f.Tag.Get("split_words") || cf.Tag.Get("default") != f.Tag.Get("default") {
			t.Errorf("syslogSetting.%s %v %q is not Config's (%v %q)", f.Name, f.Type, f.Tag, cf.Type, cf.Tag)
		}
	}
	got, err := envnames.Names(&syslogSetting{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"SMTP_SYSLOG_SOCKET"}) {
		t.Errorf("syslogSetting reads %v", got)
	}
}

// unprefixedValues gives each kind of setting, as envconfig's usage names
// it, a value that differs from every default, so that a variable read
// under its bare name shows in the loaded Config.
var unprefixedValues = map[string]string{
	"String":                         "evil",
	"Integer":                        "7",
	"Duration":                       "7s",
	"True or False":                  "false",
	"Comma-separated list of String": "evil.example",
}

// TestUnprefixedNamesIgnored sets the bare name of every setting
// (HOSTNAME, SPOOL_DIR, BARE_LINE_ENDINGS, ...) as a careless
// environment would, and finds the loaded configuration unchanged.
func TestUnprefixedNamesIgnored(t *testing.T) {
	t.Setenv("SMTP_HOSTNAME", "mx.example")
	want, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := envconfig.Usagef(Prefix, &Config{}, &b, "{{range .}}{{usage_key .}}\t{{usage_type .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(b.String()) {
		key, typ, _ := strings.Cut(strings.TrimSpace(line), "\t")
		v, ok := unprefixedValues[typ]
		if !ok {
			t.Fatalf("%s: no test value for type %q", key, typ)
		}
		bare := strings.TrimPrefix(key, envnames.Prefix)
		switch bare {
		case "BARE_LINE_ENDINGS":
			v = "normalize"
		case "LOG":
			v = "off"
		}
		t.Setenv(bare, v)
	}
	got, err := Load()
	if err != nil {
		t.Fatalf("with the bare names set: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("a bare name changed the configuration:\n got %+v\nwant %+v", got, want)
	}
}

// TestBareLineEndingsError: a bad SMTP_BARE_LINE_ENDINGS is named in the
// error; a bad BARE_LINE_ENDINGS is not read at all.
func TestBareLineEndingsError(t *testing.T) {
	t.Setenv("SMTP_HOSTNAME", "mx.example")
	t.Setenv("BARE_LINE_ENDINGS", "lf")
	if _, err := Load(); err != nil {
		t.Errorf("BARE_LINE_ENDINGS was read: %v", err)
	}
	t.Setenv("SMTP_BARE_LINE_ENDINGS", "lf")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "SMTP_BARE_LINE_ENDINGS ") {
		t.Errorf("error %v, want one naming SMTP_BARE_LINE_ENDINGS", err)
	}
}
