package send

import "testing"

// HostDown is the one rule for taking a smarthost out of a run (RFC 5321
// section 4.5.4.1), whatever the place it failed.
func TestHostDown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      Failure
		reused bool
		down   bool
	}{
		{"connection refused", Failure{Stage: StageConnect, setup: true}, false, true},
		{"TLS not in effect (a local check)", Failure{Stage: StageLocal, Enhanced: "4.7.10", setup: true}, false, true},
		{"AUTH refused with 535", Failure{Stage: StageAuth, Code: 535, setup: true}, false, true},
		{"timeout at RCPT, reused", Failure{Stage: StageRcpt, timeout: true}, true, true},
		{"timeout awaiting the dot's reply", Failure{Stage: StageDot, timeout: true}, false, true},
		{"421 at MAIL on a new connection", Failure{Stage: StageMail, Code: 421}, false, true},
		{"421 at MAIL on a reused connection", Failure{Stage: StageMail, Code: 421}, true, false},
		{"closed at RSET on a reused connection", Failure{Stage: StageReset}, true, false},
		{"closed during the data, new connection", Failure{Stage: StageData}, false, true},
		{"closed after the dot, new connection", Failure{Stage: StageDot}, false, false},
		{"451 to RCPT", Failure{Stage: StageRcpt, Code: 451}, false, false},
		{"550 to MAIL", Failure{Stage: StageMail, Code: 550}, false, false},
		{"554 after the dot", Failure{Stage: StageDot, Code: 554}, false, false},
	} {
		if got := tc.f.HostDown(tc.reused); got != tc.down {
			t.Errorf("%s: HostDown = %v, want %v", tc.name, got, tc.down)
		}
	}
}
