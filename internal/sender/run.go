package sender

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/smtp-stdio/smtp-stdio/internal/envnames"
	"github.com/smtp-stdio/smtp-stdio/internal/textsafe"
	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/send"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

// Exit statuses of smtp-send (sysexits.h).
const (
	exitOK       = 0
	exitUsage    = 64 // EX_USAGE: bad flags or arguments
	exitNoInput  = 66 // EX_NOINPUT: a queue id given is not in the queue
	exitIOErr    = 74 // EX_IOERR: the spool could not be read or written
	exitTempFail = 75 // EX_TEMPFAIL: a message or the spool is held by a run: try again
	exitConfig   = 78 // EX_CONFIG: bad or missing setting, no or unsafe spool directory
)

// name is the program's name in its messages.
const name = "smtp-send"

// options are smtp-send's flags.
type options struct {
	list, asJSON, all, explain bool
	filter                     queue.ListFilter // with --list
	// The queue administration modes, each taking queue ids (admin.go).
	show, del, deliver, expire, hold, release bool
}

// adminModes are o's queue administration modes.
func (o *options) adminModes() []bool {
	return []bool{o.show, o.del, o.deliver, o.expire, o.hold, o.release}
}

// admin reports whether o is a mode that takes queue ids.
func (o *options) admin() bool { return slices.Contains(o.adminModes(), true) }

// modes counts the modes o selects; more than one is a usage error.
func (o *options) modes() int {
	n := 0
	for _, m := range append(o.adminModes(), o.list, o.explain) {
		if m {
			n++
		}
	}
	return n
}

// flagSet returns the flag set of smtp-send, filling o, writing its
// messages to w.
func (o *options) flagSet(w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.BoolVar(&o.list, "list", false, "print the queue instead of delivering")
	fs.BoolVar(&o.asJSON, "json", false, "with --list: one JSON object per message per line")
	fs.BoolVar(&o.all, "all", false, "deliver every queued message now, ignoring retry times; with --list: include failed/ and corrupt/")
	fs.StringVar(&o.filter.From, "from", "", "with --list: only messages whose sender contains `TEXT` (ASCII case ignored; <> the null sender)")
	fs.StringVar(&o.filter.To, "to", "", "with --list: only messages with a recipient that contains `TEXT`")
	fs.DurationVar(&o.filter.OlderThan, "older-than", 0, "with --list: only messages that arrived more than `DURATION` ago (\"1h\", \"90m\")")
	fs.BoolVar(&o.explain, "explain", false, "print how each ADDRESS argument would be delivered (route and why, MX hosts and addresses, TLS policy), sending nothing")
	fs.BoolVar(&o.show, "show", false, "print each QUEUE_ID message: its --list entry, then its content as queued (as postcat -q)")
	fs.BoolVar(&o.del, "delete", false, "remove each QUEUE_ID message from queue/ without delivering it or telling its sender (as postsuper -d); logged")
	fs.BoolVar(&o.deliver, "deliver", false, "deliver each QUEUE_ID message now, ignoring its retry time (as postqueue -i)")
	fs.BoolVar(&o.expire, "expire", false, "return each QUEUE_ID message to its sender: its pending recipients fail with 5.4.7 and a notice, and it moves to failed/ (as postsuper -e)")
	fs.BoolVar(&o.hold, "hold", false, "keep runs from delivering each QUEUE_ID message until --release (as postsuper -h)")
	fs.BoolVar(&o.release, "release", false, "let runs deliver each held QUEUE_ID message again, as its retry time says (as postsuper -H)")
	return fs
}

// usageLine is the synopsis of smtp-send, %[1]s its name.
const usageLine = `Usage: %[1]s [--all] [--list [--json] [--from TEXT] [--to TEXT] [--older-than DURATION]]
       %[1]s --explain ADDRESS...
       %[1]s --show|--hold|--release|--deliver|--expire|--delete QUEUE_ID... (or - to read them, one a line, from standard input)

`

