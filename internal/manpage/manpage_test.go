package manpage_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/manpage"
	"github.com/smtp-stdio/smtp-stdio/internal/receiver"
	"github.com/smtp-stdio/smtp-stdio/internal/sender"
	"github.com/smtp-stdio/smtp-stdio/internal/sendmail"
)

// root is the repository root, from this package's directory.
const root = "../.."

func read(path string) ([]byte, error) { return os.ReadFile(filepath.Join(root, path)) }

// sources returns the pages' sources, relative to the root.
func sources(t *testing.T) []string {
	t.Helper()
	srcs, err := filepath.Glob(filepath.Join(root, manpage.Sources))
	if err != nil || len(srcs) == 0 {
		t.Fatal("no sources", srcs, err)
	}
	for i, s := range srcs {
		srcs[i], _ = filepath.Rel(root, s)
	}
	return srcs
}

// TestPagesInStep: each checked-in page is what scripts/man makes from
// its source, README.md's settings tables and spool/FORMAT.md now.
func TestPagesInStep(t *testing.T) {
	for _, src := range sources(t) {
		b, err := read(src)
		if err != nil {
			t.Fatal(err)
		}
		want, err := manpage.Generate(b, read)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := read(manpage.Target(src))
		if err != nil {
			t.Errorf("%s: %v (run scripts/man)", src, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of step with %s, README.md or spool/FORMAT.md: run scripts/man", manpage.Target(src), src)
		}
	}
}

// TestEverySettingOnItsPage: every variable a program's Config declares,
// and every one its --help prints, has its entry in the program's page.
func TestEverySettingOnItsPage(t *testing.T) {
	for _, p := range []struct {
		page  string
		spec  any
		usage func(*bytes.Buffer) error
	}{
		{"docs/man/smtp-stdio.8", &receiver.Config{},
			func(b *bytes.Buffer) error { return receiver.Usage(b, "smtp-stdio") }},
		{"docs/man/smtp-send.8", &sender.Config{},
			func(b *bytes.Buffer) error { return sender.Usage(b) }},
		{"docs/man/sendmail.8", &sendmail.Config{},
			func(b *bytes.Buffer) error { return sendmail.Usage(b) }},
	} {
		t.Run(filepath.Base(p.page), func(t *testing.T) {
			page, err := read(p.page)
			if err != nil {
				t.Fatal(err)
			}
			names, err := envnames.Names(p.spec)
			if err != nil {
				t.Fatal(err)
			}
			var help bytes.Buffer
			if err := p.usage(&help); err != nil {
				t.Fatal(err)
			}
			for l := range strings.Lines(help.String()) {
				if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], envnames.Prefix) {
					names = append(names, f[0])
				}
			}
			if len(names) == 0 {
				t.Fatal("no settings")
			}
			seen := map[string]bool{}
			for _, n := range names {
				if seen[n] {
					continue
				}
				seen[n] = true
				// The entry's term, as go-md2man writes **NAME**.
				if !bytes.Contains(page, []byte("\n\\fB"+n+"\\fP ")) {
					t.Errorf("%s: no entry in %s (add its row to README.md's table, then run scripts/man)", n, p.page)
				}
			}
		})
	}
}

// TestPagesRender: man formats each page without a warning, at 80
// columns as in a terminal.
func TestPagesRender(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man not installed (scripts/install-test-deps installs man-db)")
	}
	for _, src := range sources(t) {
		page := filepath.Join(root, manpage.Target(src))
		cmd := exec.Command("man", "--warnings", "-l", page)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man -l %s: %v\n%s", page, err, stderr.String())
		}
		if !bytes.Contains(out, []byte("NAME")) {
			t.Errorf("man -l %s printed no NAME section:\n%.500s", page, out)
		}
	}
}

// TestStaleMarker: a settings marker naming a heading README.md lacks is
// an error, not an empty section.
func TestStaleMarker(t *testing.T) {
	src := []byte("# ENVIRONMENT\n<!-- settings: ## Settings of nothing -->\n")
	if _, err := manpage.Generate(src, read); err == nil {
		t.Fatal("no error for a heading README.md lacks")
	}
}
