// Package envnames knows the names of the environment variables that the
// project's programs read, all starting with SMTP_: it reads them
// (Process, which reads no other name), and it lets each program name a
// misspelt one (SMTP_LOCAL_DOMAIN for SMTP_LOCAL_DOMAINS) that envconfig
// would otherwise ignore without a word. smtp-stdio and
// smtp-send often share one environment file, so each must tell the
// other's variables from typos.
package envnames

import "strings"

// Prefix starts the name of every variable of the project.
const Prefix = "SMTP_"

// receiver holds smtp-stdio's variables, as envconfig derives them from
// internal/receiver.Config; that package's TestSettingNames keeps the two
// in step.
var receiver = map[string]bool{
	"SMTP_SPOOL_DIR": true, "SMTP_HOSTNAME": true, "SMTP_LOCAL_DOMAINS": true,
	"SMTP_RELAY_CLIENTS": true, "SMTP_MAX_MESSAGE_SIZE": true,
	"SMTP_MAX_RECIPIENTS": true, "SMTP_MAX_LINE_LENGTH": true,
	"SMTP_MAX_ERRORS": true, "SMTP_MAX_RECEIVED": true,
	"SMTP_BARE_LINE_ENDINGS": true, "SMTP_COMMAND_TIMEOUT": true,
	"SMTP_DATA_TIMEOUT": true, "SMTP_SESSION_TIMEOUT": true,
	"SMTP_GREETING": true, "SMTP_LOG": true, "SMTP_LOG_LEVEL": true,
	"SMTP_LOG_FORMAT": true, "SMTP_SYSLOG_SOCKET": true, "SMTP_REJECT_EARLY_TALKERS": true,
	"SMTP_GREET_PAUSE": true, "SMTP_FORBID_IMPROPER_PIPELINING": true,
	"SMTP_MIN_DATA_RATE": true, "SMTP_HEADER_CHECKS": true,
	"SMTP_MAX_HEADER_SIZE": true, "SMTP_ADD_MISSING_HEADERS": true,
	"SMTP_RATE_WINDOW": true, "SMTP_RATE_MAX_SESSIONS": true,
	"SMTP_RATE_MAX_PER_CLIENT": true, "SMTP_POSTMASTER_DOMAIN": true,
}

// Receiver returns the names of smtp-stdio's variables, in no order.
func Receiver() []string {
	names := make([]string, 0, len(receiver))
	for k := range receiver {
		names = append(names, k)
	}
	return names
}

// IsReceiver reports whether smtp-stdio reads the variable name.
func IsReceiver(name string) bool { return receiver[name] }

// InSenderSpace reports whether name is in smtp-send's own namespace:
// SMTP_SMARTHOST, SMTP_SMARTHOST_* and SMTP_SEND_*. smtp-send checks the
// names in that space itself and refuses to run on an unknown one.
func InSenderSpace(name string) bool {
	return name == "SMTP_SMARTHOST" || strings.HasPrefix(name, "SMTP_SMARTHOST_") || strings.HasPrefix(name, "SMTP_SEND_")
}

// Unknown returns the names of the variables in environ (as os.Environ
// gives it) that start with Prefix and for which every one of known
// reports false, in the order of environ.
func Unknown(environ []string, known ...func(string) bool) []string {
	var unknown []string
next:
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, Prefix) {
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
