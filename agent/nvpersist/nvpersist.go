// Package nvpersist runs NVIDIA's persistence daemon, nvidia-persistenced,
// where the system image carries it (an extension with NVIDIA's driver) and
// the driver is loaded.
//
// Without it the driver tears a GPU's state down whenever the last program
// using it closes it, and sets it up again for the next: every nvidia-smi,
// every container's first CUDA call pays seconds of initialisation, and
// error counters and settings (application clocks, ECC, MIG's compute
// instances) do not last. NVIDIA's documentation has the daemon run on
// every Linux GPU server; systemd-based distributions start it from a unit,
// Talos from its NVIDIA extension. The agent is the node's init, so it starts
// it here and watches it:
//
//   - the daemon forks into the background; the agent waits for the process
//     it started to exit (0: the daemon is set up) and reads the daemon's pid
//     from its pid file (/var/run/nvidia-persistenced/nvidia-persistenced.pid);
//   - it watches that process through a pidfd and starts it again after an
//     exit, with a back-off (2 s doubling to 5 min; reset after 10 min up);
//   - on shutdown it sends SIGTERM and waits, so that the daemon leaves the
//     GPUs in order, before every other process is stopped.
//
// The daemon logs through syslog(3): its messages are in `etoile-agent logs
// syslog` (package syslogd).
package nvpersist

import (
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
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/safego"
)

// Name is the daemon's program name.
const Name = "nvidia-persistenced"

// PIDFile is where the daemon writes its pid.
const PIDFile = "/var/run/nvidia-persistenced/nvidia-persistenced.pid"

// pidWait bounds the wait for the pid file after the first process exited 0.
var pidWait = 5 * time.Second

// Find returns the daemon's path on the machine ("/usr/bin/nvidia-persistenced")
// when root's system holds an executable one in one of dirs (the node looks
// where K3s looks for NVIDIA's container runtime: K3s's PATH), else "".
func Find(root string, dirs []string) string {
	for _, d := range dirs {
		p := filepath.Join(d, Name)
		st, err := os.Stat(filepath.Join(root, p))
		if err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// DriverLoaded reports whether NVIDIA's kernel driver is loaded (it
// publishes /proc/driver/nvidia/version).
func DriverLoaded(root string) bool {
	_, err := os.Stat(filepath.Join(root, "proc/driver/nvidia/version"))
	return err == nil
}

// Options say how to run the daemon; zero values take the defaults.
type Options struct {
	Path    string   // the daemon, as Find returns it
	Args    []string // nil: --verbose (state changes in its syslog messages)
	Env     []string // nil: the agent's
	PIDFile string   // "": PIDFile
	// Start and Release are PID 1's reaper's (the first process is the
	// agent's child, waited for here); nil: exec.Cmd.Start.
	Start   func(*exec.Cmd) error
	Release func(pid int)
	Log     *slog.Logger
	// StartTimeout bounds the first process's run: it sets persistence
	// mode on every GPU before it exits (0: 5 minutes, as NVIDIA's
	// systemd unit allows).
	StartTimeout time.Duration
	// Backoff is the first wait before a restart, doubled after each
	// failure up to MaxBackoff, and reset after Healthy up (0: 2 s, 5 min,
	// 10 min).
	Backoff, MaxBackoff, Healthy time.Duration
	// StopTimeout bounds the wait after SIGTERM on shutdown (0: 10 s).
	StopTimeout time.Duration
}

// Daemon is the supervised daemon.
type Daemon struct {
	o       Options
	started chan struct{}
	done    chan struct{}

	mu       sync.Mutex
	pid      int
	err      error
	restarts int
}

// Start starts the daemon and watches it until ctx ends. Started is closed
// once the first start is over, whether it worked or not.
func Start(ctx context.Context, o Options) *Daemon {
	if o.Args == nil {
		o.Args = []string{"--verbose"}
	}
	if o.PIDFile == "" {
		o.PIDFile = PIDFile
	}
	if o.Start == nil {
		o.Start = func(c *exec.Cmd) error { return c.Start() }
	}
	if o.Release == nil {
		o.Release = func(int) {}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.StartTimeout, 5*time.Minute)
	def(&o.Backoff, 2*time.Second)
	def(&o.MaxBackoff, 5*time.Minute)
	def(&o.Healthy, 10*time.Minute)
	def(&o.StopTimeout, 10*time.Second)
	d := &Daemon{o: o, started: make(chan struct{}), done: make(chan struct{})}
	go d.supervise(ctx)
	return d
}

// supervise runs run, and again after a panic (logged as an error), until
// ctx ends: the agent is PID 1, which a panic in any goroutine would end.
func (d *Daemon) supervise(ctx context.Context) {
	defer close(d.done)
	defer d.startOver() // a crash before the first start was over
	backoff := d.o.Backoff
	for {
		if !safego.Run(d.o.Log, "the NVIDIA persistence daemon's supervisor", func() { d.run(ctx) }) {
			return
		}
		d.set(0, errors.New("its supervisor crashed (see the error line before): starting it again"))
		d.startOver()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, d.o.MaxBackoff)
		d.countRestart()
	}
}

// Started is closed once the first start is over.
func (d *Daemon) Started() <-chan struct{} { return d.started }

// Done is closed once the daemon is stopped and no longer watched.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// PID is the running daemon's pid (0 when it is not running).
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid
}

