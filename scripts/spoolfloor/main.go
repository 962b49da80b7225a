// Command spoolfloor is the least a durable one-message receiver can cost,
// for scripts/bench-session: it reads standard input to EOF into a new
// file under DIR/tmp, fsyncs the file, renames it into DIR/queue and
// fsyncs that directory (the same durable sequence as smtp-stdio's
// spool), then exits. It parses no SMTP and answers nothing. Built
// static, with only the os and syscall packages, it is the spawn floor
// (a static Go binary that reads standard input) plus the file system's
// cost of one durable file: what smtp-stdio's per-session CPU is
// measured against, beside the spawn floor alone.
//
// Usage: spoolfloor DIR (DIR/tmp and DIR/queue must exist). The exit
// status is 1 on any error, which it prints.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: spoolfloor DIR")
		os.Exit(2)
	}
	if err := spool(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "spoolfloor:", err)
		os.Exit(1)
	}
}

// spool writes standard input durably as one new file in dir/queue.
func spool(dir string) error {
	name := strconv.FormatInt(time.Now().UnixNano(), 16) + "." + strconv.Itoa(os.Getpid())
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, os.Stdin); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "queue", name)); err != nil {
		return err
	}
	d, err := os.Open(filepath.Join(dir, "queue"))
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		return err
	}
	return d.Close()
}
