package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// tlsRow measures what TLS costs a session: smtp-stdio's CPU for a 2 KiB
// session over a socket with implicit TLS (a full TLS 1.3 handshake, an
// ECDSA P-256 certificate, no resumption) and without, n of each,
// interleaved, and prints the medians and their difference.
func tlsRow(stdio, base string, n int) error {
	cert, key, err := writeCert(base)
	if err != nil {
		return err
	}
	spoolDir, _ := freshDir(base, "tls-spool")
	env := []string{"SMTP_SPOOL_DIR=" + spoolDir, "SMTP_HOSTNAME=bench.example", "SMTP_LOCAL_DOMAINS=example.org", "SMTP_LOG=off"}
	tlsEnv := append(env[:len(env):len(env)], "SMTP_TLS_CERT="+cert, "SMTP_TLS_KEY="+key, "SMTP_TLS_MODE=implicit")
	self, err := os.Executable()
	if err != nil {
		return err
	}
	floorEnv := []string{"FLOOR_CERT=" + cert, "FLOOR_KEY=" + key}
	var plain, withTLS, floorPlain, floorTLS []time.Duration
	for range n {
		for _, m := range []struct {
			bin    string
			env    []string
			useTLS bool
			into   *[]time.Duration
		}{
			{stdio, env, false, &plain}, {stdio, tlsEnv, true, &withTLS},
			{self, floorEnv, false, &floorPlain}, {self, append(floorEnv, "FLOOR_TLS=1"), true, &floorTLS},
		} {
			cpu, err := socketSession(m.bin, m.env, m.useTLS)
			if err != nil {
				return fmt.Errorf("%s: %w", m.bin, err)
			}
			*m.into = append(*m.into, cpu)
		}
	}
	pm, tm := median(plain), median(withTLS)
	fp, ft := median(floorPlain), median(floorTLS)
	fmt.Printf("smtp-stdio 2 KiB session on a socket:        median CPU %v over %d runs\n", pm, n)
	fmt.Printf("the same over implicit TLS 1.3 (P-256):      median CPU %v over %d runs\n", tm, n)
	fmt.Printf("TLS difference, smtp-stdio:                  %v (goal <= 0.7ms)\n", tm-pm)
	fmt.Printf("TLS difference, floor (a Go process that reads the key pair, shakes hands, answers): %v\n", ft-fp)
	return nil
}

// floorChild is the TLS floor: a Go process that answers the session's
// commands on standard input and output with canned replies and spools
// nothing, over TLS 1.3 with the key pair of $FLOOR_CERT and $FLOOR_KEY
// read as smtp-stdio reads it when $FLOOR_TLS is set. The difference of
// its two runs is what TLS costs a fresh Go process and no less.
func tlsFloorChild() {
	var c io.ReadWriter = struct {
		io.Reader
		io.Writer
	}{os.Stdin, os.Stdout}
	if os.Getenv("FLOOR_TLS") != "" {
		cert, err := tls.LoadX509KeyPair(os.Getenv("FLOOR_CERT"), os.Getenv("FLOOR_KEY"))
		if err != nil {
			die(err)
		}
		fc, err := net.FileConn(os.Stdin)
		if err != nil {
			die(err)
		}
		tc := tls.Server(fc, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := tc.Handshake(); err != nil {
			die(err)
		}
		c = tc
	}
	r := bufio.NewReader(c)
	io.WriteString(c, "220 floor\r\n")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch {
		case strings.HasPrefix(l, "DATA"):
			io.WriteString(c, "354 go\r\n")
			for {
				if l, err = r.ReadString('\n'); err != nil || l == ".\r\n" {
					break
				}
			}
			io.WriteString(c, "250 2.0.0 ok\r\n")
		case strings.HasPrefix(l, "QUIT"):
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}

// socketSession runs one 2 KiB session of stdio on one end of a socket
// pair, as inetd would hand it a connection, and returns its CPU time.
// With useTLS the client runs a TLS 1.3 handshake first (implicit TLS).
func socketSession(stdio string, env []string, useTLS bool) (time.Duration, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	child := os.NewFile(uintptr(fds[0]), "child")
	parent := os.NewFile(uintptr(fds[1]), "parent")
	defer parent.Close()
	conn, err := net.FileConn(parent)
	if err != nil {
		child.Close()
		return 0, err
	}
	defer conn.Close()
	cmd := exec.Command(stdio)
	cmd.Env, cmd.Stdin, cmd.Stdout = env, child, child
	if err := cmd.Start(); err != nil {
		child.Close()
		return 0, err
	}
	child.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var c net.Conn = conn
	if useTLS {
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err := tc.Handshake(); err != nil {
			cmd.Wait()
			return 0, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	r := bufio.NewReader(c)
	reply := func() (string, error) {
		for {
			l, err := r.ReadString('\n')
			if err != nil || len(l) < 4 || l[3] != '-' {
				return l, err
			}
		}
	}
	var last string
	steps := []string{"", "EHLO bench.example\r\n", "MAIL FROM:<bench@example.net>\r\n", "RCPT TO:<r@example.org>\r\n",
		"DATA\r\n", message2k() + ".\r\n", "QUIT\r\n"}
	for _, s := range steps {
		if s != "" {
			if _, err := io.WriteString(c, s); err != nil {
				return 0, err
			}
		}
		if last, err = reply(); err != nil {
			return 0, fmt.Errorf("after %q: %w", strings.TrimSpace(s), err)
		}
		if s == message2k()+".\r\n" && !strings.HasPrefix(last, "250 2.0.0") {
			return 0, fmt.Errorf("message not accepted: %q", last)
		}
	}
	if err := cmd.Wait(); err != nil {
		return 0, err
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// writeCert writes a self-signed ECDSA P-256 certificate and its key
// into dir and returns their paths.
func writeCert(dir string) (cert, key string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench.example"},
		DNSNames: []string{"bench.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", err
	}
	kDER, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", err
	}
	cert, key = filepath.Join(dir, "bench-cert.pem"), filepath.Join(dir, "bench-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return cert, key, os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kDER}), 0o600)
}
