package boot

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/etoile-os/etoile/agent/cmdline"
	"github.com/etoile-os/etoile/agent/kmod"
	"github.com/etoile-os/etoile/agent/sysimage"
	"golang.org/x/sys/unix"
)

// AgentCommands are the programs the agent answers as when called by their
// name, linked in sbin to it: modprobe, which the kernel runs to load what
// it lacks (a filesystem on mount, a cipher, a netfilter match), and
// poweroff, reboot and halt, which the kernel runs itself for an orderly
// shutdown (orderly_poweroff: a critical temperature, a hypervisor's
// shutdown request through Xen) — without them it powers off at once, with
// no K3s stop, no pod termination and no unmount. There is no kmod or
// init system in the image: the agent is both.
var AgentCommands = []string{"modprobe", "poweroff", "reboot", "halt"}

// installAgentCommands links sbin/NAME (sbin the folder) to the agent for
// each of AgentCommands, unless something is there already (a system image
// may bring its own kmod).
func installAgentCommands(sbin, agentPath string, log *slog.Logger) {
	if err := os.MkdirAll(sbin, 0o755); err != nil {
		log.Warn("installing the agent's commands failed", "folder", sbin, "reason", err.Error())
		return
	}
	for _, name := range AgentCommands {
		path := filepath.Join(sbin, name)
		if _, err := os.Lstat(path); err == nil {
			continue
		}
		if err := os.Symlink(agentPath, path); err != nil {
			log.Warn("installing "+name+" failed", "path", path, "reason", err.Error())
		}
	}
}

// PowerSignal is the signal a command the kernel runs for an orderly
// shutdown (poweroff, reboot, halt: AgentCommands) sends PID 1, the agent,
// which then stops K3s and everything else first (actionFor).
func PowerSignal(name string) (unix.Signal, bool) {
	switch name {
	case "poweroff":
		return unix.SIGUSR2, true
	case "reboot":
		return unix.SIGTERM, true
	case "halt":
		return unix.SIGUSR1, true
	}
	return 0, false
}

// Modprobe is the agent's modprobe(8), run when the agent is called as
// "modprobe" (the kernel runs `/sbin/modprobe -q -- fs-iso9660`; K3s and
// iptables run `modprobe br_netfilter`). It loads each named module or alias
// with its dependencies and soft dependencies. Options of kmod's modprobe
// that make no sense here are accepted and ignored.
func Modprobe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("modprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("q", false, "say nothing when a module is missing")
	fs.Bool("a", false, "load every name given (always the case here)")
	fs.Bool("b", false, "ignored (modprobe.d's blacklist is not applied)")
	verbose := fs.Bool("v", false, "log each module loaded")
	remove := fs.Bool("r", false, "remove modules (not supported)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *remove {
		return errors.New("modprobe -r is not supported by etoile-agent")
	}
	if fs.NArg() == 0 {
		return errors.New("usage: modprobe [-q] [-v] module…")
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	rel, err := sysimage.KernelRelease("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	if err != nil {
		return err
	}
	logw := io.Discard
	if *verbose {
		logw = stderr
	}
	cold, err := kmod.NewColdplug("/sys", "/lib/modules/"+rel, kmod.SyscallLoader{}, NewLogger(logw, slog.LevelInfo))
	if err != nil {
		return err
	}
	// Parameters given on the kernel command line (usb-storage.delay_use=0).
	cold.Defaults = kmod.DefaultParams
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		cold.Params = kmod.ModuleParams(cmdline.Parse(string(b)).Raw)
	}
	// …after the options of the system's modprobe.d files (a driver's
	// options nvidia NVreg_…), as kmod's modprobe has them.
	if conf, err := kmod.ReadModprobeD("/"); err == nil {
		cold.AddConfigParams(conf.Options)
	}
	// The kernel runs modprobe with no console: tell its log what happened,
	// so a driver the kernel asked for shows up in dmesg (at debug level:
	// the kernel routinely asks for optional helpers that are not there).
	kmsg, _ := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if kmsg != nil {
		defer kmsg.Close()
	}
	note := func(format string, a ...any) {
		if kmsg != nil {
			fmt.Fprintf(kmsg, "<7>etoile-agent modprobe: "+format+"\n", a...)
		}
	}
	var missing []string
	names := fs.Args()
	// kmod's modprobe takes one module and its parameters unless -a; the
	// kernel always calls it with one name. Parameters (k=v) are ignored.
	for _, n := range names {
		if strings.Contains(n, "=") {
			continue
		}
		if err := cold.Modprobe(ctx, n); err != nil {
			missing = append(missing, n)
			note("%s not found", n)
			continue
		}
		note("%s: %d module files loaded (0: built in or already loaded)", n, cold.LoadCount())
	}
	if len(missing) > 0 {
		if *quiet {
			return errQuiet
		}
		return fmt.Errorf("modprobe: module %s not found in /lib/modules/%s", strings.Join(missing, ", "), rel)
	}
	return nil
}

// errQuiet fails without a message (modprobe -q).
var errQuiet = errors.New("")

// IsQuiet reports whether err must be reported by exit status only.
func IsQuiet(err error) bool { return errors.Is(err, errQuiet) }
