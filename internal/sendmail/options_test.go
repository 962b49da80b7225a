package sendmail

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtp-stdio/smtp-stdio/spool"
)

// queued is what a submission left: the exit status, and for 0 the
// envelope and the message bytes of the one file in queue/.
type queued struct {
	status int
	env    spool.Envelope
	msg    string
}

var testNow = time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)

// submit parses args and queues input into a new spool as the user alice
// (uid 1000) with SMTP_HOSTNAME h.test and SMTP_SENDMAIL_DOMAIN d.test,
// as Run's default mode does.
func submit(t *testing.T, args []string, input string) queued {
	t.Helper()
	return submitWith(t, args, input, func(*Submission) {})
}

// submitWith is submit with the Submission changed by edit before it
// queues.
func submitWith(t *testing.T, args []string, input string, edit func(*Submission)) queued {
	t.Helper()
	o, err := Parse(append([]string{"sendmail"}, args...))
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	cfg := &Config{SpoolDir: dir, Hostname: "h.test", SendmailDomain: "d.test"}
	sub := &Submission{Opts: o, Cfg: cfg, User: User{Uid: 1000, Login: "alice"}, Now: func() time.Time { return testNow }}
	edit(sub)
	id, err := queue(sub, cfg, strings.NewReader(input), io.Discard)
	ents, _ := os.ReadDir(dir + "/" + spool.QueueDir)
	tmps, _ := os.ReadDir(dir + "/" + spool.TmpDir)
	if len(tmps) != 0 {
		t.Errorf("tmp/ holds %d files", len(tmps))
	}
	if err != nil {
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("not a *Failure: %v", err)
		}
		if len(ents) != 0 {
			t.Errorf("failed with %v, yet queue/ holds %d files", err, len(ents))
		}
		return queued{status: f.Status}
	}
	if len(ents) != 1 || ents[0].Name() != id {
		t.Fatalf("queue/ holds %v, want %s", ents, id)
	}
	m, err := spool.Open(dir + "/" + spool.QueueDir + "/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	return queued{env: m.Envelope, msg: string(b)}
}

// header returns the header section of msg.
func header(msg string) string {
	h, _, _ := strings.Cut(msg, "\r\n\r\n")
	return h + "\r\n"
}

// body returns the body of msg.
func body(msg string) string {
	_, b, _ := strings.Cut(msg, "\r\n\r\n")
	return b
}

func parse(t *testing.T, args ...string) *Options {
	t.Helper()
	o, err := Parse(append([]string{"sendmail"}, args...))
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return o
}

func wantUsage(t *testing.T, args ...string) {
	t.Helper()
	_, err := Parse(append([]string{"sendmail"}, args...))
	var u *UsageError
	if !errors.As(err, &u) {
		t.Errorf("Parse(%q) = %v, want a usage error", args, err)
	}
}

func wantIgnored(t *testing.T, args ...string) {
	t.Helper()
	o := parse(t, append(args, "bob@x.test")...)
	if len(o.Ignored) == 0 || o.Mode != ModeDeliver || !slices.Equal(o.Recipients, []string{"bob@x.test"}) {
		t.Errorf("Parse(%q) = %+v, want the option ignored", args, o)
	}
}

const plain = "Subject: s\n\nbody\n"

