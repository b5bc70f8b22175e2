package boot

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReaper checks that orphans are reaped while a child started through
// the Reaper keeps its exit status for its own Wait (K3s supervision needs
// the real exit code).
func TestReaper(t *testing.T) {
	r := NewReaper()
	owned := exec.Command("sh", "-c", "exit 7")
	if err := r.Start(owned); err != nil {
		t.Fatal(err)
	}
	var stray []*exec.Cmd
	for i := 0; i < 3; i++ {
		c := exec.Command("true")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		stray = append(stray, c)
	}
	// Wait until all four have exited (zombies now).
	deadline := time.Now().Add(5 * time.Second)
	reaped := 0
	for reaped < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		reaped += r.Reap()
	}
	if reaped != 3 {
		t.Fatalf("reaped %d strays, want 3", reaped)
	}
	for _, c := range stray {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(c.Process.Pid, &ws, unix.WNOHANG, nil); err == nil && pid != 0 {
			t.Errorf("stray %d was not reaped", c.Process.Pid)
		}
	}
	err := owned.Wait()
	r.Release(owned.Process.Pid)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Errorf("owned child's Wait = %v, want exit status 7", err)
	}
}

func TestActionFor(t *testing.T) {
	tests := []struct {
		sig  unix.Signal
		want string
	}{
		{unix.SIGTERM, "reboot"}, {unix.SIGINT, "reboot"}, {unix.SIGUSR2, "power off"},
		{unix.SIGPWR, "power off"}, {unix.SIGUSR1, "halt"}, {unix.SIGHUP, ""}, {unix.SIGPIPE, ""},
	}
	for _, tt := range tests {
		_, name, ok := actionFor(tt.sig)
		if name != tt.want || ok != (tt.want != "") {
			t.Errorf("%v → %q, %v; want %q", tt.sig, name, ok, tt.want)
		}
	}
}

func TestLogFormat(t *testing.T) {
	var b bytes.Buffer
	log := NewLogger(&b, slog.LevelInfo)
	log.Info("", "step", "mount-api", "t", Seconds(410*time.Millisecond), "took", 3*time.Millisecond)
	log.Info("module loaded", "module", "virtio_pci", "for", "dependency of virtio_blk")
	log.Warn("module not in image", "module", "e1000", "reason", `a "quoted" thing`)
	log.Debug("hidden")
	want := "etoile: step=mount-api t=0.41s took=3ms\n" +
		"etoile: module loaded module=virtio_pci for=\"dependency of virtio_blk\"\n" +
		"etoile: warning: module not in image module=e1000 reason=\"a \\\"quoted\\\" thing\"\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if strings.Contains(b.String(), "hidden") {
		t.Error("debug line shown at info level")
	}
	// PID 1's last-resort logger (after a panic, and the power button's
	// listener) has no level: it must log at info, not crash.
	b.Reset()
	log = NewLogger(&b, nil)
	log.Debug("hidden")
	log.Info("signal", "action", "reboot")
	if b.String() != "etoile: signal action=reboot\n" {
		t.Errorf("logger without a level wrote %q", b.String())
	}
}

// TestSignalsFromOthersDoNotEndInit: a process that catches Signals, as PID 1
// does, survives every signal another process may send it that would end a
// Go program (`kill -ABRT 1` from a node shell would otherwise panic the
// kernel). The test binary is run again as that process.
func TestSignalsFromOthersDoNotEndInit(t *testing.T) {
	if os.Getenv("ETOILE_TEST_SIGNAL_CHILD") == "1" {
		c := NotifySignals()
		fmt.Println("ready")
		for sig := range c {
			fmt.Println("caught", sig)
		}
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestSignalsFromOthersDoNotEndInit$")
	cmd.Env = append(os.Environ(), "ETOILE_TEST_SIGNAL_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("the child did not start: %q", lines.Text())
	}
	for _, sig := range []unix.Signal{unix.SIGABRT, unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP,
		unix.SIGSYS, unix.SIGSTKFLT, unix.SIGQUIT, unix.SIGPIPE, unix.SIGHUP, unix.SIGTERM} {
		if err := unix.Kill(cmd.Process.Pid, sig); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() || lines.Text() != "caught "+sig.String() {
			t.Fatalf("after %v the child printed %q (err %v): want it caught and the process alive", sig, lines.Text(), lines.Err())
		}
	}
}

// TestAgentCommands: sbin gets modprobe, poweroff, reboot and halt linked
// to the agent (the kernel runs /sbin/poweroff for an orderly shutdown),
// leaving alone what the system image brings; each power command tells PID 1
// the signal of its action.
func TestAgentCommands(t *testing.T) {
	sbin := filepath.Join(t.TempDir(), "sbin")
	if err := os.MkdirAll(sbin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sbin, "modprobe"), []byte("kmod's"), 0o755); err != nil {
		t.Fatal(err)
	}
	installAgentCommands(sbin, "/usr/bin/etoile-agent", slog.New(slog.DiscardHandler))
	for _, name := range []string{"poweroff", "reboot", "halt"} {
		if to, err := os.Readlink(filepath.Join(sbin, name)); err != nil || to != "/usr/bin/etoile-agent" {
			t.Errorf("sbin/%s → %q, %v; want a link to the agent", name, to, err)
		}
		sig, ok := PowerSignal(name)
		_, action, known := actionFor(sig)
		if want := map[string]string{"poweroff": "power off", "reboot": "reboot", "halt": "halt"}[name]; !ok || !known || action != want {
			t.Errorf("%s sends %v, which PID 1 takes as %q; want %q", name, sig, action, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(sbin, "modprobe")); err != nil || string(b) != "kmod's" {
		t.Errorf("the image's own modprobe was replaced: %q, %v", b, err)
	}
	if _, ok := PowerSignal("modprobe"); ok {
		t.Error("modprobe is not a power command")
	}
}

// TestReapDoesNotWaitForAStart: while a Start holds the reaper (its exec
// blocked in the kernel, say), Reap returns at once instead of holding PID
// 1's main loop; once the start is done, the orphans are reaped.
func TestReapDoesNotWaitForAStart(t *testing.T) {
	r := NewReaper()
	r.mu.Lock() // a Start in progress
	done := make(chan int, 1)
	go func() { done <- r.Reap() }()
	select {
	case n := <-done:
		if n != 0 {
			t.Errorf("Reap during a start reaped %d", n)
		}
	case <-time.After(5 * time.Second):
		r.mu.Unlock()
		t.Fatal("Reap waited for the start in progress")
	}
	r.mu.Unlock()
}
