// Command mantool writes the manual pages docs/man/*.8 and *.5 from their
// sources docs/man/*.md (package manpage); run from the repository root
// by scripts/man. With -check it writes nothing and exits 1 when a page
// is out of step with its source.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/smtp-stdio/smtp-stdio/internal/manpage"
)

func main() {
	check := flag.Bool("check", false, "report pages out of step; write nothing")
	flag.Parse()
	srcs, err := filepath.Glob(manpage.Sources)
	if err != nil || len(srcs) == 0 {
		fmt.Fprintln(os.Stderr, "mantool: no sources", manpage.Sources, err)
		os.Exit(1)
	}
	stale := false
	for _, src := range srcs {
		b, err := os.ReadFile(src)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mantool:", err)
			os.Exit(1)
		}
		page, err := manpage.Generate(b, os.ReadFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mantool: %s: %v\n", src, err)
			os.Exit(1)
		}
		dst := manpage.Target(src)
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, page) {
			continue
		}
		if *check {
			fmt.Fprintf(os.Stderr, "mantool: %s is out of step with %s: run scripts/man\n", dst, src)
			stale = true
			continue
		}
		if err := os.WriteFile(dst, page, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "mantool:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", dst)
	}
	if stale {
		os.Exit(1)
	}
}
