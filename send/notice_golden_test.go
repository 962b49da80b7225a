package send

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/queue"
	"github.com/smtp-stdio/smtp-stdio/spool"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/notice from WriteNotice's output")

// WriteNotice is a pure function of its inputs: each case's notification
// is compared byte for byte with testdata/notice/<case>.eml (go test
// -run TestNoticeGolden -update ./send rewrites them; read the diff), and
// is a valid notification (checkNotice).
func TestNoticeGolden(t *testing.T) {
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	plain := "Received: from client.test (127.0.0.1) by mx.local with ESMTP id x;\r\n" +
		"\tSat, 21 Nov 2026 10:00:00 +0000\r\nFrom: <sender@example.org>\r\nSubject: report me\r\n\r\nHello.\r\n"
	refused := queue.Rcpt{Addr: "b@example.net", Status: queue.Failed, Code: 550, Enhanced: "5.1.1",
		Text: "no such user here", Stage: "rcpt", Relay: "smtp.example.org:587", At: at.Add(time.Minute)}
	eight := "Received: from client.test (127.0.0.1) by mx.local with ESMTP id x;\r\n" +
		"\tSat, 21 Nov 2026 10:00:00 +0000\r\nFrom: <sender@example.org>\r\nSubject: report me\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nD\xc3\xa9j\xc3\xa0 vu.\r\n"
	for _, tc := range []struct {
		name, from, orig string
		rcpts            []queue.Rcpt
		ret              string // the message's RET (RFC 3461 section 4.3)
	}{
		{"refused", "sender@example.org", plain, []queue.Rcpt{refused}, ""},
		{"expired", "sender@example.org", plain, []queue.Rcpt{{Addr: "c@example.net", Status: queue.Failed, Code: 452,
			Enhanced: "4.2.2", Text: "mailbox full", Stage: "rcpt", Relay: "[192.0.2.1]:25", At: at.Add(5 * 24 * time.Hour), Expired: true}}, ""},
		{"two recipients", "sender@example.org", plain, []queue.Rcpt{refused, {Addr: "d@example.net", Status: queue.Failed,
			Code: 554, Enhanced: "x.y", Text: "content rejected", Stage: "dot", Relay: "smtp.example.org:587", At: at.Add(time.Minute)}}, ""},
		{"local utf8", "s\u00e9@example.org", plain, []queue.Rcpt{{Addr: "d\u00e9j\u00e0@x.test", Status: queue.Failed,
			Enhanced: "5.6.7", Text: "the smarthost does not offer SMTPUTF8 (RFC 6531), which this address needs",
			Stage: "local", Relay: "smtp.example.org:587", At: at.Add(time.Minute)}}, ""},
		{"hostile headers", "sender@example.org", "X-Long: " + strings.Repeat("0123456789", 110) + "\r\n" +
			"Subject: d\xc3\xa9j\xc3\xa0 vu\x00\r\n\r\nHello.\r\n", []queue.Rcpt{{Addr: "b@example.net", Status: queue.Failed,
			Code: 550, Enhanced: "5.1.1", Text: "bo\u00eete inconnue \u2014 \x1b[31mno\u202e such mailbox", Stage: "rcpt",
			Relay: "smtp.example.org:587", At: at.Add(time.Minute)}}, ""},
		{"no headers", "sender@example.org", "just a body line\r\n", []queue.Rcpt{refused}, ""},
		// Success notices (RFC 3461 sections 5.2.2, 5.2.3): relayed to a next hop
		// without DSN, delivered by a local transport.
		{"relayed", "sender@example.org", plain, []queue.Rcpt{{Addr: "b@example.net", Status: queue.Done, Code: 250,
			Enhanced: "2.0.0", Text: "Ok: queued as 4XyZ", Stage: "dot", Relay: "smtp.example.org:587", At: at.Add(time.Minute),
			Action: "relayed", DSN: "20261121T100500.0123456789abcdef"}}, ""},
		{"delivered", "sender@example.org", plain, []queue.Rcpt{{Addr: "b@example.net", Status: queue.Done,
			Enhanced: "2.0.0", Text: "delivered to maildir /var/mail/b/", Stage: "local", Relay: maildirRelay, At: at.Add(time.Minute),
			Action: "delivered", DSN: "20261121T100500.0123456789abcdef"}}, ""},
		// An alias of several addresses took the message (RFC 3461
		// section 5.2.7.3): how many, and the expansion's queue id,
		// stay out of the notice.
		{"expanded", "sender@example.org", plain, []queue.Rcpt{{Addr: "staff@example.org", Status: queue.Done,
			Enhanced: "2.0.0", Text: "alias expanded to 2 address(es), queue id 20261121T100000.fedcba9876543210-a1",
			Stage: ExpandedStage, At: at.Add(time.Minute), Action: "expanded", DSN: "20261121T100500.0123456789abcdef"}}, ""},
		// A delay notice: still pending, the last deferral, Will-Retry-Until.
		{"delayed", "sender@example.org", plain, []queue.Rcpt{{Addr: "c@example.net", Code: 451, Enhanced: "4.3.0",
			Text: "try again later", Stage: "rcpt", Relay: "[192.0.2.1]:25", At: at.Add(4 * time.Hour),
			Delayed: "20261121T100500.0123456789abcdef"}}, ""},
		// RET=FULL: the whole message as message/rfc822, as it is, or
		// in its 7-bit version (8-bit body re-encoded quoted-printable),
		// or, over the 1,000-octet limit, the headers and why.
		{"ret full", "sender@example.org", plain, []queue.Rcpt{refused}, "FULL"},
		{"ret full 8bit", "sender@example.org", eight, []queue.Rcpt{refused}, "FULL"},
		{"ret full too big", "sender@example.org", plain + strings.Repeat("0123456789abcdef\r\n", 60), []queue.Rcpt{refused}, "FULL"},
		{"ret hdrs", "sender@example.org", plain, []queue.Rcpt{refused}, "HDRS"},
		// A success notice returns the header section, RET=FULL or not.
		{"relayed ret full", "sender@example.org", plain, []queue.Rcpt{{Addr: "b@example.net", Status: queue.Done, Code: 250,
			Enhanced: "2.0.0", Text: "Ok", Stage: "dot", Relay: "smtp.example.org:587", At: at.Add(time.Minute), Action: "relayed"}}, "FULL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &queue.Notice{ID: "20261121T100500.0123456789abcdef", Now: at.Add(5 * time.Minute),
				Envelope: &spool.Envelope{QueueID: "20261121T100000.fedcba9876543210", Received: at, From: tc.from,
					To: []string{"a@example.net", "b@example.net"}, Ret: tc.ret},
				Size: int64(len(tc.orig)), ReturnFull: 1000,
				Content: func() io.Reader { return strings.NewReader(tc.orig) },
				Arrival: at, Attempts: 3, Rcpts: tc.rcpts, RetryUntil: at.Add(5 * 24 * time.Hour)}
			var b bytes.Buffer
			if err := WriteNotice(&b, "mx.example.org", n); err != nil {
				t.Fatal(err)
			}
			checkNotice(t, b.String(), tc.orig, tc.from, len(tc.rcpts))
			path := filepath.Join("testdata", "notice", strings.ReplaceAll(tc.name, " ", "-")+".eml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("notification differs from %s (run with -update, then read the diff):\n%s", path, b.String())
			}
		})
	}
}
