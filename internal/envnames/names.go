package envnames

import (
	"encoding"
	"reflect"
	"strconv"
	"strings"

	"github.com/kelseyhightower/envconfig"
)

// leafInterfaces are the interfaces by which envconfig reads a struct as
// one value rather than as nested settings.
var leafInterfaces = []reflect.Type{
	reflect.TypeFor[envconfig.Decoder](),
	reflect.TypeFor[envconfig.Setter](),
	reflect.TypeFor[encoding.TextUnmarshaler](),
	reflect.TypeFor[encoding.BinaryUnmarshaler](),
}

// appendNames appends to names the variables envconfig reads into a
// zero value of the struct type t under prefix (upper case, without its
// underscore), following envconfig 1.4.0's gatherInfo field by field.
func appendNames(names []string, prefix string, t reflect.Type) []string {
	for f := range t.Fields() {
		// Fields envconfig cannot set, or is told to skip.
		if !f.IsExported() || isTrue(f.Tag.Get("ignored")) {
			continue
		}
		key := f.Name
		if isTrue(f.Tag.Get("split_words")) {
			key = strings.Join(splitWords(f.Name), "_")
		}
		if alt := f.Tag.Get("envconfig"); alt != "" {
			key = alt // Process refuses such a field
		}
		key = strings.ToUpper(prefix + "_" + key)
		// envconfig follows a nil pointer only to a struct, which it
		// allocates.
		ft := f.Type
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !isLeaf(ft) {
			inner := key
			if f.Anonymous {
				inner = prefix
			}
			names = appendNames(names, inner, ft)
			continue
		}
		names = append(names, key)
	}
	return names
}

// isLeaf reports whether envconfig reads a struct of type t from one
// variable, through a method of *t.
func isLeaf(t reflect.Type) bool {
	for _, i := range leafInterfaces {
		if reflect.PointerTo(t).Implements(i) {
			return true
		}
	}
	return false
}

// splitWords splits a field's name into words as envconfig's split_words
// does: each word is a run of capitals (A to Z) and the run of other
// characters after it, and a word of two capitals or more before other
// characters gives its last capital to a word of its own, so that
// "SmarthostCAFile" gives "Smarthost", "CA", "File".
func splitWords(name string) []string {
	var words []string
	for i := 0; i < len(name); {
		j := i
		for j < len(name) && isCapital(name[j]) {
			j++
		}
		k := j
		for k < len(name) && !isCapital(name[k]) {
			k++
		}
		if j-i >= 2 && k > j {
			words = append(words, name[i:j-1], name[j-1:k])
		} else {
			words = append(words, name[i:k])
		}
		i = k
	}
	return words
}

// isCapital reports whether b is one of envconfig's capitals, A to Z; a
// byte of a multi-byte character never is.
func isCapital(b byte) bool { return 'A' <= b && b <= 'Z' }

// isTrue reads a boolean tag as envconfig does: what strconv.ParseBool
// takes for true, anything else false.
func isTrue(s string) bool {
	b, _ := strconv.ParseBool(s)
	return b
}
