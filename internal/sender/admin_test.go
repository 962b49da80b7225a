package sender

import (
	"path/filepath"
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

// FuzzQueueIDs: whatever standard input holds, every id queueIDs returns
// names a file directly in queue/ (filepath.Join keeps it one element
// below the directory, unchanged), is not hidden, not a state file's
// name and has no byte a log line or terminal could take for structure;
// and the ids are the input's non-blank lines, trimmed, in order,
// whenever they are all valid.
func FuzzQueueIDs(f *testing.F) {
	for _, s := range []string{"20261202T060556.2bef646342b69e80\n", "a\n\nb\r\n", "../x\n", ".\n", "a/b", "x@state", " \t\n", "-\n", "\xff\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ids, err := queueIDs([]string{"-"}, strings.NewReader(in))
		var lines []string
		for _, l := range strings.Split(in, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		allValid := len(lines) > 0
		for _, l := range lines {
			allValid = allValid && validQueueID(l)
		}
		if (err == nil) != allValid {
			t.Fatalf("%q: ids %q, err %v; lines %q valid %v", in, ids, err, lines, allValid)
		}
		if err != nil {
			return
		}
		if !slices.Equal(ids, lines) {
			t.Fatalf("%q: ids %q, want %q", in, ids, lines)
		}
		for _, id := range ids {
			if p := filepath.Join("/spool/queue", id); filepath.Dir(p) != "/spool/queue" || filepath.Base(p) != id {
				t.Fatalf("%q leaves queue/: %s", id, p)
			}
			if strings.HasPrefix(id, ".") || strings.ContainsAny(id, "@/ \t\r\n\x00\x1b\x7f") {
				t.Fatalf("%q accepted", id)
			}
		}
	})
}
