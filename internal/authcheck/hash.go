package authcheck

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/term"
)

// HashPassword returns the argon2id hash of pass in the PHC string
// format, with a random 16-byte salt and this package's parameters
// (19 MiB, 2 passes, 1 lane): a line of a password file is the user
// name, a colon and this. It returns an error only when the system's
// random source fails.
func HashPassword(pass string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("authcheck: random salt: %w", err)
	}
	a := argonHash{memory: argonMemory, time: argonTime, threads: argonThreads}
	key := argon2.IDKey([]byte(pass), salt, a.time, a.memory, a.threads, argonKeyLen)
	return a.encode(salt, key), nil
}

// ReadPassword reads a new password for HashPassword: from the terminal
// in, without echo and twice (prompting on prompt), when in is one;
// otherwise one line of in, without its line ending. It returns an
// error for an empty password, two that differ, or a failed read.
func ReadPassword(in *os.File, prompt io.Writer) (string, error) {
	fd := int(in.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprint(prompt, "Password: ")
		p1, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("authcheck: reading the password: %w", err)
		}
		fmt.Fprint(prompt, "Again: ")
		p2, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("authcheck: reading the password: %w", err)
		}
		if string(p1) != string(p2) {
			return "", errors.New("authcheck: the passwords differ")
		}
		return nonEmpty(string(p1))
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("authcheck: reading the password: %w", err)
	}
	return nonEmpty(strings.TrimRight(line, "\r\n"))
}

func nonEmpty(p string) (string, error) {
	if p == "" {
		return "", errors.New("authcheck: empty password")
	}
	return p, nil
}