// Usage writes smtp-send's help to w: its flags, the table of every
// setting with its type and default (envnames.Usage, generated from
// Config), and its exit statuses. It returns w's error.
func Usage(w io.Writer) error {
	fmt.Fprintf(w, usageLine, name)
	new(options).flagSet(w).PrintDefaults()
	fmt.Fprintln(w)
	if err := envnames.Usage(w, &Config{}); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nExit status: 0 for a completed run (deferrals included) or when another run holds the spool;")
	fmt.Fprintln(w, "64 bad usage, 74 spool I/O error, 78 configuration error, no spool directory or an unsafe one;")
	_, err := fmt.Fprintln(w, "with queue ids: 66 when one is not queued (or, for --deliver, held), 75 when a run holds one (or, for --deliver and --expire, the spool).")
	return err
}

// Run runs smtp-send with args (as os.Args: the program's name first) and
// the process's environment, writing the queue listing (--list) to stdout
// and the log and help to stderr, and returns the exit status: 0 for a
// completed run, deferrals included, or when another run holds the spool
// (and for --help); 64 for bad flags or arguments; 74 when the spool
// cannot be read or written; 78 for a bad or missing setting, or a
// missing or unsafe spool directory.
func Run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := o.flagSet(stderr)
	fs.Usage = func() { Usage(stderr) }
	if len(args) > 0 {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 && !o.explain && !o.admin() || (o.asJSON || o.filter != queue.ListFilter{}) && !o.list ||
		(o.explain || o.admin()) && (fs.NArg() == 0 || o.all) || o.modes() > 1 {
		fmt.Fprintf(stderr, "%s: unexpected arguments; see --help\n", name)
		return exitUsage
	}
	var ids []string
	if o.admin() {
		var err error
		if ids, err = queueIDs(fs.Args(), os.Stdin); err != nil {
			fmt.Fprintf(stderr, "%s: %s\n", name, textsafe.Escape(err.Error()))
			return exitUsage
		}
	}

	cfg, err := Load()
	if err != nil {
		// The message may quote a value from the environment.
		fmt.Fprintf(stderr, "%s: configuration: %s\n", name, textsafe.Escape(err.Error()))
		return exitConfig
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.SendLogLevel}))
	unknown, err := unknownSettings(os.Environ())
	if err != nil {
		log.Error("configuration", "err", err)
		return exitConfig
	}
	for _, k := range unknown {
		log.Warn("unknown setting ignored", "name", k)
	}
	if o.explain {
		return explain(fs.Args(), cfg, stdout, stderr, log)
	}
	// The spool's safety is checked before anything in it is read: the
	// root and every subdirectory this program uses (spool.ErrUnsafe).
	sp, err := spool.New(cfg.SpoolDir)
	var q *queue.Queue
	if err == nil {
		q, err = queue.Open(sp)
	}
	if err != nil {
		log.Error("cannot open the spool", "dir", cfg.SpoolDir, "err", err)
		return exitConfig
	}
	if o.list {
		if err := listQueue(stdout, q, time.Now(), o.all, o.asJSON, o.filter); err != nil {
			log.Error("listing the queue", "err", err)
			return exitIOErr
		}
		return exitOK
	}
	if o.show {
		return show(stdout, q, ids, time.Now(), log)
	}
	if o.del {
		return deleteMessages(q, ids, time.Now(), log)
	}
	if o.hold || o.release {
		return holdMessages(q, ids, o.hold, log)
	}
	sc, err := cfg.SendConfig()
	if err != nil {
		log.Error("configuration", "err", err)
		return exitConfig
	}
	if sc.Aliases != nil && !sc.Aliases.Has("postmaster") {
		// RFC 5321 section 4.5.1 requires postmaster in every domain;
		// RFC 2142 names abuse and the other roles.
		log.Warn("the alias file has no postmaster (RFC 5321 section 4.5.1, RFC 2142); postmaster@ each local domain must reach a person", "file", sc.Aliases.File())
	}
	metrics := startMetrics(cfg.SendMetricsFile, time.Now(), log)
	if err := pickup(q, cfg.SendDropMaxSize, sc, log); err != nil {
		log.Error("picking up drop/", "err", err)
		return exitIOErr
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// --deliver and --expire: a run of those messages only.
	s := &send.Sender{Spool: sp, Config: sc, Log: metrics.Logger(log), Only: ids, Expire: o.expire}
	st, err := s.Run(ctx, o.all)
	if !errors.Is(err, send.ErrBusy) {
		if werr := metrics.write(q, time.Now(), err); werr != nil {
			log.Error("writing the metrics file", "file", cfg.SendMetricsFile, "err", werr)
		}
	}
	switch {
	case errors.Is(err, send.ErrBusy) && o.admin():
		log.Error("another smtp-send run holds the spool; nothing done: try again when it ends", "dir", cfg.SpoolDir)
		return exitTempFail
	case errors.Is(err, send.ErrBusy):
		log.Info("another smtp-send run holds the spool; nothing to do", "dir", cfg.SpoolDir)
		return exitOK
	case errors.Is(err, spool.ErrUnsafe):
		log.Error("cannot open the spool", "dir", cfg.SpoolDir, "err", err)
		return exitConfig
	case err != nil:
		log.Error("run failed", "err", err)
		return exitIOErr
	}
	log.Info("run finished", "queued", st.Queued, "due", st.Due, "started", st.Started, "left", st.Left,
		"delivered", st.Delivered, "deferred", st.Deferred, "failed", st.Failed, "dsns", st.DSNs,
		"corrupt", st.Corrupt, "unreadable", st.Unreadable, "locked", st.Locked, "held", st.Held,
		"scan_ms", st.ScanTime.Milliseconds(), "first_delivery_ms", st.FirstDelivery.Milliseconds())
	switch {
	case st.Missing > 0:
		return exitNoInput
	case st.Locked > 0:
		return exitTempFail
	}
	return exitOK
}

