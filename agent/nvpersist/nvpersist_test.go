package nvpersist

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/internal/syncbuf"
)

type rig struct {
	root, dir string
	log       *syncbuf.Buffer
	opts      Options
}

func newRig(t *testing.T, mode string) *rig {
	t.Helper()
	root := t.TempDir()
	env, dir, pidFile := fakeroot.Persistenced(t, root)
	r := &rig{root: root, dir: dir, log: &syncbuf.Buffer{}}
	r.setMode(t, mode)
	r.opts = Options{
		Path:    filepath.Join(root, "usr/bin", Name),
		PIDFile: pidFile,
		Env:     env,
		Log:     slog.New(slog.NewTextHandler(r.log, nil)),
		Backoff: 50 * time.Millisecond,
	}
	return r
}

func (r *rig) setMode(t *testing.T, mode string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, "mode"), []byte(mode), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) count(name string) int {
	b, _ := os.ReadFile(filepath.Join(r.dir, name))
	return strings.Count(string(b), "\n")
}

// start starts the daemon; the test's end stops it and checks it is gone.
func (r *rig) start(t *testing.T) (*Daemon, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := Start(ctx, r.opts)
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.Done():
		case <-time.After(20 * time.Second):
			t.Error("the supervisor did not end after its context")
		}
	})
	select {
	case <-d.Started():
	case <-time.After(20 * time.Second):
		t.Fatal("the first start did not end")
	}
	return d, cancel
}

// waitDone waits for the supervisor to end (its context ended).
func waitDone(t *testing.T, d *Daemon) {
	t.Helper()
	select {
	case <-d.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("not stopped")
	}
}

func alive(pid int) bool { return pid > 0 && unix.Kill(pid, 0) == nil && !zombie(pid) }

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	dirs := []string{"/usr/local/bin", "/usr/bin", "/usr/sbin"}
	if got := Find(root, dirs); got != "" {
		t.Errorf("Find in an empty root = %q", got)
	}
	// Not executable: not a daemon to run.
	p := filepath.Join(root, "usr/sbin", Name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Find(root, dirs); got != "" {
		t.Errorf("Find with a non-executable file = %q", got)
	}
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Find(root, dirs); got != "/usr/sbin/"+Name {
		t.Errorf("Find = %q, want /usr/sbin/%s", got, Name)
	}
	if got := Find(root, dirs[:2]); got != "" {
		t.Errorf("Find outside the folders given = %q", got)
	}
	if DriverLoaded(root) {
		t.Error("DriverLoaded without /proc/driver/nvidia/version")
	}
	if err := os.MkdirAll(filepath.Join(root, "proc/driver/nvidia"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/driver/nvidia/version"), []byte("NVRM version: 580.159.04\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if !DriverLoaded(root) {
		t.Error("DriverLoaded with /proc/driver/nvidia/version")
	}
}

// The daemon is started, restarted when it dies, and stopped with SIGTERM
// when the machine shuts down.
func TestStartRestartStop(t *testing.T) {
	r := newRig(t, "ok")
	d, cancel := r.start(t)
	pid := d.PID()
	if !alive(pid) || d.Err() != nil || d.State() != "running" {
		t.Fatalf("after the start: pid %d alive=%v, err %v\n%s", pid, alive(pid), d.Err(), r.log)
	}
	if b, _ := os.ReadFile(filepath.Join(r.dir, "args")); strings.TrimSpace(string(b)) != "--verbose" {
		t.Errorf("arguments %q, want --verbose", b)
	}
	if !strings.Contains(r.log.String(), "NVIDIA persistence daemon running") || !strings.Contains(r.log.String(), "pid="+strconv.Itoa(pid)) {
		t.Errorf("log:\n%s", r.log)
	}
	// It dies: started again, with a new pid.
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a restart", func() bool { p := d.PID(); return p != 0 && p != pid && alive(p) })
	if d.Restarts() != 1 || r.count("runs") != 2 {
		t.Errorf("restarts %d, runs %d; want 1 and 2", d.Restarts(), r.count("runs"))
	}
	if !strings.Contains(r.log.String(), "NVIDIA persistence daemon not running") || !strings.Contains(r.log.String(), "exited") {
		t.Errorf("the exit is not on the log:\n%s", r.log)
	}
	second := d.PID()
	// Shutdown: SIGTERM, and no restart.
	cancel()
	waitDone(t, d)
	if r.count("stopped") != 1 {
		t.Errorf("the daemon did not get its SIGTERM (stopped %d times)", r.count("stopped"))
	}
	eventually(t, "the daemon's exit", func() bool { return !alive(second) })
	if d.PID() != 0 || r.count("runs") != 2 || d.State() != "stopped" {
		t.Errorf("after the shutdown: pid %d, runs %d, state %s", d.PID(), r.count("runs"), d.State())
	}
}

// A daemon that cannot start (no usable driver) is reported with what it
// printed and tried again, with a growing wait; it runs once it can.
func TestFailureReportedAndRetried(t *testing.T) {
	r := newRig(t, "fail")
	d, _ := r.start(t)
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "failed to initialize") {
		t.Fatalf("Err() = %v", err)
	}
	if d.PID() != 0 || d.State() != "restarting" {
		t.Errorf("PID() = %d, State() = %s for a daemon that did not start", d.PID(), d.State())
	}
	eventually(t, "two retries", func() bool { return r.count("runs") >= 3 })
	log := r.log.String()
	for _, w := range []string{"restart_in=50ms", "restart_in=100ms", "fix=", "etoile-agent logs syslog"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	r.setMode(t, "ok")
	eventually(t, "the daemon once it can start", func() bool { return alive(d.PID()) })
	if d.Err() != nil {
		t.Errorf("Err() = %v while it runs", d.Err())
	}
}

func TestNoPIDFileAndHang(t *testing.T) {
	old := pidWait
	pidWait = 200 * time.Millisecond
	defer func() { pidWait = old }()
	r := newRig(t, "nopid")
	r.opts.Backoff = time.Hour // one try is enough here
	d, _ := r.start(t)
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "exited 0 but wrote no pid") {
		t.Errorf("without a pid file: %v", err)
	}

	r = newRig(t, "hang")
	r.opts.Backoff = time.Hour
	r.opts.StartTimeout = 300 * time.Millisecond
	d, _ = r.start(t)
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "did not finish starting in 300ms: killed") {
		t.Errorf("a hanging start: %v", err)
	}
}

