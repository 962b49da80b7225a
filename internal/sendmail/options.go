package sendmail

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/smtp-stdio/smtp-stdio/ascii"
)

// Mode is what one sendmail run does, chosen by -b (or by the name it is
// run under). The zero value is ModeDeliver, sendmail's -bm.
type Mode uint8

const (
	// ModeDeliver reads a message on standard input and queues it (-bm,
	// the default).
	ModeDeliver Mode = iota
	// ModeSMTP runs smtp-stdio's session on standard input and output as
	// a local client (-bs).
	ModeSMTP
	// ModeList prints the queue as smtp-send --list does (-bp, mailq).
	ModeList
	// ModeRunQueue runs smtp-send now (-q).
	ModeRunQueue
	// ModeAliases rebuilds the aliases database (-bi, -I, newaliases);
	// there is none yet, so it says so and succeeds, as nullmailer does.
	ModeAliases
)

var modeNames = [...]string{ModeDeliver: "-bm", ModeSMTP: "-bs", ModeList: "-bp", ModeRunQueue: "-q", ModeAliases: "-bi"}

// String returns the flag that selects the mode, e.g. "-bs".
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ErrorMode is how errors are reported, set by -oe (sendmail's
// ErrorMode option). Phase 1 writes every error to standard error
// whatever the mode, and sets the exit status (docs/sendmail.md).
type ErrorMode byte

// Options are what the command line asks for.
type Options struct {
	// Mode is what the run does (-b, -q, -I, or the program's name).
	Mode Mode
	// Extract is -t: recipients are also read from To:, Cc: and Bcc:.
	Extract bool
	// From is the envelope sender of -f or -r, without angle brackets;
	// "" with FromSet is the null reverse-path <> (RFC 5321 section
	// 4.5.5).
	From    string
	FromSet bool
	// FromFlag is the letter that set From, 'f' or 'r', for the
	// X-Authentication-Warning: field; 0 when neither was given.
	FromFlag byte
	// FullName is -F: the display name of a From: field we add.
	FullName string
	// IgnoreDots is -i or -oi: a line holding only "." is message data.
	// Without it such a line ends the message, as in sendmail.
	IgnoreDots bool
	// Body is -B as the BODY= value (RFC 6152): "", "7BIT" or "8BITMIME".
	Body string
	// Notify, Ret and EnvID are the DSN options -N, -R and -V (RFC 3461
	// sections 4.1, 4.3 and 4.4), checked and upper-cased where the RFC
	// allows; nothing stores them yet (the DSN issue will).
	Notify, Ret, EnvID string
	// ErrorMode is the letter of -oe (m, e, p, q, w); 0 when not given.
	ErrorMode ErrorMode
	// Verbose is -v: the ignored options and the queue id are written
	// to standard error.
	Verbose bool
	// Recipients are the operands, in order.
	Recipients []string
	// Ignored lists the options accepted and ignored, as given, for -v.
	Ignored []string
}

// UsageError is a command line that sendmail cannot run: the caller
// exits with EX_USAGE (64).
type UsageError struct{ Msg string }

// Error returns the message, without the program's name.
func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// optionSpec is every option letter Postfix's sendmail takes, in its
// getopt(3) form ("B:" takes an argument): callers pass these, and an
// unknown letter is a usage error there as here. -q takes an optional
// argument here (Postfix special-cases a bare -q the same way).
const optionSpec = "B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx"

// ignoredLetters are the options that do not apply to us and are
// accepted and ignored, as Postfix does: -C (configuration file), -G
// (gateway submission), -L (syslog label), -O (option=value), -U
// (initial user submission), -X (log file), -c, -e, -h (hop count), -m
// (send to me too), -n (no aliasing), -p (protocol), -x.
const ignoredLetters = "CGLOUXcehmnpx"

// Parse reads the command line args (as os.Args: the program's name
// first). The name mailq selects ModeList and newaliases ModeAliases, as
// in sendmail. Options may come before, between or after the
// recipients, as GNU getopt permutes them; "--" ends them. It returns a
// *UsageError for an unknown option, a missing argument, a -b mode we do
// not have, or a bad DSN option.
func Parse(args []string) (*Options, error) {
	o := &Options{}
	if len(args) > 0 {
		switch filepath.Base(args[0]) {
		case "mailq":
			o.Mode = ModeList
		case "newaliases":
			o.Mode = ModeAliases
		}
		args = args[1:]
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.Recipients = append(o.Recipients, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			o.Recipients = append(o.Recipients, a)
			continue
		}
		// A cluster of letters, as getopt: -ti is -t -i; a letter that
		// takes an argument takes the rest of the word, or the next one.
		for j := 1; j < len(a); j++ {
			c := a[j]
			k := strings.IndexByte(optionSpec, c)
			if k < 0 || c == ':' {
				return nil, usagef("unknown option -%c", c)
			}
			if k+1 == len(optionSpec) || optionSpec[k+1] != ':' {
				if err := o.flag(c); err != nil {
					return nil, err
				}
				continue
			}
			val := a[j+1:]
			if val == "" && c != 'q' {
				if i+1 == len(args) {
					return nil, usagef("option -%c needs an argument", c)
				}
				i++
				val = args[i]
			}
			if err := o.option(c, val); err != nil {
				return nil, err
			}
			break
		}
	}
	return o, nil
}

// flag applies an option without argument.
func (o *Options) flag(c byte) error {
	switch c {
	case 't':
		o.Extract = true
	case 'i':
		o.IgnoreDots = true
	case 'v':
		o.Verbose = true
	case 'I':
		o.Mode = ModeAliases
	default: // ignoredLetters
		o.Ignored = append(o.Ignored, "-"+string(c))
	}
	return nil
}

// option applies an option with its argument val.
func (o *Options) option(c byte, val string) error {
	switch c {
	case 'f', 'r':
		o.From, o.FromSet, o.FromFlag = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(val), "<"), ">"), true, c
	case 'F':
		o.FullName = val
	case 'b':
		return o.bmode(val)
	case 'q':
		// -q runs the queue; -q30m (a daemon's interval) is ignored,
		// as Postfix does; -qR and -qS (one site) run all of it.
		if val == "" || val[0] == 'R' || val[0] == 'S' || val[0] == 'I' {
			o.Mode = ModeRunQueue
		} else {
			o.Ignored = append(o.Ignored, "-q"+val)
		}
	case 'o':
		o.sendmailOption(val)
	case 'B':
		switch ascii.Lower(val) {
		case "7bit":
			o.Body = "7BIT"
		case "8bitmime":
			o.Body = "8BITMIME"
		default:
			// BINARYMIME needs BDAT, which we do not speak: not
			// fatal (a caller's unknown flags must not lose mail), the
			// body goes without a BODY= parameter.
			o.Ignored = append(o.Ignored, "-B"+val)
		}
	case 'N':
		n, err := parseNotify(val)
		if err != nil {
			return err
		}
		o.Notify = n
	case 'R':
		switch r := ascii.Lower(val); r {
		case "full", "hdrs":
			o.Ret = strings.ToUpper(r)
		default:
			return usagef("-R %q: want full or hdrs (RFC 3461 section 4.3)", val)
		}
	case 'V':
		if !validEnvID(val) {
			return usagef("-V: an envelope id is 1 to 100 printable ASCII characters (RFC 3461 section 4.4)")
		}
		o.EnvID = val
	default: // ignoredLetters with an argument
		o.Ignored = append(o.Ignored, "-"+string(c)+" "+val)
	}
	return nil
}

