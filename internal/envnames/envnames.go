// Package envnames reads the settings of the project's programs, all named
// SMTP_*, and knows their names. Each program declares its settings once,
// as one struct: Process reads it (and no other name), Usage prints its
// --help table, and Known derives from it the names the program reads,
// so that each program can name a misspelt variable (SMTP_LOCAL_DOMAIN
// for SMTP_LOCAL_DOMAINS) that envconfig would otherwise ignore without a
// word. smtp-stdio and smtp-send often share one environment file, so
// each must also tell the other's variables from typos.
package envnames

import (
	"fmt"
	"reflect"
	"strings"
)

// Prefix starts the name of every variable of the project.
const Prefix = envconfigPrefix + "_"

// envconfigPrefix is Prefix as envconfig takes it: envconfig adds the
// underscore.
const envconfigPrefix = "SMTP"

// Names returns the names of the variables Process reads into spec, a
// pointer to a struct, in the order of its fields: SMTP_ and the field's
// name, upper-cased, split into words where the field carries
// split_words:"true", a nested struct's fields under its name (an
// embedded struct's under none). It names them as envconfig does, by the
// same rules (TestNamesAsEnvconfig holds them equal), without envconfig's
// cost: envconfig splits words with regular expressions, which would
// double the time smtp-stdio spends on its configuration at every
// session. It returns an error for a spec that is not a pointer to a
// struct.
func Names(spec any) ([]string, error) {
	t := reflect.TypeOf(spec)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("envnames: %v is not a pointer to a struct", t)
	}
	return appendNames(nil, envconfigPrefix, t.Elem()), nil
}

// Set is a set of variable names.
type Set map[string]bool

// Known returns the set of the variables Process reads into any of specs,
// each a pointer to a struct (see Names). It returns an error naming the
// first spec that is not one.
func Known(specs ...any) (Set, error) {
	s := Set{}
	for _, spec := range specs {
		names, err := Names(spec)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			s[n] = true
		}
	}
	return s, nil
}

// Has reports whether name is in s.
func (s Set) Has(name string) bool { return s[name] }

// InSenderSpace reports whether name is in smtp-send's own namespace:
// SMTP_SMARTHOST, SMTP_SMARTHOST_* and SMTP_SEND_*. smtp-send checks the
// names in that space itself and refuses to run on an unknown one, so
// smtp-stdio leaves them alone without linking smtp-send's configuration
// (and the TLS client and package net with it). Every other setting of
// smtp-send is also one of smtp-stdio's; internal/sender's tests hold
// smtp-send to that.
func InSenderSpace(name string) bool {
	return name == "SMTP_SMARTHOST" || strings.HasPrefix(name, "SMTP_SMARTHOST_") || strings.HasPrefix(name, "SMTP_SEND_")
}

// SendmailPrefix starts the names of the variables in sendmail's own
// namespace (InSendmailSpace).
const SendmailPrefix = Prefix + "SENDMAIL_"

// InSendmailSpace reports whether name is in sendmail's own namespace,
// SMTP_SENDMAIL_*. sendmail (internal/sendmail) checks the names in that
// space itself and refuses to run on an unknown one; Unknown never
// returns them, so that smtp-stdio and smtp-send, which share the
// environment file with it, neither warn about them nor need to link
// sendmail's configuration. (SMTP_SEND_* is smtp-send's: "SMTP_SENDMAIL_"
// does not start with it.)
func InSendmailSpace(name string) bool {
	return strings.HasPrefix(name, SendmailPrefix)
}

// Unknown returns the names of the variables in environ (as os.Environ
// gives it) that start with Prefix, are not in sendmail's own space
// (InSendmailSpace), and for which every one of known reports false, in
// the order of environ.
func Unknown(environ []string, known ...func(string) bool) []string {
	var unknown []string
next:
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, Prefix) || InSendmailSpace(k) {
			continue
		}
		for _, f := range known {
			if f(k) {
				continue next
			}
		}
		unknown = append(unknown, k)
	}
	return unknown
}