// flagCases has one case per row of docs/sendmail.md's flag table, by
// the row's first cell (TestFlagTable holds them to the document).
var flagCases = map[string]func(t *testing.T){
	"`-t`": func(t *testing.T) {
		q := submit(t, []string{"-t", "arg@x.test", "to@x.test"}, "To: To <to@x.test>, root\nCc: cc@x.test\nBcc: secret@x.test,\n  also@x.test\nSubject: s\n\nbody\n")
		want := []string{"arg@x.test", "to@x.test", "root@d.test", "cc@x.test", "secret@x.test", "also@x.test"}
		if !slices.Equal(q.env.To, want) {
			t.Errorf("recipients %v, want %v", q.env.To, want)
		}
		if strings.Contains(q.msg, "secret") || strings.Contains(q.msg, "Bcc") {
			t.Errorf("Bcc: in the message:\n%s", q.msg)
		}
		if !strings.Contains(q.msg, "To: To <to@x.test>, root\r\nCc: cc@x.test\r\nSubject: s\r\n") {
			t.Errorf("fields not kept:\n%s", q.msg)
		}
		// Without -t, the headers name no recipient.
		q = submit(t, []string{"arg@x.test"}, "To: to@x.test\nBcc: secret@x.test\n\nbody\n")
		if !slices.Equal(q.env.To, []string{"arg@x.test"}) || strings.Contains(q.msg, "secret") {
			t.Errorf("without -t: %v\n%s", q.env.To, q.msg)
		}
		// Only Bcc: the message gets To: undisclosed-recipients:;.
		q = submit(t, []string{"-t"}, "Bcc: secret@x.test\nSubject: s\n\nbody\n")
		if !slices.Equal(q.env.To, []string{"secret@x.test"}) || !strings.Contains(header(q.msg), "\r\nTo: undisclosed-recipients:;\r\n") {
			t.Errorf("only Bcc: %v\n%s", q.env.To, q.msg)
		}
		if q := submit(t, []string{"-t"}, plain); q.status != exitDataErr {
			t.Errorf("-t without recipients: status %d, want 65", q.status)
		}
		if q := submit(t, []string{"-t"}, "To: <<bad\n\nbody\n"); q.status != exitDataErr {
			t.Errorf("-t with a bad To:: status %d, want 65", q.status)
		}
	},
	"`-f`": func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"-f", "a@b.test"}, "a@b.test"},
			{[]string{"-fa@b.test"}, "a@b.test"},
			{[]string{"-f", "<a@b.test>"}, "a@b.test"},
			{[]string{"-f", "<>"}, ""},
			{[]string{"-f", ""}, ""},
			{[]string{"-f", "root"}, "root@d.test"},
			{nil, "alice@d.test"},
		} {
			q := submit(t, append(c.args, "bob@x.test"), plain)
			if q.status != 0 || q.env.From != c.want {
				t.Errorf("%q: status %d, sender %q, want %q", c.args, q.status, q.env.From, c.want)
			}
		}
		if q := submit(t, []string{"-f", "a b@c", "bob@x.test"}, plain); q.status != exitUsage {
			t.Errorf("a bad -f: status %d, want 64", q.status)
		}
	},
	"`-r`": func(t *testing.T) {
		if q := submit(t, []string{"-r", "a@b.test", "bob@x.test"}, plain); q.env.From != "a@b.test" {
			t.Errorf("sender %q", q.env.From)
		}
	},
	"`-F`": func(t *testing.T) {
		q := submit(t, []string{"-FCron Daemon", "bob@x.test"}, plain)
		if !strings.Contains(q.msg, "\r\nFrom: \"Cron Daemon\" <alice@d.test>\r\n") {
			t.Errorf("From: not made from -F:\n%s", q.msg)
		}
		q = submit(t, []string{"-F", "X", "-f", "a@b.test", "bob@x.test"}, plain)
		if !strings.Contains(q.msg, "\r\nFrom: \"X\" <a@b.test>\r\n") {
			t.Errorf("From: not made from -f:\n%s", q.msg)
		}
		q = submit(t, []string{"-F", "X", "bob@x.test"}, "From: me@x.test\n\nbody\n")
		if strings.Count(q.msg, "From:") != 1 || !strings.Contains(q.msg, "From: me@x.test\r\n") {
			t.Errorf("From: replaced:\n%s", q.msg)
		}
	},
	"`-i`": func(t *testing.T) {
		q := submit(t, []string{"-i", "bob@x.test"}, plain+".\nafter\n.")
		if body(q.msg) != "body\r\n.\r\nafter\r\n.\r\n" {
			t.Errorf("body %q", body(q.msg))
		}
	},
	"`-oi`": func(t *testing.T) {
		q := submit(t, []string{"-oi", "bob@x.test"}, plain+".\nafter\n")
		if body(q.msg) != "body\r\n.\r\nafter\r\n" {
			t.Errorf("body %q", body(q.msg))
		}
	},
	"no `-i`": func(t *testing.T) {
		q := submit(t, []string{"bob@x.test"}, plain+"..\n.\r\nafter\n")
		if body(q.msg) != "body\r\n..\r\n" {
			t.Errorf("body %q", body(q.msg))
		}
		q = submit(t, []string{"bob@x.test"}, "Subject: s\n.\nnot read\n")
		if body(q.msg) != "" || strings.Contains(q.msg, "not read") {
			t.Errorf("a dot in the header: %q", q.msg)
		}
	},
	"`-bm`": func(t *testing.T) {
		if o := parse(t, "-bm", "bob@x.test"); o.Mode != ModeDeliver {
			t.Errorf("mode %v", o.Mode)
		}
	},
	"`-bs`": func(t *testing.T) {
		if o := parse(t, "-bs"); o.Mode != ModeSMTP {
			t.Errorf("mode %v", o.Mode)
		} // the session: TestBinarySMTP, TestSwaksPipe
	},
	"`-bp`": func(t *testing.T) {
		if o := parse(t, "-bp"); o.Mode != ModeList {
			t.Errorf("mode %v", o.Mode)
		} // the listing: TestBinaryList
	},
	"`mailq`": func(t *testing.T) {
		if o, _ := Parse([]string{"/usr/bin/mailq"}); o.Mode != ModeList {
			t.Errorf("mode %v", o.Mode)
		}
	},
	"`-bi`": func(t *testing.T) {
		if o := parse(t, "-bi"); o.Mode != ModeAliases {
			t.Errorf("mode %v", o.Mode)
		}
	},
	"`newaliases`": func(t *testing.T) {
		if o, _ := Parse([]string{"newaliases"}); o.Mode != ModeAliases {
			t.Errorf("mode %v", o.Mode)
		} // exit 0 and the message: TestBinaryModes
	},
	"`-I`": func(t *testing.T) {
		if o := parse(t, "-I"); o.Mode != ModeAliases {
			t.Errorf("mode %v", o.Mode)
		}
	},
	"`-bd`, `-bv`, `-bt`, other `-b`": func(t *testing.T) {
		for _, b := range []string{"-bd", "-bv", "-bt", "-bD", "-bx", "-b"} {
			wantUsage(t, b)
		}
	},
	"`-q`": func(t *testing.T) {
		if o := parse(t, "-q"); o.Mode != ModeRunQueue {
			t.Errorf("mode %v", o.Mode)
		} // the run: TestBinaryRunQueue
	},
	"`-qR`, `-qS`, `-qI`": func(t *testing.T) {
		for _, q := range []string{"-qRexample.org", "-qSx", "-qIid"} {
			if o := parse(t, q); o.Mode != ModeRunQueue {
				t.Errorf("%s: mode %v", q, o.Mode)
			}
		}
	},
	"`-q30m`": func(t *testing.T) {
		if o := parse(t, "-q30m"); o.Mode != ModeDeliver || !slices.Equal(o.Ignored, []string{"-q30m"}) {
			t.Errorf("%+v", o)
		}
	},
	"`-N`": func(t *testing.T) {
		for in, want := range map[string]string{"never": "NEVER", "success,Delay": "SUCCESS,DELAY", "failure": "FAILURE"} {
			if o := parse(t, "-N", in); o.Notify != want {
				t.Errorf("-N %s: %q, want %q", in, o.Notify, want)
			}
		}
		for _, bad := range []string{"never,success", "sometimes", "success,success", "", "\u017fuccess"} {
			wantUsage(t, "-N", bad)
		}
	},
	"`-R`": func(t *testing.T) {
		if o := parse(t, "-R", "hdrs"); o.Ret != "HDRS" {
			t.Errorf("%q", o.Ret)
		}
		if o := parse(t, "-RFULL"); o.Ret != "FULL" {
			t.Errorf("%q", o.Ret)
		}
		wantUsage(t, "-R", "some")
	},
	"`-V`": func(t *testing.T) {
		if o := parse(t, "-V", "id-1 x"); o.EnvID != "id-1 x" {
			t.Errorf("%q", o.EnvID)
		}
		wantUsage(t, "-V", strings.Repeat("x", 101))
		wantUsage(t, "-V", "a\x01")
	},
	"`-B`": func(t *testing.T) {
		if q := submit(t, []string{"-B8BITMIME", "bob@x.test"}, plain); q.env.Body != "8BITMIME" {
			t.Errorf("body %q", q.env.Body)
		}
		if q := submit(t, []string{"-B", "7bit", "bob@x.test"}, plain); q.env.Body != "7BIT" {
			t.Errorf("body %q", q.env.Body)
		}
		if q := submit(t, []string{"-B", "BINARYMIME", "bob@x.test"}, plain); q.status != 0 || q.env.Body != "" {
			t.Errorf("status %d body %q", q.status, q.env.Body)
		}
	},
	"`-oem`": func(t *testing.T) {
		if o := parse(t, "-oem"); o.ErrorMode != 'm' {
			t.Errorf("%q", o.ErrorMode)
		} // the error mailed back: TestReturnError, cmd/sendmail TestErrorModes
	},
	"`-oee`": func(t *testing.T) {
		if o := parse(t, "-oee"); o.ErrorMode != 'e' {
			t.Errorf("%q", o.ErrorMode)
		}
	},
	"`-oep`, `-oeq`, `-oew`": func(t *testing.T) {
		for _, m := range []string{"p", "q", "w"} {
			if o := parse(t, "-oe"+m); o.ErrorMode != ErrorMode(m[0]) || len(o.Ignored) != 0 {
				t.Errorf("-oe%s: %+v", m, o)
			}
		} // what each does: cmd/sendmail TestErrorModes
	},
	"`-odb`, `-odi`": func(t *testing.T) { wantIgnored(t, "-odb"); wantIgnored(t, "-odi") },
	"`-o` other":     func(t *testing.T) { wantIgnored(t, "-oQ/var/spool"); wantIgnored(t, "-o", "A") },
	"`-v`": func(t *testing.T) {
		if o := parse(t, "-v"); !o.Verbose {
			t.Error("not verbose")
		}
	},
	"`-C`": func(t *testing.T) { wantIgnored(t, "-C", "/etc/mail/sendmail.cf") },
	"`-O`": func(t *testing.T) { wantIgnored(t, "-O", "DeliveryMode=b") },
	"`-X`": func(t *testing.T) { wantIgnored(t, "-X", "/tmp/log") },
	"`-L`": func(t *testing.T) { wantIgnored(t, "-Llabel") },
	"`-U`": func(t *testing.T) { wantIgnored(t, "-U") },
	"`-G`": func(t *testing.T) { wantIgnored(t, "-G") },
	"`-c`, `-m`, `-n`, `-x`": func(t *testing.T) {
		wantIgnored(t, "-c")
		wantIgnored(t, "-m")
		wantIgnored(t, "-n")
		wantIgnored(t, "-x")
		wantIgnored(t, "-cmnx")
	},
	"`-e`, `-h`, `-p`": func(t *testing.T) {
		wantIgnored(t, "-e", "x")
		wantIgnored(t, "-h", "17")
		wantIgnored(t, "-pesmtp:host")
	},
	"unknown letter": func(t *testing.T) {
		wantUsage(t, "-a")
		wantUsage(t, "-tK")
		wantUsage(t, "-f") // a missing argument
	},
	"`--`": func(t *testing.T) {
		o := parse(t, "-t", "a@x.test", "-i", "--", "-b@x.test")
		if !o.Extract || !o.IgnoreDots || !slices.Equal(o.Recipients, []string{"a@x.test", "-b@x.test"}) {
			t.Errorf("%+v", o)
		}
	},
}

