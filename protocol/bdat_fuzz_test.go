package protocol

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// dotStuff frames msg for DATA as a careful client does: a "." that
// starts a line (at the start, or after any CR or LF, as the server
// reads lines: dataread.go) is doubled, and the end-of-data line follows.
// msg is empty or ends in CRLF.
func dotStuff(msg []byte) []byte {
	var b bytes.Buffer
	for i, c := range msg {
		if c == '.' && (i == 0 || msg[i-1] == '\n' || msg[i-1] == '\r') {
			b.WriteByte('.')
		}
		b.WriteByte(c)
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// chunked frames msg as BDAT chunks whose sizes cuts gives, each byte a
// size from 0 to 49 (an empty chunk too), the rest in the last chunk;
// with zeroLast, the last chunk is an empty BDAT 0 LAST.
func chunked(msg, cuts []byte, zeroLast bool) []byte {
	var b bytes.Buffer
	for _, c := range cuts {
		n := min(int(c)%50, len(msg))
		if n == len(msg) {
			break
		}
		fmt.Fprintf(&b, "BDAT %d\r\n%s", n, msg[:n])
		msg = msg[n:]
	}
	if zeroLast {
		fmt.Fprintf(&b, "BDAT %d\r\n%sBDAT 0 LAST\r\n", len(msg), msg)
	} else {
		fmt.Fprintf(&b, "BDAT %d LAST\r\n%s", len(msg), msg)
	}
	return b.Bytes()
}

// verdict returns the reply that decided the message of a session whose
// transaction began at the fourth reply line (greeting, EHLO, MAIL,
// RCPT): DATA's reply after 354, or the first BDAT reply that is not an
// intermediate 250.
func verdict(out string, ehloLines int) string {
	lines := replyLines(out)
	for _, l := range lines[min(len(lines), 3+ehloLines):] {
		if strings.HasPrefix(l, "354 ") || strings.HasPrefix(l, "250 2.0.0 ") && strings.HasSuffix(l, " octets received") {
			continue
		}
		return l
	}
	return ""
}

// FuzzBDATvsDATA is the proof that the two framings feed one body path:
// the same message sent with DATA (dot-stuffed) and with BDAT (in chunks
// of random sizes, boundaries anywhere: inside CRLF, inside CRLF.CRLF,
// an empty chunk, BDAT 0 LAST) is delivered as the same bytes, or gets
// the same refusal, under either bare CR/LF policy, with or without the
// header check, with a size limit and a hop limit small enough to be
// reached. A message that does not end in CRLF gets one for both (DATA
// cannot send it otherwise; the BDAT completion is TestTranscripts'
// bdat.txt).
func FuzzBDATvsDATA(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nhello\r\n.\r\n..\r\n"), []byte{12, 1, 3}, false, false, false)
	f.Add([]byte("Received: a\r\nReceived: b\r\n\r\nx\r\n"), []byte{13}, false, true, true)
	f.Add([]byte("A: 1\r\nX-Reject: y\r\n\r\nb\r\n"), []byte{0, 5}, true, true, false)
	f.Add([]byte("a\nb\rc\r\r\n.\n.\r.x\r\n"), []byte{1, 2, 3, 4, 5, 6}, true, false, true)
	f.Add([]byte("a\nb\rc\r\r\n.\n.\r.x\r\n"), []byte{1, 2, 3, 4, 5, 6}, false, true, false)
	f.Add([]byte(strings.Repeat("y", 600)+"\r\n"), []byte{49, 49, 49}, false, false, false)
	f.Add([]byte("\r\n\r\n"), []byte{1}, false, true, false)
	f.Add([]byte(""), []byte{}, false, false, true)
	for _, v := range smugglingVectors {
		f.Add([]byte("hello"+v+smuggled+"\r\n"), []byte{5, 1, 1, 1, 1}, false, false, false)
		f.Add([]byte("hello"+v+smuggled+"\r\n"), []byte{6, 2}, true, true, true)
	}
	f.Fuzz(func(t *testing.T, msg, cuts []byte, norm, checks, zeroLast bool) {
		if len(msg) > 4096 || len(cuts) > 200 {
			return
		}
		if len(msg) > 0 && !bytes.HasSuffix(msg, crlf) {
			msg = append(msg, crlf...)
		}
		cfg := testConfig()
		cfg.MaxMessageSize, cfg.MaxReceived, cfg.MaxErrors = 500, 1, 0
		if norm {
			cfg.BareLineEndings = NormalizeBare
		}
		if checks {
			cfg.CheckHeader, cfg.MaxHeaderSize = checkHeaderForTests, 100
		}
		const head = "EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
		dd, bd := &fakeDelivery{}, &fakeDelivery{}
		dataOut, err := serveString(cfg, dd, head+"DATA\r\n"+string(dotStuff(msg))+"QUIT\r\n")
		if err != nil {
			t.Fatalf("DATA session: %v\n%s", err, dataOut)
		}
		bdatOut, err := serveString(cfg, bd, head+string(chunked(msg, cuts, zeroLast))+"QUIT\r\n")
		if err != nil {
			t.Fatalf("BDAT session: %v\n%s", err, bdatOut)
		}
		ehlo := len(replyEHLO("h", "x", 1, 0, false, false).Lines)
		dv, bv := verdict(dataOut, ehlo), verdict(bdatOut, ehlo)
		if dv != bv {
			t.Fatalf("DATA: %q, BDAT: %q\nmessage %q\nDATA session:\n%s\nBDAT session:\n%s", dv, bv, msg, dataOut, bdatOut)
		}
		dc, bc := dd.committed(), bd.committed()
		if len(dc) != len(bc) {
			t.Fatalf("DATA committed %d, BDAT %d", len(dc), len(bc))
		}
		if len(dc) == 1 && !bytes.Equal(dc[0].buf.Bytes(), bc[0].buf.Bytes()) {
			t.Fatalf("delivered bytes differ\nDATA: %q\nBDAT: %q", dc[0].buf.Bytes(), bc[0].buf.Bytes())
		}
		for _, d := range []*fakeDelivery{dd, bd} {
			if err := d.checkFinished(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