// Err is why the daemon is not running (nil while it runs).
func (d *Daemon) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// State is "starting" until the first start is over, then "running" or,
// while it is not running, "restarting"; "stopped" once its context ended.
func (d *Daemon) State() string {
	select {
	case <-d.done:
		return "stopped"
	default:
	}
	select {
	case <-d.started:
	default:
		return "starting"
	}
	if d.PID() > 0 {
		return "running"
	}
	return "restarting"
}

// Restarts counts the starts after the first.
func (d *Daemon) Restarts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.restarts
}

// fix is what an operator does about a daemon that does not stay up.
const fix = "read its messages (etoile-agent logs syslog) and the kernel's (etoile-agent logs kernel); the extension must carry the daemon of the driver's version and the driver's libnvidia-cfg.so.1"

func (d *Daemon) run(ctx context.Context) {
	first := true
	backoff := d.o.Backoff
	for {
		up := time.Now()
		pid, err := d.launch(ctx)
		if err == nil {
			d.set(pid, nil)
			d.o.Log.Info("NVIDIA persistence daemon running", "pid", pid, "path", d.o.Path)
		} else {
			d.set(0, err)
		}
		if first {
			d.startOver()
			first = false
		}
		if err == nil {
			err = d.watch(ctx, pid)
			if ctx.Err() != nil {
				d.set(0, errors.New("stopped with the machine"))
				return
			}
			d.set(0, err)
			if time.Since(up) >= d.o.Healthy {
				backoff = d.o.Backoff
			}
		}
		if ctx.Err() != nil {
			return
		}
		d.o.Log.Warn("NVIDIA persistence daemon not running", "reason", err.Error(), "restart_in", backoff, "fix", fix)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, d.o.MaxBackoff)
		d.countRestart()
	}
}

func (d *Daemon) set(pid int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pid, d.err = pid, err
}

func (d *Daemon) countRestart() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.restarts++
}

// startOver closes started, once (run and supervise, in one goroutine).
func (d *Daemon) startOver() {
	select {
	case <-d.started:
	default:
		close(d.started)
	}
}