// TestFlagTable runs one case per row of the flag table of
// docs/sendmail.md, and fails for a row without a case or a case without
// a row.
func TestFlagTable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/sendmail.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(doc), "\n## Every flag\n")
	table, _, _ = strings.Cut(table, "\n## ")
	var rows []string
	for l := range strings.Lines(table) {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| flag ") || strings.HasPrefix(l, "| ---") {
			continue
		}
		rows = append(rows, strings.TrimSpace(strings.Split(l, " | ")[0][2:]))
	}
	if len(rows) < 30 {
		t.Fatalf("%d rows in the flag table", len(rows))
	}
	for _, r := range rows {
		f, ok := flagCases[r]
		if !ok {
			t.Errorf("row %s has no case", r)
			continue
		}
		t.Run(r, f)
	}
	for k := range flagCases {
		if !slices.Contains(rows, k) {
			t.Errorf("case %s has no row", k)
		}
	}
}

// TestSMTPUTF8: a UTF-8 address sets SMTPUTF8 on the envelope (RFC 6531
// section 3.4); ASCII ones do not.
func TestSMTPUTF8(t *testing.T) {
	if q := submit(t, []string{"bob@x.test"}, plain); q.env.SMTPUTF8 {
		t.Error("SMTPUTF8 for ASCII addresses")
	}
	if q := submit(t, []string{"-f", "j\u00f6rg@x.test", "bob@x.test"}, plain); !q.env.SMTPUTF8 || q.env.From != "j\u00f6rg@x.test" {
		t.Errorf("sender %q, SMTPUTF8 %v", q.env.From, q.env.SMTPUTF8)
	}
	if q := submit(t, []string{"-t"}, "To: \u00e9@x.test\n\nbody\n"); !q.env.SMTPUTF8 {
		t.Errorf("recipients %v, SMTPUTF8 %v", q.env.To, q.env.SMTPUTF8)
	}
}