// A start interrupted by the shutdown ends the supervisor without a warning.
func TestShutdownDuringStart(t *testing.T) {
	r := newRig(t, "hang")
	ctx, cancel := context.WithCancel(context.Background())
	d := Start(ctx, r.opts)
	eventually(t, "the first process", func() bool { return r.count("runs") == 1 })
	if d.State() != "starting" {
		t.Errorf("State() = %s during the first start", d.State())
	}
	cancel()
	waitDone(t, d)
	if !errors.Is(d.Err(), context.Canceled) {
		t.Errorf("Err() = %v", d.Err())
	}
	if strings.Contains(r.log.String(), "level=WARN") {
		t.Errorf("a shutdown is not a failure:\n%s", r.log)
	}
}

// Without /var/run (an image that lacks it) the daemon cannot make its
// folder and fails, as NVIDIA's does: the reason is said.
func TestNoVarRun(t *testing.T) {
	r := newRig(t, "ok")
	if err := os.Remove(filepath.Join(r.root, "var/run")); err != nil {
		t.Fatal(err)
	}
	r.opts.Backoff = time.Hour
	d, _ := r.start(t)
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "failed to initialize") {
		t.Errorf("Err() = %v", err)
	}
}

// A first process that forked the daemon but does not exit in time is
// killed, and the daemon it forked is stopped: no second daemon beside it,
// none left unwatched. The same when the machine shuts down meanwhile.
func TestSlowStartLeavesNoDaemon(t *testing.T) {
	r := newRig(t, "slow")
	r.opts.Backoff = time.Hour
	r.opts.StartTimeout = 3 * time.Second
	d, _ := r.start(t)
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "did not finish starting") {
		t.Fatalf("Err() = %v", err)
	}
	if r.count("stopped") != 1 {
		t.Errorf("the forked daemon got SIGTERM %d times, want once", r.count("stopped"))
	}

	r = newRig(t, "slow")
	ctx, cancel := context.WithCancel(context.Background())
	d = Start(ctx, r.opts)
	eventually(t, "the pid file", func() bool { _, err := os.Stat(r.opts.PIDFile); return err == nil })
	cancel()
	waitDone(t, d)
	if r.count("stopped") != 1 {
		t.Errorf("after a shutdown during the start the forked daemon got SIGTERM %d times, want once", r.count("stopped"))
	}
}

