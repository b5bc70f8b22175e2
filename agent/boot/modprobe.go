package boot

import (
	"context"
	"errors"
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

// modprobeArgs is a modprobe command line, parsed.
type modprobeArgs struct {
	quiet, verbose, all, useBlacklist, syslog, dryRun, firstTime, ignoreInstall bool
	showDepends, resolveAlias, help, version                                    bool
	names                                                                       []string // modules or aliases
	params                                                                      string   // for names[0], without -a
}

// modprobeOption is one of kmod's modprobe options: its short letter (0:
// long only), long name, whether it takes an argument, and what it does
// here (nil: not supported, with why).
type modprobeOption struct {
	short       byte
	long        string
	arg         bool
	set         func(*modprobeArgs)
	unsupported string
}

var modprobeOptions = []modprobeOption{
	{'a', "all", false, func(a *modprobeArgs) { a.all = true }, ""},
	{'q', "quiet", false, func(a *modprobeArgs) { a.quiet = true }, ""},
	{'v', "verbose", false, func(a *modprobeArgs) { a.verbose = true }, ""},
	{'b', "use-blacklist", false, func(a *modprobeArgs) { a.useBlacklist = true }, ""},
	{'s', "syslog", false, func(a *modprobeArgs) { a.syslog = true }, ""},
	{'n', "dry-run", false, func(a *modprobeArgs) { a.dryRun = true }, ""},
	{'n', "show", false, func(a *modprobeArgs) { a.dryRun = true }, ""},
	{'i', "ignore-install", false, func(a *modprobeArgs) { a.ignoreInstall = true }, ""},
	{'i', "ignore-remove", false, func(a *modprobeArgs) { a.ignoreInstall = true }, ""},
	{'D', "show-depends", false, func(a *modprobeArgs) { a.showDepends, a.dryRun = true, true }, ""},
	{'R', "resolve-alias", false, func(a *modprobeArgs) { a.resolveAlias = true }, ""},
	{'h', "help", false, func(a *modprobeArgs) { a.help = true }, ""},
	{'V', "version", false, func(a *modprobeArgs) { a.version = true }, ""},
	{0, "first-time", false, func(a *modprobeArgs) { a.firstTime = true }, ""},
	{'r', "remove", false, nil, "removing modules is not supported: the etoile agent never unloads a module (reboot without it, or blacklist it in modprobe.d)"},
	{0, "remove-dependencies", false, nil, "removing modules is not supported: the etoile agent never unloads a module"},
	{0, "remove-holders", false, nil, "removing modules is not supported: the etoile agent never unloads a module"},
	{'w', "wait", true, nil, "removing modules is not supported: the etoile agent never unloads a module"},
	{'f', "force", false, nil, "forcing a module past its version checks is not supported: build the module for this kernel"},
	{0, "force-modversion", false, nil, "forcing a module past its version checks is not supported: build the module for this kernel"},
	{0, "force-vermagic", false, nil, "forcing a module past its version checks is not supported: build the module for this kernel"},
	{'c', "showconfig", false, nil, "showing the configuration is not supported: read /etc/modprobe.d and /lib/modules/$(uname -r)"},
	{'c', "show-config", false, nil, "showing the configuration is not supported: read /etc/modprobe.d and /lib/modules/$(uname -r)"},
	{0, "show-modversions", false, nil, "not supported by the etoile agent's modprobe"},
	{0, "dump-modversions", false, nil, "not supported by the etoile agent's modprobe"},
	{0, "show-exports", false, nil, "not supported by the etoile agent's modprobe"},
	{'C', "config", true, nil, "another configuration is not supported: the agent reads the modprobe.d folders"},
	{'d', "dirname", true, nil, "another root is not supported: the agent loads from /lib/modules/$(uname -r)"},
	{'S', "set-version", true, nil, "another kernel version is not supported: the agent loads for the running kernel"},
}

// modprobeUsage is the usage line.
const modprobeUsage = "usage: modprobe [-q] [-v] [-b] [-i] [-n] [-s] [--first-time] MODULE [PARAM=VALUE…]\n" +
	"       modprobe -a [-q] [-v] [-b] [-i] [-n] [-s] [--first-time] MODULE…\n" +
	"       modprobe -R MODULE…   (the modules a name resolves to)\n" +
	"       modprobe -D MODULE    (the modules it would load)"

// parseModprobeArgs parses a modprobe command line as kmod's getopt_long
// does: options anywhere (libxtables runs `modprobe ip_tables -q`), short
// ones grouped (-qb), long ones by a unique prefix, "--" ending them. Without
// -a the first operand is the module and the others its parameters.
func parseModprobeArgs(args []string) (modprobeArgs, error) {
	var a modprobeArgs
	var operands []string
	apply := func(o modprobeOption, name string) error {
		if o.set == nil {
			return fmt.Errorf("modprobe %s: %s", name, o.unsupported)
		}
		o.set(&a)
		return nil
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			operands = append(operands, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(arg, "--"):
			name, _, hasValue := strings.Cut(arg[2:], "=")
			var match []modprobeOption
			for _, o := range modprobeOptions {
				if o.long == name {
					match = []modprobeOption{o}
					break
				}
				if strings.HasPrefix(o.long, name) {
					match = append(match, o)
				}
			}
			if len(match) != 1 {
				if len(match) > 1 {
					return a, fmt.Errorf("modprobe: option --%s is ambiguous (%s)\n%s", name, longNames(match), modprobeUsage)
				}
				return a, fmt.Errorf("modprobe: unknown option --%s\n%s", name, modprobeUsage)
			}
			o := match[0]
			if o.arg && !hasValue {
				i++ // its argument: an error follows anyway
			} else if !o.arg && hasValue {
				return a, fmt.Errorf("modprobe: option --%s takes no value", o.long)
			}
			if err := apply(o, "--"+o.long); err != nil {
				return a, err
			}
		case len(arg) > 1 && arg[0] == '-':
			for j := 1; j < len(arg); j++ {
				var o *modprobeOption
				for k := range modprobeOptions {
					if modprobeOptions[k].short == arg[j] {
						o = &modprobeOptions[k]
						break
					}
				}
				if o == nil {
					return a, fmt.Errorf("modprobe: unknown option -%c (in %q)\n%s", arg[j], arg, modprobeUsage)
				}
				if err := apply(*o, "-"+string(arg[j])); err != nil {
					return a, err
				}
			}
		default:
			operands = append(operands, arg)
		}
	}
	if a.all || a.resolveAlias {
		a.names = operands
		return a, nil
	}
	if len(operands) > 0 {
		a.names = operands[:1]
		var ps []string
		for _, p := range operands[1:] {
			// A value with spaces is quoted for the kernel, as kmod does.
			if k, v, ok := strings.Cut(p, "="); ok && strings.ContainsAny(v, " \t") && !strings.HasPrefix(v, `"`) && !strings.HasPrefix(v, "'") {
				p = k + `="` + v + `"`
			}
			ps = append(ps, p)
		}
		a.params = strings.Join(ps, " ")
	}
	return a, nil
}

func longNames(opts []modprobeOption) string {
	var out []string
	for _, o := range opts {
		out = append(out, "--"+o.long)
	}
	return strings.Join(out, ", ")
}

// Modprobe is the agent's modprobe(8), run when the agent is called as
// "modprobe" (the kernel runs `/sbin/modprobe -q -- fs-iso9660`; K3s runs
// `modprobe -- br_netfilter`, iptables `modprobe ip_tables -q`). It loads
// the named module or alias with its dependencies and soft dependencies,
// and parameters given after the name; with -a, each name given. It fails
// (exit status 1) if a name is unknown or its module did not load, as
// kmod's does; -q keeps it silent. The system's modprobe.d applies:
// options, blacklist (for aliases; -b for names too), and install commands
// false and true.
func Modprobe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return modprobe(ctx, args, stdout, stderr, modprobeEnv{})
}

