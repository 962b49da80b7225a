package sender

import (
	"slices"
	"strings"
	"testing"
)

// Queue ids come as arguments or, with "-", from standard input, one a
// line, blank lines skipped; a name that could leave queue/ (a path, a
// dot name), a state file's name (with '@'), control characters, a
// flag after the ids, or nothing on standard input are refused.
func TestQueueIDs(t *testing.T) {
	const id = "20261202T060556.2bef646342b69e80"
	for _, tc := range []struct {
		args  []string
		stdin string
		want  []string // nil: an error
	}{
		{[]string{id}, "", []string{id}},
		{[]string{id, id + "-a0"}, "", []string{id, id + "-a0"}},
		{[]string{"-"}, id + "\n\n  " + id + "-a1  \r\n", []string{id, id + "-a1"}},
		{[]string{"-"}, "", nil},
		{[]string{"-"}, "\n \n", nil},
		{[]string{"-"}, "../etc/passwd\n", nil},
		{[]string{"../x"}, "", nil},
		{[]string{"a/b"}, "", nil},
		{[]string{"."}, "", nil},
		{[]string{".."}, "", nil},
		{[]string{".hidden"}, "", nil},
		{[]string{id + "@state"}, "", nil},
		{[]string{"a\x1bb"}, "", nil},
		{[]string{"a b"}, "", nil},
		{[]string{"caf\u00e9"}, "", nil},
		{[]string{id, "--all"}, "", nil},
		{[]string{id, "-"}, "", nil},
		{[]string{strings.Repeat("x", 256)}, "", nil},
		{[]string{strings.Repeat("x", 255)}, "", []string{strings.Repeat("x", 255)}},
	} {
		got, err := queueIDs(tc.args, strings.NewReader(tc.stdin))
		if tc.want == nil {
			if err == nil {
				t.Errorf("%q (stdin %q): %q, want an error", tc.args, tc.stdin, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q (stdin %q): %q %v, want %q", tc.args, tc.stdin, got, err, tc.want)
		}
	}
}
