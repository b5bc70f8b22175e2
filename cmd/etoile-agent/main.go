// Command etoile-agent is the node's program. Installed as /init in the
// initramfs it boots the machine as PID 1; run by a person it offers
// subcommands. Everything happens in run; only main exits, and never as PID 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/etoile-os/etoile/agent"
	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/boot"
	"github.com/etoile-os/etoile/agent/config/configcli"
	"github.com/etoile-os/etoile/agent/console"
	"github.com/etoile-os/etoile/agent/k3s"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/timesync"
	"golang.org/x/sys/unix"
)

func main() {
	if bootsMachine(os.Getpid(), os.Args) {
		pid1()
		return // unreachable: pid1 never returns
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	args := os.Args[1:]
	if filepath.Base(os.Args[0]) == "modprobe" {
		// Called through the /sbin/modprobe link (by the kernel, K3s, iptables).
		args = append([]string{"modprobe"}, args...)
	}
	if sig, ok := boot.PowerSignal(filepath.Base(os.Args[0])); ok {
		// Called through /sbin/poweroff, reboot or halt: by the kernel for
		// an orderly shutdown, or by hand. PID 1, the agent, is told as by
		// kill, and stops K3s and everything else first. Options (-f, -n,
		// -d N…) are accepted and not followed: the agent's shutdown is the
		// only one.
		stop()
		if err := unix.Kill(1, sig); err != nil {
			fmt.Fprintf(os.Stderr, "%s: telling PID 1 (the etoile agent): %v\n", filepath.Base(os.Args[0]), err)
			os.Exit(1)
		}
		return
	}
	err := run(ctx, args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ue usageError
		var qe quietError
		if !errors.As(err, &ue) && !errors.As(err, &qe) && !boot.IsQuiet(err) {
			fmt.Fprintln(os.Stderr, "etoile-agent:", err)
		}
		os.Exit(exitCode(err))
	}
}

// bootsMachine reports whether the agent is to boot the machine: as PID 1,
// run as the kernel runs it (/init, whatever bare boot arguments the kernel
// passes on), or with no arguments at all. Anything else runs as a command
// whatever the PID, a mistyped one too (run answers "unknown command"): as
// the first process of a PID namespace (a container's command, a Job,
// `unshare --pid --fork`) the agent must not hang as init, nor load
// modules and mount over the host's in a privileged container.
func bootsMachine(pid int, argv []string) bool {
	switch {
	case pid != 1:
		return false
	case len(argv) > 0 && argv[0] == "/init":
		return true
	case len(argv) > 1:
		return false
	case len(argv) == 1:
		// Through the /sbin links: modprobe, poweroff, reboot, halt.
		name := filepath.Base(argv[0])
		_, power := boot.PowerSignal(name)
		return name != "modprobe" && !power
	}
	return true
}

// The commands' exit statuses (the usage text lists them).
const (
	exitFailed      = 1 // the command failed: the agent could not do it, K3s did not start again, a file could not be read
	exitUsage       = 2 // a usage mistake: an unknown command or flag, a missing or extra argument
	exitUnreachable = 3 // no agent answers on the socket (not running, not root)
	exitRefused     = 4 // refused: an invalid machine config, a request the agent turns down (a second reboot)
)

// exitCode is the exit status for a command's error.
func exitCode(err error) int {
	var ue usageError
	var unreachable *api.UnreachableError
	var refused *api.StatusError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &unreachable):
		return exitUnreachable
	case errors.Is(err, configcli.ErrInvalid):
		return exitRefused
	case errors.As(err, &refused) && refused.Code >= 400 && refused.Code < 500:
		return exitRefused
	}
	return exitFailed
}

// quietError is a failure already said (the boot's error line): main
// prints nothing more, and exits 1.
type quietError struct{ error }

