package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll runs ReadData over in, read in chunks as r splits it, and
// returns the output, the result, the error and the input left unread.
func readAll(in string, opt DataOptions, oneByte bool) (string, DataResult, error, string) {
	var src io.Reader = strings.NewReader(in)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	r := bufio.NewReaderSize(src, 16)
	if !oneByte {
		r = bufio.NewReader(src)
	}
	var out bytes.Buffer
	res, err := ReadData(r, &out, opt)
	rest, _ := io.ReadAll(r)
	return out.String(), res, err, string(rest)
}

var normalize = DataOptions{BareLineEndings: NormalizeBare}

func TestReadData(t *testing.T) {
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name     string
		in       string
		opt      DataOptions
		out      string
		res      DataResult
		rest     string
		eof      bool // io.ErrUnexpectedEOF expected
		skipSize bool // do not compare res.Size
	}{
		{name: "empty", in: ".\r\n", out: ""},
		{name: "simple", in: "a\r\nb\r\n.\r\n", out: "a\r\nb\r\n"},
		{name: "empty lines", in: "\r\n\r\n.\r\n", out: "\r\n\r\n"},
		{name: "unstuff", in: "..a\r\n..\r\n...\r\n.\r\n", out: ".a\r\n.\r\n..\r\n"},
		{name: "unstuff any", in: ".a\r\n.\r\n", out: "a\r\n"},
		{name: "dot inside", in: "a.b\r\na.\r\n.\r\n", out: "a.b\r\na.\r\n"},
		{name: "rest kept", in: "a\r\n.\r\nQUIT\r\n", out: "a\r\n", rest: "QUIT\r\n"},
		{name: "long line", in: long + "\r\n." + long + "\r\n.\r\n", out: long + "\r\n" + long + "\r\n"},
		{name: "eof", in: "a\r\n", out: "a\r\n", eof: true},
		{name: "eof after dot", in: "a\r\n.", out: "a\r\n", eof: true},
		{name: "eof after dot CR", in: "a\r\n.\r", out: "a\r\n", eof: true},
		{name: "eof CR", in: "a\r", out: "a", eof: true, skipSize: true},
		{name: "no end", in: "", eof: true},

		// Bare line endings, rejected: output stops, reading goes on.
		{name: "bare LF", in: "a\nb\r\n.\r\n", out: "a", res: DataResult{Bare: true}, skipSize: true},
		{name: "bare CR", in: "ab\rc\r\n.\r\n", out: "ab", res: DataResult{Bare: true}, skipSize: true},
		{name: "CR CR LF", in: "a\r\r\n.\r\n", out: "a", res: DataResult{Bare: true}, skipSize: true},
		{name: "bare LF at start", in: "\n.\r\n.\r\n", out: "", res: DataResult{Bare: true}, skipSize: true},

		// Bare line endings, normalized.
		{name: "norm LF", in: "a\nb\r\n.\r\n", opt: normalize, out: "a\r\nb\r\n", res: DataResult{Bare: true}},
		{name: "norm CR", in: "a\rb\r\n.\r\n", opt: normalize, out: "a\r\nb\r\n", res: DataResult{Bare: true}},
		{name: "norm CR CR LF", in: "a\r\r\n.\r\n", opt: normalize, out: "a\r\n\r\n", res: DataResult{Bare: true}},
		{name: "norm LF CR", in: "a\n\rb\r\n.\r\n", opt: normalize, out: "a\r\n\r\nb\r\n", res: DataResult{Bare: true}},
		{name: "norm stuffed after bare", in: "a\n..b\r\n.\r\n", opt: normalize, out: "a\r\n.b\r\n", res: DataResult{Bare: true}},
		{name: "norm dot text after bare", in: "a\n.b\r\n.\r\n", opt: normalize, out: "a\r\nb\r\n", res: DataResult{Bare: true}},
		{name: "norm dot line after bare", in: "a\n.\r\nb\r\n.\r\n", opt: normalize, out: "a\r\n.\r\nb\r\n", res: DataResult{Bare: true}},
		{name: "norm dot line bare end", in: "a\r\n.\nb\r\n.\r\n", opt: normalize, out: "a\r\n.\r\nb\r\n", res: DataResult{Bare: true}},
		{name: "norm dot CR", in: "a\r\n.\rb\r\n.\r\n", opt: normalize, out: "a\r\n.\r\nb\r\n", res: DataResult{Bare: true}},
		{name: "norm dot CR CR LF", in: "a\r\n.\r\r\n.\r\n", opt: normalize, out: "a\r\n.\r\n\r\n", res: DataResult{Bare: true}},

		// Size limit: the output stops, the data is read to its end.
		{name: "size ok", in: "123\r\n.\r\n", opt: DataOptions{MaxSize: 5}, out: "123\r\n", res: DataResult{Size: 5}},
		{name: "size over", in: "1234\r\nmore\r\n.\r\nNOOP\r\n", opt: DataOptions{MaxSize: 5}, out: "1234", res: DataResult{Size: 12, TooBig: true}, rest: "NOOP\r\n"},
		{name: "size counts unstuffed", in: "..\r\n.\r\n", opt: DataOptions{MaxSize: 3}, out: ".\r\n", res: DataResult{Size: 3}},

		// Received: fields in the header section only.
		{
			name: "received",
			in:   "Received: a\r\nreceived : b\r\nX-Received: c\r\n Received: folded\r\nReceived\r\nReceivedx: d\r\n\r\nReceived: body\r\n.\r\n",
			out:  "Received: a\r\nreceived : b\r\nX-Received: c\r\n Received: folded\r\nReceived\r\nReceivedx: d\r\n\r\nReceived: body\r\n",
			res:  DataResult{Received: 2},
		},
		{name: "received no body", in: "Received: a\r\nRECEIVED:b\r\n.\r\n", out: "Received: a\r\nRECEIVED:b\r\n", res: DataResult{Received: 2}},
		{name: "received normalized", in: "Received: a\nReceived: b\r\n.\r\n", opt: normalize, out: "Received: a\r\nReceived: b\r\n", res: DataResult{Received: 2, Bare: true}},
		{name: "received after stuffing", in: ".Received: a\r\n.\r\n", out: "Received: a\r\n", res: DataResult{Received: 1}},
	}
	for _, tc := range tests {
		for _, oneByte := range []bool{false, true} {
			out, res, err, rest := readAll(tc.in, tc.opt, oneByte)
			if tc.eof != errors.Is(err, io.ErrUnexpectedEOF) || !tc.eof && err != nil {
				t.Errorf("%s (one byte %v): error %v, want eof %v", tc.name, oneByte, err, tc.eof)
			}
			if out != tc.out {
				t.Errorf("%s (one byte %v): output %q, want %q", tc.name, oneByte, out, tc.out)
			}
			want := tc.res
			if want.Size == 0 && !tc.skipSize {
				want.Size = int64(len(tc.out))
			}
			if tc.skipSize {
				res.Size = 0
			}
			if res != want {
				t.Errorf("%s (one byte %v): result %+v, want %+v", tc.name, oneByte, res, want)
			}
			if rest != tc.rest {
				t.Errorf("%s (one byte %v): left %q, want %q", tc.name, oneByte, rest, tc.rest)
			}
		}
	}
}

