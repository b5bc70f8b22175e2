package nvpersist

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type rig struct {
	root, dir string
	log       *syncBuf
	opts      Options
}

func newRig(t *testing.T, mode string) *rig {
	t.Helper()
	root := t.TempDir()
	bin := filepath.Join(root, "usr/bin", Name)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte(fakeroot.PersistencedStandin), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &rig{root: root, dir: dir, log: &syncBuf{}}
	r.setMode(t, mode)
	pidFile := filepath.Join(root, "var/run/nvidia-persistenced/nvidia-persistenced.pid")
	r.opts = Options{
		Path:    bin,
		PIDFile: pidFile,
		Env:     []string{"PATH=/usr/bin:/bin", "NVPD_DIR=" + dir, "NVPD_PIDFILE=" + pidFile},
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
	if got := Find(root); got != "" {
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
	if got := Find(root); got != "" {
		t.Errorf("Find with a non-executable file = %q", got)
	}
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Find(root); got != "/usr/sbin/"+Name {
		t.Errorf("Find = %q, want /usr/sbin/%s", got, Name)
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
	select {
	case <-d.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("not stopped")
	}
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
	select {
	case <-d.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("not stopped")
	}
	if !errors.Is(d.Err(), context.Canceled) {
		t.Errorf("Err() = %v", d.Err())
	}
	if strings.Contains(r.log.String(), "level=WARN") {
		t.Errorf("a shutdown is not a failure:\n%s", r.log)
	}
}
