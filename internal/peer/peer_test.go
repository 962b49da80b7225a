package peer

import (
	"net"
	"net/netip"
	"os"
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
