package envnames

import (
	"fmt"
	"io"
	"reflect"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// Process reads the project's variables into spec, a pointer to a
// struct, as envconfig.Process does with the prefix SMTP: a field's
// variable is SMTP_ and the field's name, upper-cased, split into words
// where the field carries split_words:"true". It is the one way the
// programs read their settings.
//
// It returns an error, before reading anything, when a field of spec (or
// of a struct within it) carries an envconfig:"X" tag: envconfig 1.4.0
// then reads the unprefixed X whenever SMTP_X is unset (its "Alt" key),
// so that HOSTNAME, which every shell and container sets, or a SPOOL_DIR
// meant for another program would configure ours. Otherwise it returns
// envconfig's error, which names the SMTP_ variable at fault.
func Process(spec any) error {
	if err := checkNoAlt(reflect.TypeOf(spec), ""); err != nil {
		return err
	}
	return envconfig.Process(envconfigPrefix, spec)
}

// Usage writes the table of the variables Process reads into spec, with
// their types, defaults and descriptions (the field's desc tag), to w:
// the --help table of every program, in one format. It returns envconfig's
// error for a spec that is not a pointer to a struct, or w's.
func Usage(w io.Writer, spec any) error {
	tw := tabwriter.NewWriter(w, 1, 0, 2, ' ', 0)
	if err := envconfig.Usagef(envconfigPrefix, spec, tw, envconfig.DefaultTableFormat); err != nil {
		return err
	}
	return tw.Flush()
}

// checkNoAlt reports the first field of t, a struct or a pointer to one,
// whose variable envconfig could look up without the prefix.
func checkNoAlt(t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return fmt.Errorf("envnames: %v is not a struct", t)
	}
	for f := range t.Fields() {
		if !f.IsExported() || f.Tag.Get("ignored") == "true" {
			continue
		}
		if alt, ok := f.Tag.Lookup("envconfig"); ok {
			return fmt.Errorf("envnames: field %s%s has envconfig:%q, which envconfig would also read without the %s prefix; name the field for its variable and use split_words",
				path, f.Name, alt, Prefix)
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			if err := checkNoAlt(ft, path+f.Name+"."); err != nil {
				return err
			}
		}
	}
	return nil
}