// launch runs the daemon's first process, which forks the daemon and exits,
// and returns the daemon's pid from its pid file. A daemon already running
// (it holds its pid file's lock: started by hand, or one a first process
// that timed out had forked) is watched instead of starting a second.
func (d *Daemon) launch(ctx context.Context) (int, error) {
	if pid := lockHolder(d.o.PIDFile); pid > 0 {
		d.o.Log.Info("NVIDIA persistence daemon already running: watching it", "pid", pid)
		return pid, nil
	}
	// (A lock holder that is not a daemon's pid, refused there, is
	// replaced: its file goes, and the start's own daemon writes it.)
	// A file a dead daemon left would give its pid.
	if err := os.Remove(d.o.PIDFile); err != nil && !os.IsNotExist(err) {
		return 0, fmt.Errorf("removing the old pid file: %w", err)
	}
	out := &tail{max: 2048}
	cmd := exec.Command(d.o.Path, d.o.Args...)
	cmd.Env = d.o.Env
	cmd.Stdout, cmd.Stderr = out, out
	// The daemon may keep the output pipe open: stop reading it once
	// the first process exited.
	cmd.WaitDelay = time.Second
	if err := d.o.Start(cmd); err != nil {
		return 0, fmt.Errorf("starting %s: %w", d.o.Path, err)
	}
	waited := make(chan error, 1)
	go func() {
		err := errors.New("waiting for it crashed")
		defer func() { waited <- err }()
		defer safego.Recover(d.o.Log, "waiting for the NVIDIA persistence daemon's first process")
		err = cmd.Wait()
		d.o.Release(cmd.Process.Pid)
	}()
	var err error
	select {
	case err = <-waited:
	case <-time.After(d.o.StartTimeout):
		_ = cmd.Process.Kill()
		<-waited
		d.stopForked()
		return 0, fmt.Errorf("%s did not finish starting in %s: killed", d.o.Path, d.o.StartTimeout)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-waited
		d.stopForked()
		return 0, ctx.Err()
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return 0, fmt.Errorf("%s failed (%v)%s", d.o.Path, err, out.said())
	}
	// The daemon writes its pid file once forked: give it a moment.
	deadline := time.Now().Add(pidWait)
	for {
		pid, refused := d.forked()
		if pid > 0 {
			return pid, nil
		}
		if time.Now().After(deadline) {
			if refused != nil {
				return 0, fmt.Errorf("%s exited 0 but its pid file %s was refused: %w%s", d.o.Path, d.o.PIDFile, refused, out.said())
			}
			return 0, fmt.Errorf("%s exited 0 but wrote no pid in %s%s", d.o.Path, d.o.PIDFile, out.said())
		}
		select {
		case <-ctx.Done():
			d.stopForked()
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// forkedPID is the pid of the daemon this start forked (0: none yet): the
// holder of the pid file's lock, else the pid the file holds. The file is
// this start's (launch removed an earlier one first), so its pid is not an
// old daemon's that another process may have been given since.
func (d *Daemon) forkedPID() int {
	pid, _ := d.forked()
	return pid
}

// forked is forkedPID, with why the pid file's pid was refused (checkPID)
// when it was.
func (d *Daemon) forked() (int, error) {
	if pid := lockHolder(d.o.PIDFile); pid > 0 {
		return pid, nil
	}
	b, err := os.ReadFile(d.o.PIDFile)
	if err != nil {
		return 0, nil
	}
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil {
		return 0, nil // not written in full yet
	}
	if err := checkPID(pid); err != nil {
		return 0, err
	}
	return pid, nil
}

// checkPID refuses a pid the daemon cannot have, which watching it, and
// stopping it with SIGTERM then SIGKILL, would harm: 0 or less (a process
// group, every process), 1 (PID 1: the agent itself, which a SIGTERM
// reboots) and the agent's own pid (outside PID 1's role, as under
// --root). A pid file holding one is not the daemon's.
func checkPID(pid int) error {
	switch {
	case pid <= 0:
		return fmt.Errorf("pid %d is no process's", pid)
	case pid == 1:
		return errors.New("pid 1 is the agent's own (PID 1), not the daemon's")
	case pid == os.Getpid():
		return fmt.Errorf("pid %d is the agent's own, not the daemon's", pid)
	}
	return nil
}

// stopForked stops the daemon a first process that was killed had already
// forked, so that neither a second daemon nor one nobody watches is left.
func (d *Daemon) stopForked() {
	pid := d.forkedPID()
	if pid <= 0 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	d.stop(fd, pid)
}

// lockHolder is the pid of the process holding pidFile's lock (the daemon
// locks it with lockf while it runs), 0 when none does.
func lockHolder(pidFile string) int {
	f, err := os.Open(pidFile)
	if err != nil {
		return 0
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil || lk.Type == unix.F_UNLCK {
		return 0
	}
	if checkPID(int(lk.Pid)) != nil {
		return 0 // (another namespace's holder is reported as 0)
	}
	return int(lk.Pid)
}

// watch returns once the daemon pid exits (an error saying so) or, when ctx
// ends, once it has been stopped (nil).
func (d *Daemon) watch(ctx context.Context, pid int) error {
	if err := checkPID(pid); err != nil {
		return fmt.Errorf("not watched: %w", err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("the daemon (pid %d) exited right after starting", pid)
	}
	defer unix.Close(fd)
	for {
		if pidfdExited(fd, 500) {
			return fmt.Errorf("the daemon (pid %d) exited", pid)
		}
		if ctx.Err() != nil {
			break
		}
	}
	d.stop(fd, pid)
	return nil
}

// stop sends the daemon SIGTERM, which lets it leave the GPUs in order,
// and SIGKILL after StopTimeout.
func (d *Daemon) stop(fd, pid int) {
	if err := checkPID(pid); err != nil {
		d.o.Log.Error("NVIDIA persistence daemon not signalled", "reason", err.Error())
		return
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0)
	deadline := time.Now().Add(d.o.StopTimeout)
	for time.Now().Before(deadline) {
		if pidfdExited(fd, 100) {
			return
		}
	}
	d.o.Log.Warn("NVIDIA persistence daemon did not stop in time: killed", "pid", pid, "waited", d.o.StopTimeout)
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	pidfdExited(fd, 1000) // gone before the next start looks for a running one
}

// pidfdExited waits up to ms milliseconds for the process to exit.
func pidfdExited(fd, ms int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, ms)
	return err == nil && n > 0
}

// tail keeps the last max bytes written.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

// said is ": <what it printed>" on one line, or "" when it printed nothing.
func (t *tail) said() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(strings.Fields(string(bytes.ToValidUTF8(t.b, []byte("?")))), " ")
	if s == "" {
		return ""
	}
	return ": " + s
}
