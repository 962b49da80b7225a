package peer

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFindFromEnvironment(t *testing.T) {
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	fd := int(r.Fd())
	cases := []struct {
		vars map[string]string
		want netip.AddrPort
		src  Source
	}{
		{map[string]string{"TCPREMOTEIP": "192.0.2.1", "TCPREMOTEPORT": "4000"}, netip.MustParseAddrPort("192.0.2.1:4000"), SourceUCSPI},
		{map[string]string{"TCPREMOTEIP": "::ffff:192.0.2.2", "REMOTE_ADDR": "192.0.2.9"}, netip.MustParseAddrPort("192.0.2.2:0"), SourceUCSPI},
		{map[string]string{"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "25"}, netip.MustParseAddrPort("[2001:db8::1]:25"), SourceSystemd},
		{map[string]string{"REMOTE_HOST": "198.51.100.3"}, netip.MustParseAddrPort("198.51.100.3:0"), SourceXinetd},
	}
	for _, c := range cases {
		p, err := Find(env(c.vars), fd)
		if err != nil {
			t.Fatal(err)
		}
		if p.Addr != c.want || p.Source != c.src || p.Local {
			t.Errorf("%v: got %+v", c.vars, p)
		}
	}
	if _, err := Find(env(map[string]string{"TCPREMOTEIP": "not-an-ip"}), fd); err == nil {
		t.Error("bad TCPREMOTEIP accepted")
	}
	p, err := Find(env(nil), fd)
	if err != nil || !p.Local || p.Source != SourceLocal {
		t.Errorf("pipe: got %+v, %v; want local", p, err)
	}
}

func TestFindFromSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Find(env(nil), int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Local || p.Source != SourceSocket || p.Addr.String() != c.LocalAddr().String() {
		t.Errorf("got %+v, want %v from getpeername", p, c.LocalAddr())
	}
	if !IsSocket(int(f.Fd())) {
		t.Error("IsSocket false for a socket")
	}
	g, _ := s.(*net.TCPConn).File()
	defer g.Close()
	if !SameFile(int(f.Fd()), int(g.Fd())) {
		t.Error("two descriptors of one socket are not SameFile")
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if SameFile(int(f.Fd()), int(r.Fd())) || IsSocket(int(r.Fd())) {
		t.Error("pipe mistaken for the socket")
	}
}

func TestPollableFileDeadline(t *testing.T) {
	r, w, _ := os.Pipe()
	defer w.Close()
	fd, err := dupFd(int(r.Fd()))
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, restore := PollableFile(fd, "pipe")
	defer f.Close()
	defer restore()
	if err := f.SetReadDeadline(timeNowPlus()); err != nil {
		t.Fatalf("pipe has no deadline support: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := f.Read(buf); !os.IsTimeout(err) {
		t.Fatalf("read on idle pipe: %v, want timeout", err)
	}
}

// tcpPair returns the server end of a loopback TCP connection as a file
// and the client end's address.
func tcpPair(t *testing.T) (*os.File, netip.AddrPort) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, netip.MustParseAddrPort(c.LocalAddr().String())
}

// TestSocketOutranksLauncher: on a TCP socket, getpeername is the truth;
// a launcher variable that names another client (or no address) is
// reported and ignored, one that agrees is not reported.
func TestSocketOutranksLauncher(t *testing.T) {
	f, client := tcpPair(t)
	cases := []struct {
		vars    map[string]string
		ignored []Ignored
	}{
		{map[string]string{"TCPREMOTEIP": "203.0.113.9"}, []Ignored{{"TCPREMOTEIP", "203.0.113.9"}}},
		{map[string]string{"REMOTE_ADDR": "192.0.2.1", "REMOTE_PORT": "25"}, []Ignored{{"REMOTE_ADDR", "192.0.2.1"}}},
		{map[string]string{"REMOTE_HOST": "::1"}, []Ignored{{"REMOTE_HOST", "::1"}}},
		{map[string]string{"TCPREMOTEIP": "not-an-ip"}, []Ignored{{"TCPREMOTEIP", "not-an-ip"}}},
		// Every variable is checked, not only the first one set.
		{map[string]string{"TCPREMOTEIP": "127.0.0.1", "REMOTE_ADDR": "192.0.2.1", "REMOTE_HOST": "192.0.2.2"},
			[]Ignored{{"REMOTE_ADDR", "192.0.2.1"}, {"REMOTE_HOST", "192.0.2.2"}}},
		// Agreeing, in any spelling of the address: nothing to report.
		{map[string]string{"TCPREMOTEIP": "127.0.0.1", "TCPREMOTEPORT": "1"}, nil},
		{map[string]string{"REMOTE_ADDR": "::ffff:127.0.0.1"}, nil},
		{nil, nil},
	}
	for _, c := range cases {
		p, err := Find(env(c.vars), int(f.Fd()))
		if err != nil {
			t.Fatalf("%v: %v", c.vars, err)
		}
		if p.Addr != client || p.Source != SourceSocket || p.Local || !slices.Equal(p.Ignored, c.ignored) {
			t.Errorf("%v: got %+v, want %v from getpeername, ignored %v", c.vars, p, client, c.ignored)
		}
	}
}