// smugglingVectors are the bare line endings that some servers read as
// the end of data (SMTP smuggling, December 2023).
var smugglingVectors = []string{"\n.\n", "\r.\r", "\r\n.\r", "\n.\r\n", "\r.\r\n", "\r\n.\n"}

const smuggled = "MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nsmuggled\r\n.\r\n"

func TestReadDataSmuggling(t *testing.T) {
	for _, v := range smugglingVectors {
		in := "Subject: x\r\n\r\nhello" + v + smuggled + "\r\n.\r\n"
		for _, oneByte := range []bool{false, true} {
			// The message ends at the first real CRLF.CRLF, after "smuggled".
			want := "Subject: x\r\n\r\nhello\r\n.\r\n" + strings.TrimSuffix(smuggled, ".\r\n")
			out, res, err, rest := readAll(in, normalize, oneByte)
			if err != nil || !res.Bare || rest != "\r\n.\r\n" || out != want {
				t.Errorf("normalize %q: %q %+v %v, left %q; want %q", v, out, res, err, rest, want)
			}
			// Rejected: the same end; the output stops at the bare ending.
			out, res, err, rest = readAll(in, DataOptions{}, oneByte)
			if err != nil || !res.Bare || rest != "\r\n.\r\n" || !strings.HasPrefix(want, out) || len(out) > len("Subject: x\r\n\r\nhello\r\n.") {
				t.Errorf("reject %q: %q %+v %v, left %q", v, out, res, err, rest)
			}
		}
	}
}