// TestHeaderSection: an mbox "From " first line is dropped; a line that is
// no field ends the header and starts the body after an added empty
// line; a header section over MaxHeaderSize is EX_DATAERR; LF becomes
// CRLF in the header too.
func TestHeaderSection(t *testing.T) {
	q := submit(t, []string{"-t"}, "From alice Tue Dec  1 22:00:00 2026\nTo: b@x.test\nSubject: s\n\nbody\n")
	if !slices.Equal(q.env.To, []string{"b@x.test"}) || strings.Contains(q.msg, "From alice") || body(q.msg) != "body\r\n" {
		t.Errorf("mbox From line: %v\n%q", q.env.To, q.msg)
	}
	q = submit(t, []string{"b@x.test"}, "Subject: s\nthis is no field\nmore\n")
	if !strings.Contains(header(q.msg), "\r\nSubject: s\r\n") || body(q.msg) != "this is no field\r\nmore\r\n" {
		t.Errorf("no empty line:\n%q", q.msg)
	}
	q = submit(t, []string{"b@x.test"}, "Subject: "+strings.Repeat("x", MaxHeaderSize)+"\n\nbody\n")
	if q.status != exitDataErr {
		t.Errorf("a header over MaxHeaderSize: status %d", q.status)
	}
	q = submit(t, []string{"b@x.test"}, "Subject: folded\n  on two lines\nX-A: 1\r\n\nbody")
	if !strings.Contains(q.msg, "\r\nSubject: folded\r\n  on two lines\r\nX-A: 1\r\n") || body(q.msg) != "body\r\n" {
		t.Errorf("%q", q.msg)
	}
}

// TestParseList: RFC 5322 lists as net/mail reads them, bare local parts
// qualified, and both mixed, with commas inside quotes and comments.
func TestParseList(t *testing.T) {
	for in, want := range map[string][]string{
		"a@x.test, B <b@x.test>":       {"a@x.test", "b@x.test"},
		"root":                         {"root@d.test"},
		"root, alice":                  {"root@d.test", "alice@d.test"},
		`"Doe, John" <j@x.test>, root`: {"j@x.test", "root@d.test"},
		`a@x.test (the admin, really), "a\" ,b" <q@x.test>, root`: {"a@x.test", "q@x.test", "root@d.test"},
		"undisclosed-recipients:;":                                {},
		"":                                                        nil,
	} {
		got, err := parseList(in, "d.test")
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseList(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"a b c", "<<x", "@x.test", "root@"} {
		if got, err := parseList(bad, "d.test"); err == nil {
			t.Errorf("parseList(%q) = %q, want an error", bad, got)
		}
	}
}
