package protocol

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// tlsToBDAT runs a session to the middle of a BDAT chunk over TLS: 100
// octets announced, 20 sent.
func tlsToBDAT(t *testing.T) *tlsDialog {
	server, client := testCert(t)
	cfg := testConfig()
	cfg.TLS = server
	td := startTLSDialog(t, cfg)
	td.expect("", "220 ")
	td.expect("EHLO c.example", "250-")
	td.expect("STARTTLS", "220 ")
	td.upgrade(client)
	td.expect("EHLO c.example", "250-")
	td.expect("MAIL FROM:<a@c.example>", "250 ")
	td.expect("RCPT TO:<b@d.example>", "250 ")
	td.send("BDAT 10\r\nSubject: x")
	td.expect("", "250 2.0.0 10 octets received")
	td.send("BDAT 100 LAST\r\n")
	return td
}

// checkEnded: the session ended with an error, nothing was committed,
// the message was aborted, and the one MAIL before was the only one
// carried out: the plaintext after TLS was never read as SMTP. It
// returns Serve's error.
func checkEnded(t *testing.T, td *tlsDialog) error {
	t.Helper()
	err := td.end()
	if err == nil {
		t.Errorf("Serve = nil, want an error")
	}
	if len(td.d.committed()) != 0 || td.mail != 1 {
		t.Errorf("%d committed, %d MAIL carried out: plaintext was read", len(td.d.committed()), td.mail)
	}
	if err := td.d.checkFinished(); err != nil {
		t.Error(err)
	}
	return err
}

// TestBDATTLSCloseMidChunk: close_notify in the middle of a BDAT chunk,
// then plaintext that would complete the chunk and start a second
// transaction: the session ends (the Exim BDAT/TLS CVE class), nothing
// is committed.
func TestBDATTLSCloseMidChunk(t *testing.T) {
	td := tlsToBDAT(t)
	td.send("\r\n\r\nhalf a message\r\n")
	if err := td.conn.(*tls.Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	go io.WriteString(td.raw, strings.Repeat("x", 100)+"MAIL FROM:<p@c.example>\r\nRCPT TO:<b@d.example>\r\nBDAT 0 LAST\r\n")
	if err := checkEnded(t, td); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("Serve = %v, want an end of input", err)
	}
}

// TestBDATTLSErrorMidChunk: a record that does not decrypt in the middle
// of a BDAT chunk ends the session, nothing committed.
func TestBDATTLSErrorMidChunk(t *testing.T) {
	td := tlsToBDAT(t)
	td.send("\r\n\r\nhalf")
	// A TLS 1.3 application-data record of garbage: its tag fails.
	rec := append([]byte{23, 3, 3, 0, 40}, bytes.Repeat([]byte{0x5a}, 40)...)
	go func() {
		td.raw.Write(rec)
		io.WriteString(td.raw, strings.Repeat("x", 100)+"MAIL FROM:<p@c.example>\r\n")
	}()
	checkEnded(t, td)
}

// TestBDATWithheld: without CHUNKING offered, BDAT gets 502 in every
// state, and its chunk is read all the same, never taken for commands.
func TestBDATWithheld(t *testing.T) {
	cfg := testConfig()
	cfg.Withhold = ExtCHUNKING
	d := &fakeDelivery{}
	out, err := serveString(cfg, d, "EHLO c.example\r\nBDAT 6\r\nQUIT\r\nMAIL FROM:<a@c.example>\r\n"+
		"RCPT TO:<b@d.example>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\nQUIT\r\n")
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if strings.Contains(out, "CHUNKING") {
		t.Errorf("EHLO offers CHUNKING withheld:\n%s", out)
	}
	want := "502 5.5.1 Command not implemented\r\n250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n" +
		"502 5.5.1 Command not implemented\r\n250 2.0.0 OK\r\n221 "
	if !strings.Contains(out, want) {
		t.Errorf("replies:\n%s\nwant them to hold\n%s", out, want)
	}
}

// repeatReader repeats s forever.
type repeatReader struct {
	s   string
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.s[r.off:])
		r.off = (r.off + k) % len(r.s)
		n += k
	}
	return n, nil
}

// TestBDATMemory sends a 100 MiB message in 1 MiB chunks: the chunks are
// streamed, never held, so memory stays small.
func TestBDATMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB")
	}
	const chunk, n = 1 << 20, 100
	parts := []io.Reader{strings.NewReader("EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@d.example>\r\n")}
	src := &repeatReader{s: strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\r\n"}
	for i := range n {
		cmd := "BDAT 1048576\r\n"
		if i == n-1 {
			cmd = "BDAT 1048576 LAST\r\n"
		}
		parts = append(parts, strings.NewReader(cmd), io.LimitReader(src, chunk))
	}
	parts = append(parts, strings.NewReader("QUIT\r\n"))
	cfg := testConfig()
	cfg.MaxMessageSize = 2 * chunk * n
	d := &countingDelivery{}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var out bytes.Buffer
	err := NewSession(cfg, testClient, &relayPolicy{}, d, discardLogger()).Serve(bufio.NewReader(io.MultiReader(parts...)), &out, nil)
	runtime.ReadMemStats(&after)
	if err != nil || !strings.Contains(out.String(), "250 2.0.0 OK queued as C1") || d.n < chunk*n {
		t.Fatalf("Serve: %v, %d bytes, output %q", err, d.n, out.String())
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("a 100 MiB message in BDAT chunks allocated %d bytes", alloc)
	}
}
