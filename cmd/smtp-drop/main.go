// Command smtp-drop is the setgid drop helper of sendmail (issue 13, phase
// 2, after Postfix's postdrop): sendmail, run by a user who cannot write
// the spool, streams the message file to it on standard input (the drop
// stream, spool.DropWriter), and it writes one new file into the spool's
// drop/ directory, which only its group (smtp-drop) may write. It can do
// nothing else. smtp-send picks the file up as untrusted input (package
// queue, Pickup).
//
// It is installed owner root, group smtp-drop, mode 2755, built with
// CGO_ENABLED=0 (scripts/install-sendmail). It takes nothing from the
// caller's environment: given one, it starts again without it (cleanStart),
// so that not even the runtime reads GODEBUG; the spool
// root and the size limit come from a configuration file whose path is
// fixed at build time (configPath, /etc/smtp-stdio/sendmail.conf; tests
// change it with -ldflags -X main.configPath=...), which must be a
// regular file owned by root and writable by nobody else:
//
//	# /etc/smtp-stdio/sendmail.conf
//	SMTP_SPOOL_DIR=/var/spool/smtp-stdio
//	SMTP_SENDMAIL_MAX_MESSAGE_SIZE=26214400
//
// Exit status: 0 once drop/<name> is complete and fsync'd (file and
// directory); 64 with arguments; 65 (EX_DATAERR) for a stream over the
// limit; 75 (EX_TEMPFAIL) for a stream without its trailer (the writer did
// not finish) or a write that failed; 78 (EX_CONFIG) for the
// configuration file. On any failure the file it created is removed.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// configPath is the configuration file, fixed at build time.
var configPath = "/etc/smtp-stdio/sendmail.conf"

// DropDir is drop/ under the spool root; package queue has the same
// name (queue.DropDir). It is not imported here, to keep this program
// small.
const dropDir = "drop"

// defaultMaxSize is SMTP_SENDMAIL_MAX_MESSAGE_SIZE's default, in bytes
// of the whole drop file (envelope and message): smtp-stdio's default
// SMTP_MAX_MESSAGE_SIZE.
const defaultMaxSize = 26214400

const (
	exitOK       = 0
	exitUsage    = 64
	exitDataErr  = 65
	exitTempFail = 75
	exitConfig   = 78
)

func main() {
	reopenStdio()
	cleanStart()
	// Nothing below reads the environment; clearing it also keeps it from
	// anything the runtime would read lazily (TZ, for one).
	os.Clearenv()
	os.Exit(run())
}

// cleanStart starts the program again with an empty environment when it
// was given one: the runtime reads GODEBUG (and GOGC, GOMAXPROCS, ...)
// before main, and only a new start is free of them. The setgid bit
// applies to the new start as to the first. The runtime itself adds
// GOTRACEBACK=none to a setgid program's environment (secure mode), so
// that one alone does not count. When the program file cannot be run
// again (no /proc), it goes on with the environment cleared.
func cleanStart() {
	for _, kv := range os.Environ() {
		if kv != "GOTRACEBACK=none" {
			syscall.Exec("/proc/self/exe", []string{"smtp-drop"}, []string{})
			return
		}
	}
}

// reopenStdio opens /dev/null on any of fds 0 to 2 that is closed, so that
// a file this program opens cannot become standard error
// (CVE-2023-29403; Go's runtime does the same for setgid programs since
// 1.20.5, this is belt and braces).
func reopenStdio() {
	for fd := 0; fd <= 2; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == unix.EBADF {
			nfd, err := unix.Open("/dev/null", unix.O_RDWR, 0)
			if err != nil || nfd != fd {
				os.Exit(exitTempFail)
			}
		}
	}
}

func run() int {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "smtp-drop: takes no arguments; sendmail runs it with the message on standard input")
		return exitUsage
	}
	root, limit, err := readConfig(configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "smtp-drop: %v\n", err)
		return exitConfig
	}
	if err := drop(filepath.Join(root, dropDir), limit); err != nil {
		fmt.Fprintf(os.Stderr, "smtp-drop: message not queued: %v\n", err)
		if errors.Is(err, spool.ErrDropTooBig) {
			return exitDataErr
		}
		return exitTempFail
	}
	return exitOK
}

// readConfig reads the configuration file at path: KEY=VALUE lines,
// '#' comments and empty lines. The file must be a regular file (no
// symbolic link), owned by root, not writable by group or others. It
// returns the spool root (an absolute path, required) and the size limit
// in bytes, or an error naming what is wrong.
func readConfig(path string) (root string, limit int64, err error) {
	f, err := spool.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return "", 0, fmt.Errorf("configuration: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("configuration: %w", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return "", 0, fmt.Errorf("configuration %s must be owned by root and writable by no one else (uid %d, mode %04o)",
			path, st.Uid, st.Mode&0o7777)
	}
	limit = defaultMaxSize
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "SMTP_SPOOL_DIR":
			if !filepath.IsAbs(v) {
				return "", 0, fmt.Errorf("%s:%d: SMTP_SPOOL_DIR must be an absolute path", path, n)
			}
			root = v
		case "SMTP_SENDMAIL_MAX_MESSAGE_SIZE":
			if limit, err = strconv.ParseInt(v, 10, 64); err != nil || limit <= 0 {
				return "", 0, fmt.Errorf("%s:%d: SMTP_SENDMAIL_MAX_MESSAGE_SIZE must be a positive number of bytes", path, n)
			}
		default:
			return "", 0, fmt.Errorf("%s:%d: unknown setting %q", path, n, k)
		}
	}
	if err := sc.Err(); err != nil {
		return "", 0, fmt.Errorf("configuration: %w", err)
	}
	if root == "" {
		return "", 0, fmt.Errorf("%s: SMTP_SPOOL_DIR is not set", path)
	}
	return root, limit, nil
}

// drop copies standard input into dir/.NAME (O_CREAT|O_EXCL|O_NOFOLLOW,
// relative to the directory opened once), fsyncs it, renames it to
// dir/NAME without replacing anything (RENAME_NOREPLACE), and makes the
// rename durable. NAME is 128 random bits in hex. The pickup never reads a
// name that starts with '.', so a helper killed mid-write leaves nothing
// it would take. drop/ (mode 1730) cannot be opened for reading by its
// group, so cannot be fsync'd: the helper holds it by O_PATH and, after
// the rename, calls syncfs(2) on the file's filesystem, which writes the
// directory entry too. On error the file is removed.
func drop(dir string, limit int64) error {
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	name := hex.EncodeToString(b[:])
	tmp := "." + name
	unix.Umask(0o022)
	fd, err := unix.Openat(dfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s/%s: %w", dir, tmp, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, tmp))
	defer f.Close()
	err = spool.CopyDrop(f, os.Stdin, limit)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_NOREPLACE)
	}
	if err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return err
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		unix.Unlinkat(dfd, name, 0)
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}