// errWriter fails every write.
type errWriter struct{ n int }

func (w *errWriter) Write(p []byte) (int, error) { w.n++; return 0, errWriteFailed }

func TestReadDataWriteError(t *testing.T) {
	in := strings.Repeat("0123456789abcdef\r\n", 10000) + ".\r\nNOOP\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	w := &errWriter{}
	res, err := ReadData(r, w, DataOptions{})
	rest, _ := io.ReadAll(r)
	if err != nil || !errors.Is(res.WriteErr, errWriteFailed) || string(rest) != "NOOP\r\n" || w.n != 1 {
		t.Errorf("got %+v, %v, left %q, %d writes; want the write error once and the data drained", res, err, rest, w.n)
	}
}

// TestReadDataBeforeRead checks that the hook runs before every read
// from the underlying reader.
func TestReadDataBeforeRead(t *testing.T) {
	src := &countReader{r: iotest.OneByteReader(strings.NewReader("ab\r\n.\r\n"))}
	hooks := 0
	var seen []int64
	_, err := ReadData(bufio.NewReaderSize(src, 16), io.Discard, DataOptions{BeforeRead: func(read int64) error {
		hooks++
		seen = append(seen, read)
		return nil
	}})
	if err != nil || hooks != src.reads || hooks != 7 {
		t.Errorf("%d hooks for %d reads, error %v", hooks, src.reads, err)
	}
	if fmt.Sprint(seen) != "[0 1 2 3 4 5 6]" {
		t.Errorf("hooks saw %v bytes read, want [0 1 2 3 4 5 6]", seen)
	}
	// An error from the hook stops the reading there, with what was
	// read so far written out.
	stop := errors.New("stop")
	r := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader("ab\r\ncd\r\n.\r\n")), 16)
	var out bytes.Buffer
	res, err := ReadData(r, &out, DataOptions{BeforeRead: func(read int64) error {
		if read == 4 {
			return stop
		}
		return nil
	}})
	if err != stop || out.String() != "ab\r\n" || res.Size != 4 {
		t.Errorf("hook error: %v, output %q, %+v", err, out.String(), res)
	}
}

type countReader struct {
	r     io.Reader
	reads int
}

func (c *countReader) Read(p []byte) (int, error) { c.reads++; return c.r.Read(p) }

// lineSource produces n bytes of message text in 78-byte lines, some of
// them dot-stuffed, then the end of data.
type lineSource struct {
	n    int64
	line []byte
	off  int
	done bool
}

func newLineSource(n int64) *lineSource {
	return &lineSource{n: n, line: []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\r\n")}
}

func (s *lineSource) Read(p []byte) (int, error) {
	if s.n <= 0 {
		if s.done {
			return 0, io.EOF
		}
		s.done = true
		return copy(p, "\r\n.\r\n"), nil
	}
	total := 0
	for len(p) > 0 && s.n > 0 {
		n := copy(p[:min(int64(len(p)), s.n)], s.line[s.off:])
		s.off = (s.off + n) % len(s.line)
		p, s.n, total = p[n:], s.n-int64(n), total+n
	}
	return total, nil
}

// TestReadDataMemory reads a 100 MiB message: memory must stay small.
func TestReadDataMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB")
	}
	const size = 100 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := ReadData(bufio.NewReader(newLineSource(size)), io.Discard, DataOptions{})
	runtime.ReadMemStats(&after)
	if err != nil || res.Size < size {
		t.Fatalf("ReadData: %+v, %v", res, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("reading 100 MiB allocated %d bytes", alloc)
	}
}

