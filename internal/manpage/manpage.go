// Package manpage makes the manual pages under docs/man from the documents
// the project keeps: a page's source, docs/man/NAME.SECTION.md, is
// go-md2man markdown with marker lines that pull in what has its home
// elsewhere, so that no setting or format rule is written twice.
//
//	<!-- settings: ## Settings of smtp-stdio -->
//
// is replaced by the rows of README.md's settings table under that
// heading (the one TestREADMETables holds to the program's Config), as a
// definition list, and
//
//	<!-- include: spool/FORMAT.md -->
//
// by that document without its title, each heading one level up and
// the top ones in capitals, as man's sections are.
package manpage

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// Sources is the glob, relative to the repository root, of the pages'
// sources; each page is written beside its source without ".md".
const Sources = "docs/man/*.md"

// Target names the page made from the source at path src.
func Target(src string) string { return strings.TrimSuffix(src, ".md") }

// Generate returns the roff page made from the source src, reading the
// files its markers name through read (paths relative to the root).
func Generate(src []byte, read func(path string) ([]byte, error)) ([]byte, error) {
	md, err := Expand(src, read)
	if err != nil {
		return nil, err
	}
	return md2man.Render(md), nil
}

// Expand replaces each marker line of src by what it names.
func Expand(src []byte, read func(path string) ([]byte, error)) ([]byte, error) {
	var out bytes.Buffer
	for l := range strings.Lines(string(src)) {
		kind, arg, ok := marker(l)
		if !ok {
			out.WriteString(l)
			continue
		}
		switch kind {
		case "settings":
			readme, err := read("README.md")
			if err != nil {
				return nil, err
			}
			s, err := Settings(string(readme), arg)
			if err != nil {
				return nil, err
			}
			out.WriteString(s)
		case "include":
			doc, err := read(filepath.ToSlash(arg))
			if err != nil {
				return nil, err
			}
			out.WriteString(Include(string(doc)))
		default:
			return nil, fmt.Errorf("manpage: unknown marker %q", strings.TrimSpace(l))
		}
	}
	return out.Bytes(), nil
}

// marker parses a line "<!-- kind: arg -->".
func marker(l string) (kind, arg string, ok bool) {
	l = strings.TrimSpace(l)
	body, ok := strings.CutPrefix(l, "<!-- ")
	if !ok {
		return "", "", false
	}
	body, ok = strings.CutSuffix(body, " -->")
	if !ok {
		return "", "", false
	}
	kind, arg, ok = strings.Cut(body, ": ")
	if !ok || (kind != "settings" && kind != "include") {
		return "", "", false
	}
	return kind, strings.TrimSpace(arg), true
}

// Row is one row of a settings table.
type Row struct{ Name, Default, Meaning string }

// Rows returns the rows of the settings table under heading in the
// Markdown text readme, up to the next heading.
func Rows(readme, heading string) ([]Row, error) {
	lines := strings.Split(readme, "\n")
	start := -1
	for i, l := range lines {
		if l == heading {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("manpage: README.md has no heading %q", heading)
	}
	var rows []Row
	for _, l := range lines[start+1:] {
		if strings.HasPrefix(l, "#") {
			break
		}
		if !strings.HasPrefix(l, "| `SMTP_") {
			continue
		}
		l = strings.TrimSuffix(strings.TrimPrefix(l, "| "), " |")
		cells := strings.SplitN(l, " | ", 3)
		if len(cells) != 3 {
			return nil, fmt.Errorf("manpage: a row of %d cells under %q: %s", len(cells), heading, l)
		}
		rows = append(rows, Row{strings.Trim(cells[0], "`"), cells[1], cells[2]})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("manpage: no settings table under %q", heading)
	}
	return rows, nil
}

// Settings returns the settings table under heading as a go-md2man
// definition list: a table of long cells is unreadable at 80 columns.
func Settings(readme, heading string) (string, error) {
	rows, err := Rows(readme, heading)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range rows {
		def := r.Default
		if !strings.HasPrefix(def, "(") {
			def = "(default: " + def + ")"
		}
		fmt.Fprintf(&b, "**%s** %s\n:   %s\n\n", r.Name, def, links(r.Meaning))
	}
	return b.String(), nil
}

// Include returns the Markdown document doc for a page: its title line
// dropped, each heading one level up, the new top level in capitals, and
// each table a definition list (its first column the terms; the header
// row dropped), which stays readable at 80 columns.
func Include(doc string) string {
	var b strings.Builder
	fenced, header := false, false
	for i, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		table := !fenced && strings.HasPrefix(l, "|")
		if table && !header {
			header = true // the first row of a table names its columns
			continue
		}
		if !table {
			header = false
		}
		switch {
		case fenced:
		case table:
			cells := strings.Split(strings.Trim(l, "| "), " | ")
			if strings.Trim(cells[0], "- :") == "" {
				continue // the row under the header
			}
			l = "**" + strings.Trim(cells[0], "`") + "**\n:   " + links(strings.Join(cells[1:], "; ")) + "\n"
		case i == 0 && strings.HasPrefix(l, "# "):
			continue
		case strings.HasPrefix(l, "## "):
			l = "# " + strings.ToUpper(l[3:])
		case strings.HasPrefix(l, "###"):
			l = l[1:]
		default:
			l = links(l)
		}
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}

// links turns Markdown links to the project's own files ("[a](docs/x.md)")
// into their text: a page is read where those files are not.
func links(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "](")
		if i < 0 {
			break
		}
		open := strings.LastIndex(s[:i], "[")
		end := strings.Index(s[i:], ")")
		if open < 0 || end < 0 {
			break
		}
		target := s[i+2 : i+end]
		if strings.Contains(target, "://") {
			b.WriteString(s[:i+end+1])
		} else {
			b.WriteString(s[:open])
			b.WriteString(s[open+1 : i])
		}
		s = s[i+end+1:]
	}
	b.WriteString(s)
	return b.String()
}
