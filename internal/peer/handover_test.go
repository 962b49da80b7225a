package peer

import (
	"os"
	"strconv"
	"testing"
)

// TestHandoverNotOurs: LISTEN_FDS for another process (LISTEN_PID not
// ours, as a child of a socket-activated process inherits) hands over
// nothing, and the variables are removed either way.
func TestHandoverNotOurs(t *testing.T) {
	env := map[string]string{"LISTEN_PID": strconv.Itoa(os.Getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "smtp"}
	for k, v := range env {
		t.Setenv(k, v)
	}
	h := FindHandover(func(k string) string { return env[k] }, os.Getpid())
	// The test's fd 0 is not a listening socket.
	if len(h.Listeners) != 0 || h.Connected != -1 {
		t.Errorf("handover %+v for another process's LISTEN_FDS", h)
	}
	for k := range env {
		if _, ok := os.LookupEnv(k); ok {
			t.Errorf("%s left in the environment", k)
		}
	}
}