// modprobeEnv is where modprobe finds things (tests point it elsewhere);
// the zero value is the machine's.
type modprobeEnv struct {
	root    string      // prefix of /lib/modules, /sys, /proc/cmdline and modprobe.d's folders ("": /)
	release string      // the kernel release ("": uname's)
	kmsg    string      // the kernel log ("": /dev/kmsg)
	loader  kmod.Loader // nil: init_module
}

func (e modprobeEnv) path(p string) string { return filepath.Join("/", e.root, p) }

func modprobe(ctx context.Context, args []string, stdout, stderr io.Writer, env modprobeEnv) error {
	o, err := parseModprobeArgs(args)
	if err != nil {
		return err
	}
	switch {
	case o.help:
		fmt.Fprintln(stdout, modprobeUsage)
		return nil
	case o.version:
		fmt.Fprintln(stdout, "etoile-agent modprobe (kmod-compatible)")
		return nil
	case len(o.names) == 0:
		return errors.New("modprobe: no module named\n" + modprobeUsage)
	}
	release := env.release
	if release == "" {
		var u unix.Utsname
		_ = unix.Uname(&u)
		release = unix.ByteSliceToString(u.Release[:])
	}
	rel, err := sysimage.KernelRelease(env.path("/lib/modules"), release)
	if err != nil {
		return err
	}
	logw := io.Discard
	if o.verbose {
		logw = stderr
	}
	var loader kmod.Loader = kmod.SyscallLoader{}
	if env.loader != nil {
		loader = env.loader
	}
	if o.dryRun {
		loader = &showLoader{w: stdout, show: o.verbose || o.showDepends, all: o.showDepends, sys: env.path("/sys")}
	}
	cold, err := kmod.NewColdplug(env.path("/sys"), env.path("/lib/modules/"+rel), loader, NewLogger(logw, slog.LevelInfo))
	if err != nil {
		return err
	}
	if o.resolveAlias {
		var missing []string
		for _, n := range o.names {
			mods := cold.Resolve(n)
			if len(mods) == 0 {
				missing = append(missing, n)
			}
			for _, m := range mods {
				fmt.Fprintln(stdout, m)
			}
		}
		if len(missing) > 0 {
			if o.quiet {
				return errQuiet
			}
			return fmt.Errorf("modprobe: module %s not found in /lib/modules/%s", strings.Join(missing, ", "), rel)
		}
		return nil
	}
	// Parameters given on the kernel command line (usb-storage.delay_use=0).
	cold.Defaults = kmod.DefaultParams
	if b, err := os.ReadFile(env.path("/proc/cmdline")); err == nil {
		cold.Params = kmod.ModuleParams(cmdline.Parse(string(b)).Raw)
	}
	// …after the options of the system's modprobe.d files (a driver's
	// options nvidia NVreg_…), as kmod's modprobe has them; its blacklist,
	// aliases, softdeps and install commands false and true apply too.
	if conf, err := kmod.ReadModprobeD(env.path("/")); err == nil {
		cold.AddModprobeConf(conf)
	}
	// The kernel runs modprobe with no console: tell its log what happened,
	// so a driver the kernel asked for shows up in dmesg (a missing one at
	// debug level: the kernel routinely asks for optional helpers that are
	// not there; a failed load as a warning).
	kmsgPath := env.kmsg
	if kmsgPath == "" {
		kmsgPath = "/dev/kmsg"
	}
	kmsg, _ := os.OpenFile(kmsgPath, os.O_WRONLY, 0)
	if kmsg != nil {
		defer kmsg.Close()
	}
	note := func(level int, format string, a ...any) {
		if kmsg != nil {
			fmt.Fprintf(kmsg, "<%d>etoile-agent modprobe: "+format+"\n", append([]any{level}, a...)...)
		}
	}
	var missing []string
	var failed []error
	for _, n := range o.names {
		before := cold.LoadCount()
		err := cold.ModprobeWith(ctx, n, kmod.ProbeOptions{Params: o.params, FirstTime: o.firstTime,
			UseBlacklist: o.useBlacklist, IgnoreInstall: o.ignoreInstall})
		var nf *kmod.NotFoundError
		switch {
		case errors.As(err, &nf):
			missing = append(missing, n)
			note(7, "%s not found", n)
		case err != nil:
			failed = append(failed, fmt.Errorf("modprobe %s: %w", n, err))
			note(4, "%s: %v", n, err)
		default:
			note(7, "%s: %d module files loaded (0: built in, already loaded, blacklisted or set aside by modprobe.d)", n, cold.LoadCount()-before)
		}
	}
	if len(missing) > 0 {
		failed = append([]error{fmt.Errorf("modprobe: module %s not found in /lib/modules/%s", strings.Join(missing, ", "), rel)}, failed...)
	}
	if len(failed) == 0 {
		return nil
	}
	// -q: only the exit status says it; -s: only the kernel's log (above).
	if o.quiet || o.syslog {
		return errQuiet
	}
	return errors.Join(failed...)
}

// showLoader is modprobe -n's: it loads nothing, and with -v (or -D) says
// what it would load, as kmod does ("insmod PATH PARAMS"). Modules the
// kernel has already are left out, except with -D.
type showLoader struct {
	w         io.Writer
	show, all bool
	sys       string // "/sys"
}

func (l *showLoader) Load(name, path string) error { return l.LoadParams(name, path, "") }

func (l *showLoader) LoadParams(name, path, params string) error {
	if !l.all {
		if _, err := os.Stat(filepath.Join(l.sys, "module", name, "initstate")); err == nil {
			return nil
		}
	}
	if l.show {
		fmt.Fprintln(l.w, strings.TrimSpace("insmod "+path+" "+params))
	}
	return nil
}

// errQuiet fails without a message (modprobe -q).
var errQuiet = errors.New("")

// IsQuiet reports whether err must be reported by exit status only.
func IsQuiet(err error) bool { return errors.Is(err, errQuiet) }
