package k3s

import (
	"context"
	"errors"
	"fmt"
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
	cmd := startFakeGroup(t, "stubborn") // killed by stop: reaped by the cleanup
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

// TestNoK3sBesideOneLeftBehind: while a process of a K3s group left behind
// lives (a sleeping child stands in for a K3s stuck in the kernel), no K3s
// is started beside it: the supervisor says why and waits; once the group
// has ended, K3s starts.
func TestNoK3sBesideOneLeftBehind(t *testing.T) {
	stuck := startFakeGroup(t, "hang")
	noteLeftBehind(stuck.Process.Pid)
	var execs atomic.Int32
	s := &Supervisor{Root: t.TempDir(), Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Backoff: Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour, Crashloop: 3},
		Start:   func(*exec.Cmd) error { execs.Add(1); return errors.New("stand-in exec") }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the refusal", func() bool { return strings.Contains(s.Status().Reason, "in 1h0m0s") })
	want := fmt.Sprintf("left behind has not exited (process %d of its group %d", stuck.Process.Pid, stuck.Process.Pid)
	if st := s.Status(); !strings.Contains(st.Reason, want) || !strings.Contains(st.Reason, "reboot the machine") || execs.Load() != 0 {
		t.Errorf("status %+v after %d execs: want K3s not started, and why (%s…)", st, execs.Load(), want)
	}
	_ = stuck.Process.Kill()
	_ = stuck.Wait()
	if !s.RetryNow("test") {
		t.Fatal("RetryNow did not end the wait")
	}
	waitFor(t, "K3s started once the group ended", func() bool { return execs.Load() == 1 })
}

// TestStatStateGroup reads the state and process group past a command name
// holding spaces and parentheses.
func TestStatStateGroup(t *testing.T) {
	line := "4242 (k3s (server) x) D 1 4240 4240 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 12 0 98765 1000 50\n"
	state, g, start, ok := statStateGroup([]byte(line))
	if !ok || state != 'D' || g != 4240 || start != 98765 {
		t.Errorf("got %q %d %d %v, want D 4240 98765", state, g, start, ok)
	}
	if _, _, _, ok := statStateGroup([]byte("4242 (k3s")); ok {
		t.Error("a cut stat line was read")
	}
}

// TestAGroupNumberGivenAgainIsNotK3s: a process group whose number is that
// of a group left behind, but whose processes started after (the kernel gave
// the number again once the stuck group had ended), does not keep K3s from
// starting.
func TestAGroupNumberGivenAgainIsNotK3s(t *testing.T) {
	p := startFakeGroup(t, "hang")
	noteLeftBehind(p.Process.Pid)
	if g, _ := stillBehind("/proc"); g != p.Process.Pid {
		t.Fatalf("stillBehind = %d, want the live group %d", g, p.Process.Pid)
	}
	leftBehind.mu.Lock()
	leftBehind.before[p.Process.Pid] = 0 // left behind before this process started
	leftBehind.mu.Unlock()
	if g, pid := stillBehind("/proc"); g != 0 {
		t.Errorf("stillBehind = %d (process %d): a group started after the one left behind is not K3s's", g, pid)
	}
}

// startFakeGroup starts the test binary as the fake K3s in mode
// (ETOILE_FAKE_K3S), leading a process group of its own as K3s does under
// the supervisor; the test's cleanup kills and reaps it (harmless when the
// test already did).
func startFakeGroup(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "ETOILE_FAKE_K3S="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestLeftBehindIsToldAsAFailedStart: a start refused because a K3s left
// behind still lives is told to OnExec as a start that failed, with why: a
// config applied (etoile-agent config apply) waits for OnExec, and must not
// report K3s started.
func TestLeftBehindIsToldAsAFailedStart(t *testing.T) {
	stuck := startFakeGroup(t, "hang")
	noteLeftBehind(stuck.Process.Pid)
	told := make(chan error, 1)
	s := &Supervisor{Root: t.TempDir(), Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Backoff: Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour, Crashloop: 3},
		Start:   func(*exec.Cmd) error { return errors.New("stand-in exec: K3s must not be started") },
		OnExec: func(pid int, err error) {
			if pid != 0 {
				t.Errorf("OnExec(%d, %v): K3s was started beside the one left behind", pid, err)
			}
			select {
			case told <- err:
			default:
			}
		}}
	stop := runSupervisor(t, s, 20*time.Second)
	defer func() { _ = stop() }()
	waitFor(t, "the refusal", func() bool { return strings.Contains(s.Status().Reason, "in 1h0m0s") })
	select {
	case err := <-told:
		if err == nil || !strings.Contains(err.Error(), "left behind has not exited") || !strings.Contains(err.Error(), "reboot the machine") {
			t.Errorf("OnExec told %v, want why K3s was not started and what to do", err)
		}
	default:
		t.Fatal("OnExec was not told that K3s was not started (a config applied would say it was)")
	}
}