// pid1 boots the machine and then stays up for ever. A panic that escapes
// is caught and shown, and the agent keeps running: PID 1 exiting would
// panic the kernel and lose the message that says what went wrong.
func pid1() {
	sigs := boot.NotifySignals() // first: an early SIGTERM must not kill us
	if os.Getenv("PATH") == "" {
		// The kernel starts init with no PATH: what the agent runs
		// (nvidia-smi for the inventory) is looked for in the system's folders.
		_ = os.Setenv("PATH", k3s.SystemPath)
	}
	reaper := boot.NewReaper()
	var power <-chan boot.ACPIEvent
	// stop ends the services (K3s first) before a shutdown; set once they
	// run. After a panic it is still what a reboot calls: without it K3s's
	// supervisor, never told, restarts K3s when the shutdown's SIGTERM
	// ends it, and the new K3s holds its volumes through the unmounts.
	var stop func()
	defer func() {
		if r := recover(); r != nil {
			showPanic(r)
			// Still PID 1's job: reap, and reboot on Ctrl-Alt-Del. A
			// panic in there too is shown, and it starts again.
			for {
				stayUpAfterPanic(sigs, reaper, power, stop)
			}
		}
		for {
			time.Sleep(time.Hour)
		}
	}()
	// The boot allocates a few MB at most; collecting every 4 MB cost
	// about six collections before the ready line under emulation. The
	// usual pacing comes back once the machine is up.
	gcPercent := debug.SetGCPercent(800)
	// The agent's log goes into memory, for the local API's
	// /v1/logs?source=agent, and to the console.
	logs := logring.New(2000)
	var out io.Writer
	out, consoleOut = pid1Output(logs, os.Stdout)
	// A clock before the image's build time (a flat RTC battery) is set to
	// it before anything checks a certificate (etoile.config=https://…).
	behind := timesync.ApplyFloor(timesync.KernelClock{}, imageBuildTime(), boot.NewLogger(out, nil))
	svc := &services{agentLogs: logs, timeBehind: behind}
	// The kernel's ACPI events exist from its start; the button driver
	// that sends the presses loads with the other drivers.
	power = boot.WatchPowerButton(boot.NewLogger(out, nil))
	m := boot.New(boot.Options{Stdout: out, Echo: logs, Reaper: reaper, BeforeReady: svc.start})
	fmt.Fprintf(out, "etoile: agent starting version=%s commit=%s\n", agent.Version, agent.Commit)
	ctx, cancel := context.WithCancel(context.Background())
	stop = func() {
		cancel() // K3s gets SIGTERM and its time to stop before everything else
		svc.wait()
	}
	_, _ = m.Boot(ctx) // a failure is already on every console
	debug.SetGCPercent(gcPercent)
	var powerOff time.Duration
	if m.Params.PowerOff {
		powerOff = 2 * time.Second
	}
	boot.StayUp(context.Background(), m.Log(), sigs, reaper, powerOff, power, stop)
}

// consoleOut is PID 1's stdout, /dev/console, behind its queue
// (console.Queued): a console that takes no output (Scroll Lock, a serial
// line's flow control) must not hold PID 1's log, and with it the
// reaping, K3s's supervision and the shutdown.
var consoleOut io.Writer = os.Stdout

// pid1Output returns where PID 1's log goes, out: into ring first, where
// every line is kept whatever the console does, then to stdout's queue,
// which it returns too.
func pid1Output(ring io.Writer, stdout *os.File) (out, queued io.Writer) {
	queued = console.Queued(stdout)
	return io.MultiWriter(ring, queued), queued
}

// showPanic says on the console that PID 1 caught a panic, with its stack.
func showPanic(r any) {
	fmt.Fprintf(consoleOut, "etoile: error step=agent reason=%q fix=%q\n",
		fmt.Sprintf("internal error (panic): %v", r), "report this as a bug with the lines above")
	consoleOut.Write(debug.Stack())
}

