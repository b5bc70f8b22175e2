package boot

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/console"
	"github.com/etoile-os/etoile/agent/safego"
)

// Signals PID 1 must catch. An uncaught SIGTERM, SIGQUIT or SIGPIPE would
// make the Go runtime exit, and PID 1 exiting panics the kernel; catching
// them also tells the kernel that init wants them delivered. The fault
// signals (SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS,
// SIGSTKFLT) are caught too: the Go runtime installs its own handler for
// them, so the kernel's shield of init does not apply, and one sent by
// another process (`kill -ABRT 1` from a node shell) would make the runtime
// crash the program — the kernel's panic. Caught, one sent by kill is
// delivered here and ignored; a real fault in the agent still panics (the
// runtime tells the two apart), and is recovered where the goroutine can.
var Signals = []os.Signal{
	unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR, unix.SIGPIPE,
	unix.SIGABRT, unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP, unix.SIGSYS, unix.SIGSTKFLT,
}

// What a signal asks PID 1 to do (busybox init's conventions, which
// `kill -TERM 1` users and hypervisor agents expect):
//
//	SIGTERM, SIGINT (Ctrl-Alt-Del) → reboot
//	SIGUSR2, SIGPWR               → power off
//	SIGUSR1                       → halt
//	SIGHUP, SIGQUIT, SIGPIPE      → ignored
//	SIGABRT, SIGSEGV… (from kill) → ignored
func actionFor(sig os.Signal) (cmd int, name string, ok bool) {
	switch sig {
	case unix.SIGTERM, unix.SIGINT:
		return unix.LINUX_REBOOT_CMD_RESTART, "reboot", true
	case unix.SIGUSR2, unix.SIGPWR:
		return unix.LINUX_REBOOT_CMD_POWER_OFF, "power off", true
	case unix.SIGUSR1:
		return unix.LINUX_REBOOT_CMD_HALT, "halt", true
	}
	return 0, "", false
}

// Reaper collects the exit status of orphans that the kernel reparents to
// PID 1, without stealing the status of children the agent waits for itself
// (K3s under supervision, started with Reaper.Start and waited with
// exec.Cmd.Wait): those are left alone until Release.
type Reaper struct {
	mu  sync.Mutex
	own map[int]bool
}

// NewReaper returns an empty Reaper.
func NewReaper() *Reaper { return &Reaper{own: map[int]bool{}} }

// Start starts cmd and marks its pid as waited for by the caller, atomically
// with respect to reaping, so a child that exits at once is not reaped here.
func (r *Reaper) Start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.own[cmd.Process.Pid] = true
	return nil
}

// Release hands pid back to the reaper once the caller's Wait returned.
func (r *Reaper) Release(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.own, pid)
}

// Reap collects every exited child not owned by a caller and returns how
// many. While a Start is in progress it collects none and returns at once:
// Start holds the lock across fork and exec, and an exec that blocks in
// the kernel (its binary paged in from a failing medium) would otherwise
// hold PID 1's main loop — signals, the power button, the shutdown's
// reaping — with it. The next SIGCHLD, or the main loop's periodic pass,
// reaps what this pass left.
func (r *Reaper) Reap() int {
	if !r.mu.TryLock() {
		return 0
	}
	defer r.mu.Unlock()
	n := 0
	for {
		// Peek first (WNOWAIT) so an owned child's status stays for its Wait.
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		pid := siginfoPid(&info)
		if err != nil || pid <= 0 {
			return n
		}
		if r.own[pid] {
			// The first zombie is owned: find the others through /proc.
			return n + r.reapUnowned()
		}
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil || got <= 0 {
			return n
		}
		n++
	}
}

// reapUnowned reaps zombie children listed in /proc that nobody owns.
func (r *Reaper) reapUnowned() int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || r.own[pid] {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) S ppid …": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		var state byte
		var ppid int
		if _, err := fmt.Sscanf(string(b[i+2:]), "%c %d", &state, &ppid); err != nil {
			continue
		}
		if state == 'Z' && ppid == self {
			var ws unix.WaitStatus
			if got, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got == pid {
				n++
			}
		}
	}
	return n
}

