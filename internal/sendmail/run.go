// Package sendmail is the sendmail-compatible command for local programs
// (cron, mail(1), git send-email, PHP's mail()): it parses sendmail's
// command line (Parse; every flag is in docs/sendmail.md), and either
// queues the message on standard input into the spool through the same
// writer as smtp-stdio (Submission.Queue), runs smtp-stdio's session as
// a local client (-bs), prints smtp-send's queue listing (-bp, mailq) or
// runs smtp-send (-q). cmd/sendmail only calls Run.
//
// Phase 1 of issue 13: the caller must be able to write the spool (root
// or the spool's user). Phase 2 puts a setgid drop helper between any
// local user and the spool; Submission then writes the same file into
// drop/ instead of queue/.
package sendmail

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/alias"
	"github.com/smtp-stdio/smtp-stdio/internal/sender"
	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// launcherVars are the variables by which a launcher names smtp-stdio's
// client (internal/peer). -bs clears them, so that the session on a
// pipe is the local user's, as Postfix's "sendmail -bs" is a local
// submission with relaying allowed.
var launcherVars = []string{"TCPREMOTEIP", "TCPREMOTEPORT", "REMOTE_ADDR", "REMOTE_PORT", "REMOTE_HOST", "RELAYCLIENT"}

// Run runs sendmail with args (as os.Args: the name first, which selects
// mailq and newaliases), the message on stdin, and messages on stderr,
// and returns the exit status (sysexits.h): 0 only once the message is
// durably in queue/; 64 (EX_USAGE) for the command line; 65 (EX_DATAERR)
// for no recipients or a header section over MaxHeaderSize; 67
// (EX_NOUSER) for a recipient argument that is no address; 74 (EX_IOERR)
// when standard input cannot be read; 75 (EX_TEMPFAIL) when the spool
// cannot take the message; 78 (EX_CONFIG) for the settings. -bs, -bp and
// -q return smtp-stdio's or smtp-send's status, or do not return (-q
// replaces the process with smtp-send).
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := "sendmail"
	if len(args) > 0 {
		name = filepath.Base(args[0])
	}
	if len(args) == 2 && (args[1] == "--help" || args[1] == "-help") {
		Usage(stderr)
		return exitOK
	}
	o, err := Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v (see --help)\n", name, err)
		return exitUsage
	}
	if o.Verbose {
		for _, ig := range o.Ignored {
			fmt.Fprintf(stderr, "%s: %s ignored\n", name, ig)
		}
	}
	switch o.Mode {
	case ModeAliases:
		return checkAliases(name, os.Getenv("SMTP_SEND_ALIASES"), stderr)
	case ModeList:
		return list(name, stdout, stderr)
	case ModeRunQueue:
		return runQueue(name, stderr)
	case ModeSMTP:
		if len(o.Recipients) > 0 {
			fmt.Fprintf(stderr, "%s: -bs takes no recipients\n", name)
			return exitUsage
		}
		return smtpSession(name, stderr)
	}
	cfg, unknown, err := Load(os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitConfig
	}
	for _, k := range unknown {
		fmt.Fprintf(stderr, "%s: unknown setting %s ignored\n", name, k)
	}
	u := currentUser()
	sub := &Submission{Opts: o, Cfg: cfg, User: u, Trusted: trusted(u, cfg), Now: time.Now}
	id, err := queue(sub, cfg, stdin, stderr)
	if err != nil {
		return reportError(name, sub, cfg, err, stderr)
	}
	if o.Verbose {
		fmt.Fprintf(stderr, "%s: queued as %s\n", name, id)
	}
	return exitOK
}

// checkAliases is newaliases (-bi, -I): smtp-send reads its alias file,
// file (SMTP_SEND_ALIASES), at each run, so there is no database to
// rebuild; when file is set, it is checked as smtp-send would read it
// (alias.Load) and the number of names reported, with a warning when
// postmaster is missing (RFC 5321 section 4.5.1). It returns 0, or 78
// (EX_CONFIG, smtp-send's status for the same file) naming the bad
// line.
func checkAliases(name, file string, stderr io.Writer) int {
	if file == "" {
		fmt.Fprintf(stderr, "%s: no alias file set (SMTP_SEND_ALIASES); smtp-send reads it at each run, so there is no database to rebuild\n", name)
		return exitOK
	}
	tb, err := alias.Load(file)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", name, textsafe.Escape(err.Error()))
		return exitConfig
	}
	if !tb.Has("postmaster") {
		fmt.Fprintf(stderr, "%s: warning: %s has no postmaster (RFC 5321 section 4.5.1)\n", name, textsafe.Escape(file))
	}
	fmt.Fprintf(stderr, "%s: %s: %d names, read by smtp-send at each run; no database to rebuild\n", name, textsafe.Escape(file), tb.Len())
	return exitOK
}