func BenchmarkReadData(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int64
		buf  int // bufio.Reader size: the default, and smtp-stdio's
	}{{"2KiB", 2 << 10, 4096}, {"10MiB", 10 << 20, 4096}, {"10MiB-64KiBbuf", 10 << 20, 64 << 10}} {
		var in bytes.Buffer
		in.WriteString("Subject: bench\r\n\r\n") // a message with a body, as real ones are
		io.Copy(&in, newLineSource(bc.size))
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(in.Len()))
			b.ReportAllocs()
			src := bytes.NewReader(in.Bytes())
			r := bufio.NewReaderSize(src, bc.buf)
			for b.Loop() {
				src.Reset(in.Bytes())
				r.Reset(src)
				if _, err := ReadData(r, io.Discard, DataOptions{MaxSize: 1 << 30}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// refNormalize is the reference for NormalizeBare: obviously correct
// rather than fast. It splits the input into lines, each ended by CR LF,
// a bare LF or a bare CR, and applies the rules line by line. It returns
// the output, the Received count, whether a line ending was bare, how many
// bytes make up the data with its end, and false if the end never comes.
func refNormalize(in []byte) (out []byte, received int, bare bool, n int, ok bool) {
	prevCRLF, header := true, true // the data starts as after a CR LF
	for i := 0; i < len(in); {
		j := i
		for j < len(in) && in[j] != '\r' && in[j] != '\n' {
			j++
		}
		if j == len(in) || in[j] == '\r' && j+1 == len(in) {
			return out, received, bare, 0, false // the line ending is not known yet
		}
		line, crlf, next := in[i:j], in[j] == '\r' && in[j+1] == '\n', j+1
		if crlf {
			next = j + 2
		}
		if string(line) == "." && prevCRLF && crlf {
			return out, received, bare, next, true
		}
		if len(line) > 1 && line[0] == '.' {
			line = line[1:] // dot-stuffing undone; a lone "." that is not the end stays
		}
		if header {
			if len(line) == 0 {
				header = false
			} else if isReceived(line) {
				received++
			}
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
		bare = bare || !crlf
		prevCRLF, i = crlf, next
	}
	return out, received, bare, 0, false
}

// FuzzReadData checks ReadData against refNormalize, in both modes and
// with the input in one piece and byte by byte.
func FuzzReadData(f *testing.F) {
	for _, v := range smugglingVectors {
		f.Add([]byte("Subject: x\r\n\r\nhello"+v+smuggled+"\r\n.\r\n"), false)
		f.Add([]byte("Subject: x\r\n\r\nhello"+v+smuggled+"\r\n.\r\n"), true)
	}
	f.Add([]byte("Received: a\r\n\r\n..x\r\n.\r\n"), true)
	// Long enough for the whole-line fast path (cleanLines).
	f.Add([]byte("A: b\r\n\r\n"+strings.Repeat("line of text\r\n", 40)+"bare\rcr\r\n"+strings.Repeat("more\r\n", 60)+"..x\r\n.\r\n"), false)
	f.Add([]byte("A: b\r\n\r\n"+strings.Repeat("line of text\r\n", 40)+"bare\nlf\r\n.\n.\r\n"+strings.Repeat("more\r\n", 60)+".\r\n"), true)
	f.Fuzz(func(t *testing.T, in []byte, norm bool) {
		opt := DataOptions{}
		if norm {
			opt.BareLineEndings = NormalizeBare
		}
		out, res, err, rest := readAll(string(in), opt, false)
		if strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\r") || strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
			t.Fatalf("output %q holds a bare CR or LF", out)
		}
		out1, res1, err1, rest1 := readAll(string(in), opt, true)
		if out1 != out || res1 != res || !errors.Is(err1, err) || rest1 != rest {
			t.Fatalf("byte by byte: %q %+v %v %q; in one piece: %q %+v %v %q", out1, res1, err1, rest1, out, res, err, rest)
		}
		want, received, bare, n, ok := refNormalize(in)
		if !ok {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("no end in input, but error %v", err)
			}
			return
		}
		if err != nil || len(in)-len(rest) != n || res.Bare != bare || res.Received != received {
			t.Fatalf("got %+v, %v, consumed %d; reference: consumed %d, bare %v, received %d",
				res, err, len(in)-len(rest), n, bare, received)
		}
		if norm && (out != string(want) || res.Size != int64(len(want))) {
			t.Fatalf("output %q (size %d), reference %q", out, res.Size, want)
		}
		if !norm && (!strings.HasPrefix(string(want), out) || !bare && out != string(want)) {
			t.Fatalf("reject output %q, reference %q", out, want)
		}
	})
}

// randomMessage returns DATA input of about size bytes from rng: a header
// section with Received: fields, then mostly clean 20- to 120-byte lines,
// among them dot-stuffed lines, lone dots, empty lines and, where bad
// says so, bare CRs and LFs, then the end of data and a command after it.
func randomMessage(rng *rand.Rand, size int, bad bool) []byte {
	var b bytes.Buffer
	for range rng.IntN(4) {
		b.WriteString("Received: from x by y\r\n")
	}
	b.WriteString("Subject: t\r\n")
	if rng.IntN(4) > 0 {
		b.WriteString("\r\n") // else the whole message is header section
	}
	for b.Len() < size {
		switch k := rng.IntN(100); {
		case k < 3:
			b.WriteString("..stuffed\r\n")
		case k < 5:
			b.WriteString("\r\n")
		case k < 6:
			b.WriteString(".\n.\r\n") // a lone dot after a bare LF: content
		case k < 8 && bad:
			b.WriteString([]string{"bare\rcr\r\n", "bare\nlf\r\n", "cr at end\r", "\n", ".\r", "x\r\r\n"}[rng.IntN(6)])
		default:
			b.Write(bytes.Repeat([]byte{'a' + byte(k%26)}, 20+rng.IntN(100)))
			b.WriteString("\r\n")
		}
	}
	b.WriteString(".\r\nQUIT\r\n")
	return b.Bytes()
}

// pieces is a reader that returns its input in reads of random sizes up
// to max bytes.
type pieces struct {
	in  []byte
	rng *rand.Rand
	max int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.in) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), 1+p.rng.IntN(p.max))], p.in)
	p.in = p.in[n:]
	return n, nil
}

