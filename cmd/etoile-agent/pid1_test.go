package main

import (
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/boot"
	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/agent/logring"
)

// TestBootsMachine: only PID 1 with no arguments (or run as /init, as the
// kernel runs it) boots the machine; a command runs whatever the PID, as
// the first process of a container or of `unshare --pid --fork`, and so
// does a mistyped one, or one after a flag.
func TestBootsMachine(t *testing.T) {
	for _, c := range []struct {
		pid  int
		argv []string
		want bool
	}{
		{1, []string{"/init"}, true},
		{1, []string{"/init", "splash"}, true}, // a boot argument the kernel did not know
		{1, []string{"/init", "status"}, true}, // the kernel's /init: whatever it was given
		{1, []string{"etoile-agent"}, true},
		{1, []string{"/usr/bin/etoile-agent", "status", "--json"}, false},
		{1, []string{"etoile-agent", "logs", "-f"}, false},
		{1, []string{"etoile-agent", "version"}, false},
		{1, []string{"etoile-agent", "--help"}, false},
		{1, []string{"etoile-agent", "agent", "--root", "/x"}, false},
		{1, []string{"/sbin/modprobe", "nvidia"}, false},
		{1, []string{"/sbin/reboot"}, false},
		{1, []string{"etoile-agent", "stauts"}, false},
		{1, []string{"etoile-agent", "--socket", "/run/x.sock", "status"}, false},
		{1, []string{"etoile-agent", "-v"}, false},
		{4242, []string{"/init"}, false},
		{4242, []string{"etoile-agent"}, false},
	} {
		if got := bootsMachine(c.pid, c.argv); got != c.want {
			t.Errorf("bootsMachine(%d, %q) = %v, want %v", c.pid, c.argv, got, c.want)
		}
	}
}

// TestPID1LogOnAStoppedConsole: PID 1's console takes no output (Scroll
// Lock on the screen, or a serial console with RTS/CTS and no CTS): a
// warning logged then does not hold the logger, nor the "signal …
// action=reboot" line logged after it from another goroutine, as StayUp
// logs it before the shutdown; both are in the agent's log in memory at
// once, and on the console, in order, once it takes output again.
func TestPID1LogOnAStoppedConsole(t *testing.T) {
	tty, _, start, lines := fakeroot.StoppedPty(t) // XON/XOFF off: console.NoFlowControl does not help here

	ring := logring.New(10)
	out, _ := pid1Output(ring, tty)
	log := boot.NewLogger(out, nil)
	returns := func(line string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { f(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits for the stopped console: the logger is held, and the reboot with it", line)
		}
	}
	returns("a warning", func() { log.Warn("a DHCP renewal failed") })
	returns(`the "signal … action=reboot" line`, func() { log.Info("signal", "signal", "terminated", "action", "reboot") })
	want := []string{"etoile: warning: a DHCP renewal failed", "etoile: signal signal=terminated action=reboot"}
	if got := ring.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the log in memory holds %q, want %q", got, want)
	}

	start()
	for _, w := range want {
		select {
		case l := <-lines:
			if l != w {
				t.Errorf("the console shows %q, want %q", l, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the console does not show %q once it takes output again", w)
		}
	}
}