// A daemon already running (it holds its pid file's lock, as NVIDIA's
// does with lockf) is watched, not doubled; once it exits the agent starts
// its own.
func TestRunningDaemonIsWatched(t *testing.T) {
	r := newRig(t, "ok")
	if err := os.MkdirAll(filepath.Dir(r.opts.PIDFile), 0o755); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command(os.Args[0], "-test.run=^$")
	holder.Env = append(os.Environ(), "NVPERSIST_LOCK_HOLDER="+r.opts.PIDFile)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("the lock holder said %q, %v", line, err)
	}
	d, _ := r.start(t)
	if d.PID() != holder.Process.Pid || r.count("runs") != 0 {
		t.Fatalf("PID() = %d (holder %d), stand-in runs %d: want the running daemon watched", d.PID(), holder.Process.Pid, r.count("runs"))
	}
	if !strings.Contains(r.log.String(), "already running: watching it") {
		t.Errorf("log:\n%s", r.log)
	}
	_ = holder.Process.Kill()
	eventually(t, "the agent's own daemon", func() bool { p := d.PID(); return p != 0 && p != holder.Process.Pid && alive(p) })
	if r.count("runs") != 1 {
		t.Errorf("stand-in runs %d, want 1", r.count("runs"))
	}
}

// TestMain lets the test binary hold a pid file's lock as the daemon does
// (lockf: a POSIX record lock, which another process must hold for
// F_GETLK to see it).
func TestMain(m *testing.M) {
	if p := os.Getenv("NVPERSIST_LOCK_HOLDER"); p != "" {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		fmt.Println("locked")
		time.Sleep(10 * time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A pid file that names PID 1 (the agent itself), the agent's own pid, or
// no process at all is not the daemon's: the agent must never watch it,
// nor send it SIGTERM and SIGKILL (PID 1 reboots on SIGTERM).
func TestPIDFileNamingTheAgentIsRefused(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "nvidia-persistenced.pid")
	d := &Daemon{o: Options{PIDFile: pidFile}}
	for _, pid := range []string{"1", "0", "-4", strconv.Itoa(os.Getpid())} {
		if err := os.WriteFile(pidFile, []byte(pid+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := d.forked(); got != 0 || err == nil {
			t.Errorf("pid file %q: forked() = %d, %v; want it refused", pid, got, err)
		}
		if err := d.watch(context.Background(), mustAtoi(t, pid)); err == nil || !strings.Contains(err.Error(), "not watched") {
			t.Errorf("watch(%s) = %v, want it refused", pid, err)
		}
	}
	// A real process's pid is the daemon's.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(sleeper.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := d.forked(); got != sleeper.Process.Pid || err != nil {
		t.Errorf("forked() = %d, %v; want %d", got, err, sleeper.Process.Pid)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A daemon whose first process writes the agent's own pid into the pid
// file is reported as not started, and the shutdown signals no one: the
// test process, standing for the agent, is still there to see it.
func TestPIDFileWithTheAgentsPID(t *testing.T) {
	old := pidWait
	pidWait = 300 * time.Millisecond
	defer func() { pidWait = old }()
	dir := t.TempDir()
	script := filepath.Join(dir, Name)
	pidFile := filepath.Join(dir, "run", "nvidia-persistenced.pid")
	body := "#!/bin/sh\nmkdir -p \"$(dirname \"$NVPD_PIDFILE\")\"\necho \"$NVPD_PID\" > \"$NVPD_PIDFILE\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	var log syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	d := Start(ctx, Options{Path: script, PIDFile: pidFile, Backoff: time.Hour, StopTimeout: time.Second,
		Env: []string{"PATH=/usr/bin:/bin", "NVPD_PIDFILE=" + pidFile, "NVPD_PID=" + strconv.Itoa(os.Getpid())},
		Log: slog.New(slog.NewTextHandler(&log, nil))})
	select {
	case <-d.Started():
	case <-time.After(20 * time.Second):
		t.Fatal("the first start did not end")
	}
	if d.PID() != 0 || d.State() != "restarting" {
		t.Errorf("PID() = %d, State() = %s: the agent's own pid taken for the daemon's", d.PID(), d.State())
	}
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "the agent's own, not the daemon's") {
		t.Errorf("Err() = %v", err)
	}
	cancel()
	waitDone(t, d)
}

// A panic in the supervisor (here in the reaper's start hook) is logged as
// an error and the daemon is started again: the agent, PID 1, lives on.
func TestSupervisorCrashIsLoggedAndRetried(t *testing.T) {
	r := newRig(t, "ok")
	calls := 0
	r.opts.Start = func(c *exec.Cmd) error {
		calls++ // one goroutine: run's
		if calls == 1 {
			var m map[string]int
			m["boom"]++ // a nil map: a runtime panic
		}
		return c.Start()
	}
	d, _ := r.start(t)
	eventually(t, "the daemon after the crash", func() bool { return alive(d.PID()) })
	log := r.log.String()
	for _, w := range []string{"level=ERROR", "supervisor crashed", "assignment to entry in nil map", "nvpersist.TestSupervisorCrashIsLoggedAndRetried"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
}
