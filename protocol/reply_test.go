package protocol

import (
	"fmt"
	"strings"
	"testing"
)

// WriteReply's wire form, against fmt's %03d for the code, which it
// writes without fmt: multi-line, enhanced code on every line, codes of
// one to four digits.
func TestWriteReply(t *testing.T) {
	for _, r := range []*Reply{
		{Code: 250, Lines: []string{"OK"}},
		{Code: 250, Enhanced: "2.0.0", Lines: []string{"first", "second", "last"}},
		{Code: 451, Enhanced: "4.3.0"},
		{Code: 5, Lines: []string{"odd"}},
		{Code: 0, Lines: []string{"zero"}},
		{Code: 1000, Lines: []string{"wide"}},
		{Code: -1, Lines: []string{"negative"}},
	} {
		var want strings.Builder
		lines := r.Lines
		if len(lines) == 0 {
			lines = []string{""}
		}
		for i, l := range lines {
			sep := "-"
			if i == len(lines)-1 {
				sep = " "
			}
			enh := ""
			if r.Enhanced != "" {
				enh = r.Enhanced + " "
			}
			fmt.Fprintf(&want, "%03d%s%s%s\r\n", r.Code, sep, enh, l)
		}
		var got strings.Builder
		if err := WriteReply(&got, r); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("code %d: %q, want %q", r.Code, got.String(), want.String())
		}
	}
}