// stayUpAfterPanic runs boot.StayUp after a panic ended the boot's own, with
// stop (nil when the services had not started); a panic in it is shown and
// it returns (after a second, not to spin), for the caller to run it again:
// PID 1 never exits.
func stayUpAfterPanic(sigs <-chan os.Signal, reaper *boot.Reaper, power <-chan boot.ACPIEvent, stop func()) {
	defer func() {
		if r := recover(); r != nil {
			showPanic(r)
			time.Sleep(time.Second)
		}
	}()
	boot.StayUp(context.Background(), boot.NewLogger(consoleOut, nil), sigs, reaper, 0, power, stop)
}

// usageError is a usage mistake; the usage text is already printed.
type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usageError{errors.New("no command")}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "agent":
		return runAgent(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "etoile-agent version: takes no arguments, got %q\n", rest)
			return usageError{errors.New("arguments given")}
		}
		fmt.Fprintf(stdout, "etoile-agent %s (commit %s)\n", agent.Version, agent.Commit)
		return nil
	case "modprobe":
		return boot.Modprobe(ctx, rest, stdout, stderr)
	case "inventory":
		return runInventory(ctx, rest, stdout, stderr)
	case "join":
		return runJoin(ctx, rest, stdout, stderr)
	case "config":
		return runConfig(ctx, rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "logs":
		return runLogs(ctx, rest, stdout, stderr)
	case "reboot", "poweroff":
		return runPower(ctx, cmd, rest, stdout, stderr)
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return nil
	default:
		fmt.Fprintf(stderr, "etoile-agent: unknown command %q\n\n", cmd)
		usage(stderr)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

// noArgs refuses arguments left after fs's flags: a command that takes
// none would otherwise ignore them (a folder given without --root, and the
// machine itself described). hint, when not "", says what was meant.
func noArgs(fs *flag.FlagSet, stderr io.Writer, cmd, hint string) error {
	if fs.NArg() == 0 {
		return nil
	}
	if hint != "" {
		hint = " (" + hint + ")"
	}
	fmt.Fprintf(stderr, "etoile-agent %s: takes no arguments, got %q%s\n\n", cmd, fs.Args(), hint)
	fs.Usage()
	return usageError{errors.New("arguments given")}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: etoile-agent <command> [flags]

As /init (PID 1) it boots the machine; these commands are for people and tests:
  agent --root DIR   run the boot sequence against DIR as the root (no VM needed)
  inventory          describe this machine's hardware
  modprobe NAME…     load kernel modules or aliases (also run as /sbin/modprobe)
  join               join this site to a constellation
  config             validate a machine config, print an example, apply one
  status [--json]    the running agent's status (boot, network, K3s)
  logs [-f] [-n N] [agent|k3s|kernel|syslog]
                     the running agent's log, K3s's output, the kernel's or syslog's
  reboot, poweroff   stop K3s cleanly, then reboot or power off the machine
  version            print the version

Exit status: 0 done; 1 failed (the agent could not do it, K3s did not start
again after config apply); 2 usage mistake; 3 no agent answers on the socket
(not running there, or not run as root); 4 refused (an invalid machine config,
a request the agent turns down, such as a second reboot while shutting down).
`)
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", "", "folder to use as the machine's root (required outside PID 1)")
	scale := fs.Float64("wait-scale", 0.1, "multiplies the waits for hardware (devices under DIR never appear late)")
	release := fs.String("kernel-release", "", "kernel release to look for under DIR/lib/modules (default: the only one there)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if err := noArgs(fs, stderr, "agent", "the machine's root is given with --root DIR"); err != nil {
		return err
	}
	if *root == "" {
		fmt.Fprint(stderr, "etoile-agent agent: --root DIR is required (only PID 1 boots the machine itself)\n\n")
		fs.Usage()
		return usageError{errors.New("agent needs --root DIR")}
	}
	if st, err := os.Stat(*root); err != nil || !st.IsDir() {
		return fmt.Errorf("--root %s: not a folder", *root)
	}
	m := boot.New(boot.Options{Root: *root, Stdout: stdout, WaitScale: *scale, KernelRelease: *release})
	if _, err := m.Boot(ctx); err != nil {
		// The error line is already printed; the exit status says it failed.
		return quietError{err}
	}
	return nil
}