// bmode sets the mode of -b. -bm, -bs, -bp and -bi are ours; -bd (a
// daemon), -bv (verify), -bt (test) and the rest are refused, so that a
// caller is never told mail went where it did not.
func (o *Options) bmode(val string) error {
	switch val {
	case "m":
		o.Mode = ModeDeliver
	case "s":
		o.Mode = ModeSMTP
	case "p":
		o.Mode = ModeList
	case "i":
		o.Mode = ModeAliases
	default:
		return usagef("-b%s is not supported (only -bm, -bs, -bp and -bi)", val)
	}
	return nil
}

// sendmailOption applies -o: -oi is -i, -oe sets the error mode; every
// other sendmail option (-odb, -odi, -oem's delivery siblings, -oQ...)
// does not apply and is ignored, as Postfix ignores them.
func (o *Options) sendmailOption(val string) {
	switch {
	case val == "i":
		o.IgnoreDots = true
	case len(val) == 2 && val[0] == 'e' && strings.IndexByte("mepqw", val[1]) >= 0:
		o.ErrorMode = ErrorMode(val[1])
	default:
		o.Ignored = append(o.Ignored, "-o"+val)
	}
}

// parseNotify checks -N: "never", or a comma-separated list of success,
// failure and delay (RFC 3461 section 4.1), any case; it returns the list
// upper-cased as the NOTIFY parameter writes it.
func parseNotify(val string) (string, error) {
	parts := strings.Split(ascii.Lower(val), ",")
	seen := map[string]bool{}
	for _, p := range parts {
		switch p {
		case "never":
			if len(parts) > 1 {
				return "", usagef("-N never cannot be combined (RFC 3461 section 4.1)")
			}
		case "success", "failure", "delay":
			if seen[p] {
				return "", usagef("-N %q names %s twice", val, p)
			}
			seen[p] = true
		default:
			return "", usagef("-N %q: want never, or success, failure and delay joined by commas (RFC 3461 section 4.1)", val)
		}
	}
	return strings.ToUpper(strings.Join(parts, ",")), nil // ASCII only by now
}

// validEnvID reports whether id can be an ENVID: 1 to 100 characters of
// printable US-ASCII (RFC 3461 section 4.4, before xtext encoding).
func validEnvID(id string) bool {
	if len(id) == 0 || len(id) > 100 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
