package k3s

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestStopGivesUpOnAProcessSIGKILLDoesNotEnd: a K3s whose wait never ends
// after SIGKILL (a process stuck in the kernel, state D, simulated by an
// exit channel that never delivers) does not hold the stop for ever: stop
// returns a *LeftBehind naming its pid once KillWait has passed.
func TestStopGivesUpOnAProcessSIGKILLDoesNotEnd(t *testing.T) {
	old := KillWait
	KillWait = 100 * time.Millisecond
	defer func() { KillWait = old }()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "ETOILE_FAKE_K3S=stubborn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait() // it was killed: reaped here
	s := &Supervisor{StopTimeout: 50 * time.Millisecond}
	s.defaults()
	never := make(chan error) // the process's wait, never returning
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop(cmd, never, nil) }()
	select {
	case err := <-stopped:
		var lb *LeftBehind
		if !errors.As(err, &lb) || lb.Pid != cmd.Process.Pid || !strings.Contains(err.Error(), "left behind") {
			t.Errorf("stop = %v, want a *LeftBehind for pid %d", err, cmd.Process.Pid)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stop still waits for a process that does not end after SIGKILL")
	}
}

// TestFailedExecIsNotARestart: a K3s that could not be executed is said
// to be so ("could not start K3s: …"), not to have exited after some
// milliseconds, and is not counted as a restart; it is tried again.
func TestFailedExecIsNotARestart(t *testing.T) {
	var execs atomic.Int32
	s := &Supervisor{Root: t.TempDir(), Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Backoff: Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour, Crashloop: 3},
		OnExec:  func(int, error) { execs.Add(1) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the failed exec", func() bool { return strings.Contains(s.Status().Reason, "in 1h0m0s") })
	st := s.Status()
	if !strings.HasPrefix(st.Reason, "could not start K3s: ") || !strings.Contains(st.Reason, "no such file or directory; trying again in 1h0m0s") ||
		strings.Contains(st.Reason, "exited") || st.Restarts != 0 {
		t.Errorf("status after a failed exec = %+v, want could not start K3s: …, no restart counted", st)
	}
	if at := s.NextStart(); at.IsZero() {
		t.Errorf("NextStart is zero while the supervisor waits out its backoff")
	}
	if s.RetryNow("test") {
		waitFor(t, "the second try", func() bool { return execs.Load() >= 2 })
	} else {
		t.Errorf("RetryNow did not end the wait after a failed exec")
	}
}
