package sendmail

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// DropHelper is the name of the setgid drop helper (cmd/smtp-drop),
// installed in the same directory as sendmail (scripts/install-sendmail).
const DropHelper = "smtp-drop"

// Drop queues the message from in as Queue does, but through the drop
// helper at helper: the message file goes to the helper's standard input
// as a drop stream (spool.DropWriter), and the helper writes it into the
// spool's drop/, for smtp-send to pick up. This is how a user who cannot
// write the spool submits (issue 13, phase 2). The helper gets an empty
// environment and writes its messages to stderr. The returned queue id is
// sendmail's: smtp-send gives the message a new one when it picks it up.
// The error is a *Failure: the helper's exit status when it exited
// 65 (over its size limit), else EX_TEMPFAIL.
func (s *Submission) Drop(helper string, in io.Reader, stderr io.Writer) (string, error) {
	return s.queue(func(env *spool.Envelope) (sink, error) { return startDrop(helper, env, stderr) }, in)
}

// dropSink is a running drop helper and the drop stream into it.
type dropSink struct {
	cmd  *exec.Cmd
	pipe io.WriteCloser
	dw   *spool.DropWriter
}

func startDrop(helper string, env *spool.Envelope, stderr io.Writer) (*dropSink, error) {
	cmd := exec.Command(helper)
	cmd.Env = []string{}
	cmd.Stderr = stderr
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("drop helper: %w", err)
	}
	d := &dropSink{cmd: cmd, pipe: pipe}
	if d.dw, err = spool.NewDropWriter(pipe, env); err != nil {
		d.Abort()
		return nil, err
	}
	return d, nil
}

// Write streams message bytes to the helper. When the helper has exited
// (over its size limit, say), the error is its status, as Commit's.
func (d *dropSink) Write(p []byte) (int, error) {
	n, err := d.dw.Write(p)
	if err != nil {
		d.pipe.Close()
		if werr := d.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// Commit ends the stream with its trailer and waits for the helper: nil
// once it exited 0, that is once drop/<name> is durable.
func (d *dropSink) Commit() error {
	err := d.dw.Close()
	if cerr := d.pipe.Close(); err == nil {
		err = cerr
	}
	if werr := d.wait(); werr != nil {
		return werr
	}
	// The helper took the whole stream; a write error here means it
	// exited early, and it said why.
	return err
}

// wait waits for the helper and returns its failure as a *Failure.
func (d *dropSink) wait() error {
	werr := d.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(werr, &ee):
		status := exitTempFail
		if ee.ExitCode() == exitDataErr {
			status = exitDataErr
		}
		return &Failure{Status: status, Err: fmt.Errorf("drop helper %s: %v", d.cmd.Path, werr)}
	case werr != nil:
		return &Failure{Status: exitTempFail, Err: werr}
	}
	return nil
}

// Abort closes the stream without its trailer: the helper refuses it,
// removes its file and exits 75. It waits for the helper.
func (d *dropSink) Abort() error {
	d.pipe.Close()
	d.cmd.Wait()
	return nil
}

// dropHelperPath returns the drop helper beside this program's file.
func dropHelperPath() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(self), DropHelper), nil
}

// ownsSpool reports whether the spool root at dir belongs to this
// process's effective user, who then writes queue/ directly; anyone else
// goes through the drop helper. A root that cannot be examined is not
// owned.
func ownsSpool(dir string) bool {
	fi, err := os.Stat(dir)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