// StayUp is what PID 1 does once booted (or once a fatal error was shown):
// reap orphans and wait for a signal asking to reboot or power off. It
// returns only if ctx ends (never on a real machine).
//
// beforeShutdown, when not nil, runs first on a reboot or power off: it
// stops the services the agent supervises cleanly (K3s gets its SIGTERM and
// time to stop) before every other process is signalled.
// powerButton (WatchPowerButton's, or nil) receives the ACPI power button's
// presses: each powers the machine off, as SIGPWR does.
func StayUp(ctx context.Context, log *slog.Logger, sigs <-chan os.Signal, reaper *Reaper, powerOffAfter time.Duration, powerButton <-chan ACPIEvent, beforeShutdown func()) {
	// A reboot asked for must happen even if the log's writer no longer
	// takes lines: saying it waits a second at most.
	log = Unblocked(log, time.Second)
	// With Ctrl-Alt-Del "off", the kernel sends PID 1 SIGINT instead of
	// rebooting on the spot, so the disks get synced first.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	var powerOff <-chan time.Time
	if powerOffAfter > 0 {
		log.Info("powering off as asked by etoile.poweroff", "in", powerOffAfter)
		powerOff = time.After(powerOffAfter)
	}
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			reaper.Reap() // a lost SIGCHLD must not leave zombies for ever
		case <-powerOff:
			stopServices(log, beforeShutdown)
			shutdown(log, reaper, unix.LINUX_REBOOT_CMD_POWER_OFF, "power off")
		case ev := <-powerButton:
			log.Info("power button pressed", "device", ev.BusID, "action", "power off")
			stopServices(log, beforeShutdown)
			shutdown(log, reaper, unix.LINUX_REBOOT_CMD_POWER_OFF, "power off")
		case sig := <-sigs:
			if sig == unix.SIGCHLD {
				reaper.Reap()
				continue
			}
			if cmd, name, ok := actionFor(sig); ok {
				log.Info("signal", "signal", sig.String(), "action", name)
				stopServices(log, beforeShutdown)
				shutdown(log, reaper, cmd, name)
				continue
			}
			log.Debug("signal ignored", "signal", sig.String())
		}
	}
}

// stopServices runs f, bounded: a service that does not stop in time must
// not keep the machine from rebooting.
func stopServices(log *slog.Logger, f func()) {
	if f == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer safego.Recover(log, "stopping services")
		f()
	}()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		log.Warn("services did not stop in 45 s: going on with the shutdown")
	}
}

// NotifySignals starts catching Signals; call it first thing in PID 1.
func NotifySignals() chan os.Signal {
	c := make(chan os.Signal, 32)
	signal.Notify(c, Signals...)
	return c
}

// shutdown asks every process to stop, gives them ProcessGrace (until they
// have all exited), kills the rest,
// unmounts (or remounts read-only) the filesystems still mounted writable,
// syncs, and reboots or powers off; each step bounded, and said on the
// consoles when it did not go as it should. If the reboot syscall fails the
// agent says so and keeps running: exiting would panic the kernel.
func shutdown(log *slog.Logger, reaper *Reaper, cmd int, name string) {
	log.Info("shutting down", "action", name)
	left := stopProcesses(log, func() []Proc { return userProcesses("/proc") }, func(sig syscall.Signal) { _ = unix.Kill(-1, sig) },
		func() { reaper.Reap() }, ProcessGrace)
	if len(left) > 0 {
		log.Warn("processes still running after SIGKILL (stuck in the kernel: a device or server that does not answer)", "count", len(left), "processes", procNames(left))
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		r := releaseFilesystems(log, writableMounts(parseMountinfo(data)),
			func(t string) error { return unix.Unmount(t, 0) },
			func(t string) error { return unix.Mount("", t, "", unix.MS_REMOUNT|unix.MS_RDONLY, "") },
			5*time.Second)
		if len(r.Unmounted)+len(r.ReadOnly)+len(r.Left) > 0 {
			attrs := []any{"unmounted", len(r.Unmounted)}
			if len(r.ReadOnly) > 0 {
				attrs = append(attrs, "read_only", strings.Join(r.ReadOnly, ","))
			}
			if len(r.Left) > 0 {
				attrs = append(attrs, "left", strings.Join(r.Left, "; "))
				log.Warn("filesystems not released: they may need a check at the next mount", attrs...)
			} else {
				log.Info("filesystems released", attrs...)
			}
		}
	}
	if !syncWithin(log, unix.Sync, 30*time.Second) {
		log.Warn("sync did not finish in 30 s: going on (a device or server no longer answers; its unwritten data is lost)")
	}
	// The lines above reach the consoles that take output before the
	// machine goes; one that takes none is not waited for.
	console.Flush(2 * time.Second)
	if err := unix.Reboot(cmd); err != nil {
		log.Error("reboot failed", "action", name, "reason", err.Error())
	}
}

// reopenConsole gives PID 1 a stdin, stdout and stderr on /dev/console when
// the kernel could not (an initramfs without a /dev/console node, or no
// console device at its start): once devtmpfs is mounted the node exists.
// The kernel then left fds 0-2 closed, and the Go runtime opened /dev/null
// on them before main (it throws if it cannot: the initramfs holds
// /dev/null for it), so fd 1 on /dev/null is what "no console" looks like.
func reopenConsole() {
	if !noConsole(1) {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for i := 0; i <= 2; i++ {
		_ = unix.Dup2(fd, i)
	}
	if fd > 2 {
		unix.Close(fd)
	}
}

// noConsole reports whether fd is closed or on /dev/null (character device
// 1:3).
func noConsole(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return true
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3
}
