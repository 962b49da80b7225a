package envnames

import (
	"bytes"
	"encoding"
	"go/token"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"
)

// mode is a setting of its own type, read with UnmarshalText: a struct
// that envconfig reads as one value, not as nested settings.
type mode struct{ v string }

func (m *mode) UnmarshalText(b []byte) error { m.v = string(b); return nil }

var _ encoding.TextUnmarshaler = (*mode)(nil)

// Embedded settings are read without the field's name.
type Embedded struct {
	LogLevel string `split_words:"true"`
}

// spec has a field of each shape envconfig names differently.
type spec struct {
	SpoolDir     string `split_words:"true" default:"/var/spool/x"`
	Hostname     string
	MaxLineBytes int    `split_words:"true"`
	TLSCAFile    string `split_words:"true"`
	Mode         mode
	Limits       struct {
		MaxThings int `split_words:"true"`
	}
	Tuning *struct {
		Window int
	}
	Embedded
	Hidden  string `ignored:"true"`
	private string
}

// TestNames proves the derivation: Names lists, in field order, exactly
// the variables Process reads. Each listed variable, set alone, changes
// the struct Process fills; the names it does not list (the bare, the
// ignored, the unexported, a split the field did not ask for) change
// nothing.
func TestNames(t *testing.T) {
	got, err := Names(&spec{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SMTP_SPOOL_DIR", "SMTP_HOSTNAME", "SMTP_MAX_LINE_BYTES", "SMTP_TLSCA_FILE", "SMTP_MODE",
		"SMTP_LIMITS_MAX_THINGS", "SMTP_TUNING_WINDOW", "SMTP_LOG_LEVEL"}
	if !slices.Equal(got, want) {
		t.Fatalf("Names = %v, want %v", got, want)
	}
	var zero spec
	if err := Process(&zero); err != nil {
		t.Fatal(err)
	}
	for _, k := range got {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, "7")
			var s spec
			if err := Process(&s); err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(s, zero) {
				t.Errorf("%s is listed but not read", k)
			}
		})
	}
	for _, k := range []string{"SPOOL_DIR", "SMTP_SPOOLDIR", "SMTP_MAXLINEBYTES", "SMTP_MAX_THINGS", "SMTP_EMBEDDED_LOG_LEVEL",
		"SMTP_HIDDEN", "SMTP_PRIVATE", "SMTP_TUNING", "SMTP_LIMITS"} {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, "7")
			var s spec
			if err := Process(&s); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s, zero) {
				t.Errorf("%s is read but not listed: %+v", k, s)
			}
		})
	}
	if _, err := Names(spec{}); err == nil {
		t.Error("Names of a struct, not a pointer to one: no error")
	}
	if _, err := Known(&spec{}, new(int)); err == nil {
		t.Error("Known of a pointer to int: no error")
	}
}

// envconfigNames returns the variables envconfig itself names for spec.
func envconfigNames(t testing.TB, spec any) []string {
	var b bytes.Buffer
	if err := envconfig.Usagef(envconfigPrefix, spec, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	return strings.Fields(b.String())
}

// splitSeeds are field names of every shape: capitals alone, runs of
// capitals before and after others, digits, non-ASCII letters.
var splitSeeds = []string{"SpoolDir", "SmarthostCAFile", "SMTPHost", "MaxLineLength", "URLs", "ABC", "AbcDEF", "X", "XY",
	"A1B2", "ABcD", "X2Y", "Éclair", "XÉcole", "ÜnterALL", "SendTmpMaxAge", "HTTPServerURL"}

// TestNamesAsEnvconfig: Names names the variables as envconfig does,
// field by field (the programs' own Config structs are compared in
// TestREADMETables, through --help).
func TestNamesAsEnvconfig(t *testing.T) {
	for _, name := range splitSeeds {
		spec := reflect.New(reflect.StructOf([]reflect.StructField{
			{Name: name, Type: reflect.TypeFor[string](), Tag: `split_words:"true"`},
		})).Interface()
		if got, want := must(Names(spec)), envconfigNames(t, spec); !slices.Equal(got, want) {
			t.Errorf("%q: Names %v, envconfig %v", name, got, want)
		}
	}
	for _, spec := range []any{
		&spec{},
		&struct {
			SMTPHost, Ünter string `split_words:"true"`
			NotSplit        string `split_words:"false"`
			Alt             string `envconfig:"OTHER"`
			P               *int
			PP              **struct{ In int }
			PS              *struct{ In int }
			Skip            int `ignored:"1"`
		}{},
	} {
		if got, want := must(Names(spec)), envconfigNames(t, spec); !slices.Equal(got, want) {
			t.Errorf("%T:\nNames     %v\nenvconfig %v", spec, got, want)
		}
	}
}

// Envconfig 1.4.0's split_words, as its gatherInfo writes it: the oracle
// of FuzzSplitWords, which makes too many names to build a struct type
// for each (TestNamesAsEnvconfig asks envconfig itself).
var (
	gatherRegexp  = regexp.MustCompile("([^A-Z]+|[A-Z]+[^A-Z]+|[A-Z]+)")
	acronymRegexp = regexp.MustCompile("([A-Z]+)([A-Z][^A-Z]+)")
)

func envconfigSplit(name string) []string {
	var words []string
	for _, w := range gatherRegexp.FindAllStringSubmatch(name, -1) {
		if m := acronymRegexp.FindStringSubmatch(w[0]); len(m) == 3 {
			words = append(words, m[1], m[2])
		} else {
			words = append(words, w[0])
		}
	}
	return words
}

// FuzzSplitWords: a field's name splits as envconfig splits it.
func FuzzSplitWords(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !token.IsIdentifier(name) {
			return
		}
		if got, want := splitWords(name), envconfigSplit(name); !slices.Equal(got, want) {
			t.Errorf("%q: splitWords %q, envconfig %q", name, got, want)
		}
	})
}

func must(names []string, err error) []string {
	if err != nil {
		panic(err)
	}
	return names
}
