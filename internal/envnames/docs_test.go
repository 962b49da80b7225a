package envnames_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/receiver"
	"github.com/smtp-stdio/smtp-stdio/internal/sender"
	"github.com/smtp-stdio/smtp-stdio/internal/sendmail"
)

// settingsTable returns the rows of the settings table that follows the
// heading in the Markdown text doc, as variable name and default column,
// or nil when there is no such heading.
func settingsTable(doc, heading string) (names, defaults []string) {
	lines := strings.Split(doc, "\n")
	i := slices.Index(lines, heading)
	if i < 0 {
		return nil, nil
	}
	for _, l := range lines[i+1:] {
		if strings.HasPrefix(l, "#") {
			break
		}
		cells := strings.Split(l, " | ")
		if len(cells) < 3 || !strings.HasPrefix(cells[0], "| `SMTP_") {
			continue
		}
		names = append(names, strings.Trim(cells[0], "| `"))
		defaults = append(defaults, cells[1])
	}
	return names, defaults
}

// count returns how many times s occurs in list.
func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// TestREADMETables: each program's settings table in README.md has one
// row for every variable its Config declares and no other, each default
// the struct declares is in its row, and --help lists every variable. So
// the docs cannot drift from the code, and a setting is added by a field
// and a row.
func TestREADMETables(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		heading string
		spec    any
		usage   func(*bytes.Buffer) error
	}{
		{"## Settings of smtp-stdio", &receiver.Config{},
			func(b *bytes.Buffer) error { return receiver.Usage(b, "smtp-stdio") }},
		{"### Settings of smtp-send", &sender.Config{},
			func(b *bytes.Buffer) error { return sender.Usage(b) }},
		{"### Settings of sendmail", &sendmail.Config{},
			func(b *bytes.Buffer) error { return sendmail.Usage(b) }},
	} {
		t.Run(strings.TrimLeft(p.heading, "# "), func(t *testing.T) {
			names, err := envnames.Names(p.spec)
			if err != nil {
				t.Fatal(err)
			}
			rows, defaults := settingsTable(string(readme), p.heading)
			for _, n := range names {
				if c := count(rows, n); c != 1 {
					t.Errorf("%s: %d rows in README.md's table, want 1", n, c)
				}
			}
			for _, r := range rows {
				if !slices.Contains(names, r) {
					t.Errorf("%s: a row in README.md's table, not in Config", r)
				}
			}
			var b bytes.Buffer
			if err := envconfig.Usagef("SMTP", p.spec, &b, "{{range .}}{{usage_key .}}\t{{usage_default .}}\n{{end}}"); err != nil {
				t.Fatal(err)
			}
			for l := range strings.Lines(b.String()) {
				name, def, _ := strings.Cut(strings.TrimSuffix(l, "\n"), "\t")
				if i := slices.Index(rows, name); i >= 0 && def != "" && !strings.Contains(defaults[i], "`"+def+"`") {
					t.Errorf("%s: README.md gives the default %s, Config %q", name, defaults[i], def)
				}
			}
			b.Reset()
			if err := p.usage(&b); err != nil {
				t.Fatal(err)
			}
			var listed []string
			for l := range strings.Lines(b.String()) {
				if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], envnames.Prefix) {
					listed = append(listed, f[0])
				}
			}
			if !slices.Equal(listed, names) {
				t.Errorf("--help lists:\n%v\nConfig:\n%v", listed, names)
			}
		})
	}
}

// TestOneTablePerProgram: the settings tables are in README.md only;
// the documents under docs/ link to them.
func TestOneTablePerProgram(t *testing.T) {
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatal(docs, err)
	}
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.Lines(string(b)) {
			if strings.HasPrefix(l, "| `SMTP_") {
				t.Errorf("%s has a row of a settings table, which belongs in README.md: %s", doc, l)
				break
			}
		}
	}
}
