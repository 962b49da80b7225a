package authcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/smtp-stdio/smtp-stdio/protocol"
)

// Checkpassword checks credentials with a program in the checkpassword
// interface of qmail and vpopmail (https://cr.yp.to/checkpwd/interface.html):
// it is run with its arguments and then "/bin/true", the program it
// runs on success; it reads "user\0password\0timestamp\0" from
// descriptor 3, the timestamp empty (SMTP has no APOP challenge); and it
// exits 0 for yes, 1 for no, and 111 (or anything else) when it could
// not check. It gets a clean environment: PATH=/usr/bin:/bin, and
// TCPREMOTEIP with the client's address on a network session, as
// tcpserver sets it.
type Checkpassword struct {
	// Argv is the program and its arguments, such as
	// ["/usr/local/bin/checkpassword"].
	Argv []string
	// Timeout bounds each run; past it the program is killed and the
	// client told 454 4.7.0.
	Timeout time.Duration
}

// truePath is the program a checkpassword runs when the password is
// right: it only exits 0.
const truePath = "/bin/true"

// Authenticate implements protocol.Authenticator: nil when the program
// exits 0, an error wrapping protocol.ErrBadCredentials when it exits
// 1, and any other error when it exits otherwise, is killed by a signal
// or Timeout, or cannot be started. The error carries at most 200 bytes
// of what it wrote to standard error.
func (c *Checkpassword) Authenticate(client protocol.Client, user, pass string) error {
	if len(c.Argv) == 0 {
		return errors.New("authcheck: no checkpassword program")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("authcheck: checkpassword pipe: %w", err)
	}
	defer r.Close()
	// The credentials fit in the pipe's buffer (a user name and a
	// password of at most 1 KiB each, protocol.Session's limit), so
	// they are written before the program starts and the pipe closed:
	// a program that reads nothing cannot block us.
	_, werr := w.Write([]byte(user + "\x00" + pass + "\x00\x00"))
	w.Close()
	if werr != nil {
		return fmt.Errorf("authcheck: checkpassword pipe: %w", werr)
	}
	ctx := context.Background()
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], append(c.Argv[1:len(c.Argv):len(c.Argv)], truePath)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if !client.Local && client.Addr.IsValid() {
		cmd.Env = append(cmd.Env, "TCPREMOTEIP="+client.Addr.Addr().Unmap().String())
	}
	cmd.ExtraFiles = []*os.File{r} // descriptor 3
	var stderr bytes.Buffer
	cmd.Stderr = &limited{b: &stderr, n: 200}
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("authcheck: checkpassword %s: no answer within %v", c.Argv[0], c.Timeout)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return fmt.Errorf("%w: checkpassword said no", protocol.ErrBadCredentials)
	case errors.As(err, &exit):
		return fmt.Errorf("authcheck: checkpassword %s: %v (temporary failure) %s", c.Argv[0], err, strings.TrimSpace(stderr.String()))
	}
	return fmt.Errorf("authcheck: checkpassword: %w", err)
}

// limited keeps the first n bytes written to it and discards the rest.
type limited struct {
	b *bytes.Buffer
	n int
}

// Write implements io.Writer; it never fails, so the program never
// sees a broken pipe for writing too much.
func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
