package qa

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// fakeVM is a VM without QEMU: lines are fed by the test.
func fakeVM(t *testing.T) *VM {
	return &VM{tb: t, changed: make(chan struct{}), start: time.Now()}
}

func TestExpect(t *testing.T) {
	ready := ReadyRE
	tests := []struct {
		name    string
		lines   []string
		exit    bool
		re      *regexp.Regexp
		want    string // matched line; "" = error expected
		wantErr string
	}{
		{name: "ready", lines: []string{"boot", "etoile: ready version=1 boot=bios"}, re: ready, want: "etoile: ready version=1 boot=bios"},
		{name: "error line fails fast", lines: []string{`etoile: error step=sysimage reason="bad" fix="x"`, "etoile: ready"}, re: ready, wantErr: "console showed"},
		{name: "error-level log is not fatal", lines: []string{"etoile: error: dhcp on eth1 failed", "etoile: ready ip=none"}, re: ready, want: "etoile: ready ip=none"},
		{name: "panic fails fast", lines: []string{"Kernel panic - not syncing: Attempted to kill init!"}, re: ready, wantErr: "Kernel panic"},
		{name: "waiting for the error line itself", lines: []string{`etoile: error step=x reason="r" fix="f"`}, re: ErrorRE, want: `etoile: error step=x reason="r" fix="f"`},
		{name: "qemu exit", lines: []string{"SeaBIOS"}, exit: true, re: ready, wantErr: "QEMU exited"},
		{name: "timeout", lines: []string{"nothing"}, re: ready, wantErr: "no console line matching"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := fakeVM(t)
			fed := make(chan struct{})
			defer func() { <-fed }() // the lines are logged to t: not after the subtest
			go func() {
				defer close(fed)
				for i, l := range tt.lines {
					vm.addLine(l, time.Duration(i)*time.Second)
				}
				if tt.exit {
					vm.mu.Lock()
					vm.exited = true
					vm.notifyLocked()
					vm.mu.Unlock()
				}
			}()
			m, err := vm.Expect(tt.re, 300*time.Millisecond)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Expect = %q, %v; want error containing %q", m.Line, err, tt.wantErr)
				}
				return
			}
			if err != nil || m.Line != tt.want {
				t.Fatalf("Expect = %q, %v; want %q", m.Line, err, tt.want)
			}
		})
	}
}

func TestExpectConsumesLines(t *testing.T) {
	vm := fakeVM(t)
	vm.addLine("etoile: step=a t=0.1s", 0)
	vm.addLine("etoile: step=b t=0.2s", time.Second)
	step := regexp.MustCompile(`^etoile: step=`)
	first, _ := vm.Expect(step, time.Second)
	second, _ := vm.Expect(step, time.Second)
	if first.Fields["step"] != "a" || second.Fields["step"] != "b" || second.At != time.Second {
		t.Errorf("got %+v then %+v; want step a then step b at 1s", first, second)
	}
}

func TestTimeoutScale(t *testing.T) {
	t.Setenv(EnvTimeoutScale, "2.5")
	if f, err := TimeoutScale(); err != nil || f != 2.5 {
		t.Errorf("TimeoutScale = %v, %v", f, err)
	}
	t.Setenv(EnvTimeoutScale, "fast")
	if _, err := TimeoutScale(); err == nil || !strings.Contains(err.Error(), EnvTimeoutScale) {
		t.Errorf("bad scale error = %v, want it to name %s", err, EnvTimeoutScale)
	}
}