// pickup moves what sendmail's drop helper left in drop/ into queue/
// (queue.Pickup) under the run lock, before the run lists what is due,
// and logs each file: queued with its new id and submitting uid, or set
// aside in corrupt/. A run that does not get the lock leaves drop/ to
// the run that holds it. An unsafe drop/ is logged and skipped: the queue
// is still delivered. It returns only an error of reading drop/.
func pickup(q *queue.Queue, maxSize int64, sc send.Config, log *slog.Logger) error {
	l, err := q.LockRun()
	if errors.Is(err, queue.ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	defer l.Unlock()
	picked, err := q.Pickup(maxSize, sc.TmpMaxAge, time.Now(), sc.Hostname)
	if errors.Is(err, queue.ErrDropUnsafe) {
		log.Error("drop/ not read", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	for _, p := range picked {
		switch {
		case p.ID != "":
			log.Info("picked up", "drop", p.Name, "id", p.ID, "uid", p.Uid, "login", textsafe.Escape(p.Login))
		case p.SetAside:
			log.Warn("dropped file set aside in corrupt/", "drop", p.Name, "uid", p.Uid, "err", p.Err)
		default:
			log.Error("dropped file left in drop/", "drop", p.Name, "err", p.Err)
		}
	}
	return nil
}

// explain prints the delivery plan of each address (send.Explain) to
// stdout without sending or touching the spool, and returns the exit
// status: 0, 64 for an address with control characters, 78 for bad
// settings, 74 when stdout fails.
func explain(addrs []string, cfg *Config, stdout, stderr io.Writer, log *slog.Logger) int {
	for _, a := range addrs {
		if strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			fmt.Fprintf(stderr, "%s: --explain: address %s has control characters\n", name, textsafe.Escape(a))
			return exitUsage
		}
	}
	sc, err := cfg.SendConfig()
	if err != nil {
		log.Error("configuration", "err", err)
		return exitConfig
	}
	res := send.NewResolver(sc.DNS)
	for i, a := range addrs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		p := send.Explain(context.Background(), sc, res, a)
		if _, err := p.WriteTo(stdout); err != nil {
			log.Error("writing the plan", "err", err)
			return exitIOErr
		}
	}
	return exitOK
}