// reportError reports a message that was not queued as the -oe mode
// asks (sendmail's ErrorMode option) and returns the exit status:
// -oep, -oew and none write the error on stderr; -oeq says nothing;
// -oem and -oee also mail it back with the message (ReturnError) and
// say so, or why they could not. The status is the failure's, except
// that -oee exits 0 once the error went back with the whole message, as
// Exim's -oee does (sendmail 8 exits 0 whatever happened: we never
// report success while the message is lost).
func reportError(name string, sub *Submission, cfg *Config, err error, stderr io.Writer) int {
	status := errorStatus(err)
	switch sub.Opts.ErrorMode {
	case 'q':
		return status
	case 'm', 'e':
		fmt.Fprintf(stderr, "%s: message not queued: %v\n", name, err)
		to, kept, merr := sub.ReturnError(err, func(e *Submission, in io.Reader) (string, error) {
			return queue(e, cfg, in, stderr)
		})
		if merr != nil {
			fmt.Fprintf(stderr, "%s: the error could not be mailed back: %v\n", name, merr)
			return status
		}
		fmt.Fprintf(stderr, "%s: the error is mailed to %s %v\n", name, to, kept)
		if sub.Opts.ErrorMode == 'e' && kept == ReturnedWhole {
			return exitOK
		}
	default:
		fmt.Fprintf(stderr, "%s: message not queued: %v\n", name, err)
	}
	return status
}

// queue opens the spool and queues the message: a spool that cannot be
// opened is EX_TEMPFAIL, as one that cannot take the message. The spool's
// owner writes queue/ directly; anyone else goes through the drop helper
// beside this program (Submission.Drop).
func queue(sub *Submission, cfg *Config, stdin io.Reader, stderr io.Writer) (string, error) {
	if !ownsSpool(cfg.SpoolDir) {
		helper, err := dropHelperPath()
		if err != nil {
			return "", &Failure{Status: exitTempFail, Err: err}
		}
		return sub.Drop(helper, stdin, stderr)
	}
	sp, err := spool.New(cfg.SpoolDir)
	if err != nil {
		return "", &Failure{Status: exitTempFail, Err: err}
	}
	return sub.Queue(sp, stdin)
}

// currentUser returns the real uid and its login name from the user
// database (os/user), never from $USER or $LOGNAME, which the caller
// sets as it likes.
func currentUser() User {
	uid := os.Getuid()
	u := User{Uid: uid}
	if pw, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		u.Login = pw.Username
	}
	return u
}

// trusted reports whether u may set any envelope sender without an
// X-Authentication-Warning: root, the owner of the spool root (the mail
// service's user), or a login named in SMTP_SENDMAIL_TRUSTED_USERS, as
// sendmail's trusted users (class t: root, daemon, uucp by default).
func trusted(u User, cfg *Config) bool {
	if u.Uid == 0 {
		return true
	}
	if fi, err := os.Stat(cfg.SpoolDir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == u.Uid {
			return true
		}
	}
	return u.Login != "" && slices.ContainsFunc(cfg.SendmailTrustedUsers, func(n string) bool { return strings.TrimSpace(n) == u.Login })
}

// runQueue replaces the process with smtp-send, which delivers what is
// due: the smtp-send beside this program's file (both are installed
// together), else the first on $PATH. It returns only on failure, with
// EX_UNAVAILABLE (69) when there is none, or EX_OSERR (71).
func runQueue(name string, stderr io.Writer) int {
	path := ""
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "smtp-send")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			path = p
		}
	}
	if path == "" {
		p, err := exec.LookPath("smtp-send")
		if err != nil {
			fmt.Fprintf(stderr, "%s: -q: no smtp-send beside this program nor on $PATH\n", name)
			return 69 // EX_UNAVAILABLE
		}
		path = p
	}
	err := syscall.Exec(path, []string{"smtp-send"}, os.Environ())
	fmt.Fprintf(stderr, "%s: -q: %v\n", name, err)
	return 71 // EX_OSERR
}

// list prints the queue (-bp, mailq) for the spool's owner. Anyone else
// is refused with EX_CONFIG (78) and a message saying why: the queue
// holds every user's mail, and the policy (docs/sendmail.md, "mailq") is
// that only the spool's user, root included when it owns the spool, may
// list it. Postfix lets everyone list (authorized_mailq_users =
// static:anyone); we choose privacy. A bad setting is left to smtp-send's
// own refusal.
func list(name string, stdout, stderr io.Writer) int {
	if cfg, _, err := Load(os.Environ()); err == nil && !ownsSpool(cfg.SpoolDir) {
		fmt.Fprintf(stderr, "%s: the queue is private: only the spool's user may list it (see docs/sendmail.md, mailq)\n", name)
		return exitConfig
	}
	return sender.Run([]string{name, "--list"}, stdout, stderr)
}