// TestReadDataCleanRuns holds the whole-line fast path (cleanLines) to
// the line-by-line one and to refNormalize: long messages, clean and with
// bare line endings, read through buffers of several sizes in reads of
// random sizes, give the output, result and unread rest that one byte at
// a time gives (which never takes the fast path); BDAT's body path, fed
// the normalized message in random chunks, gives it back unchanged.
func TestReadDataCleanRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		in := randomMessage(rng, 200+rng.IntN(20000), i%2 == 1)
		want, received, bare, n, ok := refNormalize(in)
		if !ok {
			t.Fatalf("message %d has no end", i)
		}
		for _, opt := range []DataOptions{normalize, {}} {
			out1, res1, err1, rest1 := readAll(string(in), opt, true)
			if err1 != nil || rest1 != "QUIT\r\n" || len(in)-len(rest1) != n || res1.Bare != bare || res1.Received != received {
				t.Fatalf("message %d byte by byte: %+v %v rest %q; reference bare %v received %d", i, res1, err1, rest1, bare, received)
			}
			if opt.BareLineEndings == NormalizeBare && out1 != string(want) {
				t.Fatalf("message %d byte by byte: output differs from the reference", i)
			}
			for _, size := range []int{16, 300, 4096, 64 << 10} {
				r := bufio.NewReaderSize(&pieces{in: in, rng: rng, max: 3 * size}, size)
				var out bytes.Buffer
				res, err := ReadData(r, &out, opt)
				rest, _ := io.ReadAll(r)
				if out.String() != out1 || res != res1 || err != nil || string(rest) != rest1 {
					t.Fatalf("message %d, buffer %d, bare %v, mode %v: %+v %v rest %q; byte by byte %+v", i, size, bare, opt.BareLineEndings, res, err, rest, res1)
				}
			}
		}
		// BDAT: the normalized message, clean by construction, in chunks.
		body := newBodyWriter(io.Discard, normalize)
		var got bytes.Buffer
		body.w = &got
		for rest := want; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(3000))
			body.Write(rest[:k])
			rest = rest[k:]
		}
		res := body.finish()
		if got.String() != string(want) || res.Bare || res.Received != received || res.Size != int64(len(want)) {
			t.Fatalf("message %d through BDAT's path: %+v, output equal %v", i, res, got.String() == string(want))
		}
	}
}
