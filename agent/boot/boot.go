package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/etoile-os/etoile/agent"
	"github.com/etoile-os/etoile/agent/cmdline"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/console"
	"github.com/etoile-os/etoile/agent/dm"
	"github.com/etoile-os/etoile/agent/efivar"
	"github.com/etoile-os/etoile/agent/kmod"
	"github.com/etoile-os/etoile/agent/kmsg"
	"github.com/etoile-os/etoile/agent/mount"
	"github.com/etoile-os/etoile/agent/network"
	"github.com/etoile-os/etoile/agent/nvdev"
	"github.com/etoile-os/etoile/agent/safego"
	"github.com/etoile-os/etoile/agent/sysimage"
	"github.com/etoile-os/etoile/internal/devread"
	"golang.org/x/sys/unix"
)

// Fixed paths of the running system. They are documented in the README's
// boot section; the image build writes ModuleListFile.
const (
	ModuleListFile = "/etc/etoile/modules"
	MediaDir       = "/run/etoile/media"   // the ISO, read-only
	SystemDir      = "/run/etoile/system"  // the squashfs, read-only
	OverlayDir     = "/run/etoile/overlay" // tmpfs holding the overlay's upper and work
	HTTPImage      = "/run/etoile/system.sqfs"
	NewRoot        = "/sysroot"
	AgentPath      = "/usr/bin/etoile-agent"
)

// Options configure a boot. The zero value of each seam means "the real
// machine"; Root != "" selects recorders. Mounts are always described with
// the machine's paths (/run/etoile/system), also under --root, where they
// are only recorded; what is read (sysfs, cmdline, modules, devices) is read
// under Root.
type Options struct {
	// Root is "" on the real machine; otherwise the folder used as the root.
	Root string
	// Log receives the step lines; built from Stdout when nil.
	Log *slog.Logger
	// Echo, when set, also receives every line printed on all consoles
	// (the ready and error lines), which bypass Stdout: the agent's log
	// kept for the local API.
	Echo io.Writer
	// Stdout is where log lines go (the console when PID 1).
	Stdout io.Writer
	// Loader, Mounter and Clock default to the syscalls (Root == "") or
	// recorders (Root != "").
	Loader  kmod.Loader
	Mounter mount.Mounter
	Clock   Clock
	// HTTP downloads the netboot system image.
	HTTP *http.Client
	// KernelRelease is uname -r; read from the kernel when empty.
	KernelRelease string
	// WaitScale multiplies every wait for hardware (slow emulators).
	WaitScale float64
	// BeforeReady runs once the boot steps are done, before the ready line
	// (the machine config, K3s and the local API start there); the pairs it
	// returns ("k3s=running") end the ready line. The late modules and the
	// entropy wait have started in the background by then: it may wait on
	// ModulesLoaded and EntropyReady.
	BeforeReady func(ctx context.Context, m *Machine) []string
	// Reaper reaps orphans as PID 1; whatever the agent starts and waits
	// for itself (K3s) goes through Reaper.Start. A new one when nil.
	Reaper *Reaper
}

// Machine is what the steps learn and share as the boot goes on.
type Machine struct {
	opts   Options
	log    *slog.Logger
	logOut *consoleLog
	Params cmdline.Params
	Cold   *kmod.Coldplug
	Source string // sysimage.Source*
	Slot   string // "a", "b" or ""
	Device string // block device holding the ISO or the slot's squashfs
	// BootDisk is Device's whole disk ("sda" for sda2): the boot disk's own
	// ESP and STATE partitions are the ones to read.
	BootDisk string
	Image    string // file holding the squashfs (ISO and HTTP sources)

	loaderOnce sync.Once
	loaderUUID string
	// loaderMissing is LoaderDevicePartUUID while the disk it names has not
	// appeared but devices holding the system image on other disks have
	// (names in loaderOthers): the medium's wait then fails naming them.
	loaderMissing string
	loaderOthers  string
	testHookFind  func() // tests: called while the boot disk is waited for
	bootPCIDir    string // sysfs folder of the controller the firmware booted from (BootCurrent), "" unknown
	// bootCtlDone is closed once the boot controller has been looked for
	// (efivarfs mounted, bootPCIDir set): under UEFI that runs beside the
	// first driver loads, and the medium's choice waits for it. Nil when
	// the drivers' step never got there: nothing to wait for.
	bootCtlDone      chan struct{}
	warnedSameImage  bool
	warnedLoaderLate bool            // the boot variables' late read was warned about
	Network          *network.Result // read with NetworkResult once the boot is done
	netMu            sync.Mutex
	// etcMu orders the writes of the network's files in /etc (resolv.conf,
	// hostname): the boot's, a machine config's, a late lease's.
	etcMu sync.Mutex
	// onAddress is told of each address that came, changed or went after
	// the network step (SetOnAddressChange).
	onAddress func(network.Lease)

	fixed []string // the image's module list, loaded after ready
	// bootMods is closed once BootModules are loaded (nil: never started).
	bootMods chan struct{}
	// netDone is closed once the network started in the background is up
	// (nil: not started), with its result in netRes, netErr.
	netDone chan struct{}
	netRes  network.Result
	netErr  error
	// hotplug is true once the uevent watcher loads drivers for new
	// devices; devEvents gets a token on every block device event.
	hotplug     atomic.Bool
	devEvents   chan struct{}
	modulesDone chan struct{}
	entropyDone chan struct{}
	// coldplugDone is closed once the hardware drivers are loaded (or
	// were never started).
	coldplugDone chan struct{}
	// imageDrivers is closed once the drivers the system image's modules
	// add (an extension's NIC or GPU driver) are loaded after the switch,
	// or once it is known there are none (or the boot stopped before).
	imageDrivers     chan struct{}
	imageDriversOnce sync.Once
	// imageSettled is closed once those drivers have really finished
	// loading: after imageDrivers, when its wait stopped at its bound
	// (lateScan) and they went on loading.
	imageSettled     chan struct{}
	imageSettledOnce sync.Once
	lateScan         atomic.Bool
	nvDevMu          sync.Mutex // one nvidiaDeviceFiles at a time
	// imageIndexed is closed once the module index knows the system
	// image's modules (or it is known there are none): their drivers may
	// still be loading.
	imageIndexed     chan struct{}
	imageIndexedOnce sync.Once
	// cfgPre looks for the machine config's volumes from the moment the
	// medium is found; switchMu keeps its mounts out of the root's switch.
	cfgPre   configPrefetch
	cfgLook  lookLog // FindConfigVolume's last findings, logged when they change
	switchMu sync.Mutex
	// sysAtStart is the process's system CPU time when New ran.
	sysAtStart time.Duration
}

// Step is one named boot step.
type Step struct {
	Name string
	Run  func(ctx context.Context, m *Machine) error
	// Optional steps log a warning on failure and the boot goes on.
	Optional bool
	// Fix is the advice shown when the step fails without advice of its own.
	Fix string
}

// Early are the steps that read what the rest of the boot depends on.
func Early() []Step {
	return []Step{
		{Name: "mount-api", Run: mountAPI, Fix: "the kernel lacks proc, sysfs, devtmpfs, tmpfs or cgroup2 support: boot the kernel the image was built with"},
		{Name: "cmdline", Run: readCmdline, Fix: "check the kernel command line in the bootloader entry"},
	}
}

// Sequence is the rest of the boot order, chosen by the kernel arguments.
// The network comes before the system image when the image is downloaded.
// Otherwise the drivers step starts it in the background, while the boot
// medium is looked for and mounted, and the network step after the switch
// into the image waits for it and writes resolv.conf and the hostname
// into the new root.
func Sequence(p cmdline.Params) []Step {
	steps := []Step{{Name: "drivers", Run: loadDrivers, Optional: true}}
	net := Step{Name: "network", Run: bringUpNetwork, Optional: true}
	if p.SystemURL != "" {
		steps = append(steps, net)
	} else {
		net.Run = awaitNetwork
	}
	steps = append(steps,
		Step{Name: "find-image", Run: findImage},
		Step{Name: "mount-system", Run: mountSystem, Fix: "the system image is damaged or was built for another kernel: rebuild the image, or write the medium again"},
		Step{Name: "switch-root", Run: switchRoot, Fix: "report this as a bug with the lines above"},
	)
	if p.SystemURL == "" {
		steps = append(steps, net)
	}
	return steps
}

// Steps lists every step for the parameters, in order (for documentation and tests).
func Steps(p cmdline.Params) []Step { return append(Early(), Sequence(p)...) }

// path maps an absolute path of the machine into the root.
func (m *Machine) path(p string) string {
	if m.opts.Root == "" {
		return p
	}
	return filepath.Join(m.opts.Root, p)
}

func (m *Machine) real() bool { return m.opts.Root == "" }

func (m *Machine) scale(d time.Duration) time.Duration {
	if m.opts.WaitScale > 0 {
		return time.Duration(float64(d) * m.opts.WaitScale)
	}
	return d
}

// New prepares a boot, filling the seams Options left empty.
func New(opts Options) *Machine {
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	cl := &consoleLog{out: opts.Stdout}
	if opts.Log == nil {
		opts.Log = NewLogger(cl, slog.LevelInfo)
	}
	if opts.Clock == nil {
		opts.Clock = BootClock{}
	}
	if opts.Loader == nil {
		if opts.Root == "" {
			opts.Loader = kmod.SyscallLoader{}
		} else {
			opts.Loader = &kmod.Recorder{}
		}
	}
	if opts.Mounter == nil {
		if opts.Root == "" {
			opts.Mounter = mount.Linux{}
		} else {
			opts.Mounter = &mount.Recorder{}
		}
	}
	if opts.Reaper == nil {
		opts.Reaper = NewReaper()
	}
	if opts.HTTP == nil {
		// No overall time-out: the download is bounded by its progress
		// (sysimage.Limits), and a large image over a slow link arrives.
		opts.HTTP = &http.Client{}
	}
	if opts.KernelRelease == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err == nil {
			opts.KernelRelease = unix.ByteSliceToString(u.Release[:])
		}
	}
	m := &Machine{opts: opts, log: opts.Log, logOut: cl, modulesDone: make(chan struct{}), entropyDone: make(chan struct{}), coldplugDone: make(chan struct{}),
		imageDrivers: make(chan struct{}), imageSettled: make(chan struct{}), imageIndexed: make(chan struct{}), devEvents: make(chan struct{}, 1)}
	if opts.Root == "" {
		cl.all = m.broadcast
	}
	// A device's read while the medium or the config is looked for is
	// bounded: a failing disk is skipped, named once.
	sysimage.DeviceReads.Set(m.scale(devread.DefaultWait), func(dev, what string, wait time.Duration) {
		m.log.Warn("a device did not answer a read in time: it is skipped", "device", dev, "reading", what, "waited", wait,
			"fix", "a failing disk, drive or medium? the kernel log (etoile.debug, dmesg) says more; remove or replace it")
	})
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		m.sysAtStart = time.Duration(ru.Stime.Nano())
	}
	return m
}

// consoleLog is where the boot's log lines go: the kernel's /dev/console
// (the last console= of the command line, often the serial port), and, for
// the lines a technician at the machine must see — warnings, errors and
// what the boot waits for — every active console (the screen too).
type consoleLog struct {
	out io.Writer
	all func(line string) // nil: out only (under --root)
}

func (c *consoleLog) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	if c.all != nil && (strings.HasPrefix(line, "etoile: warning") || strings.HasPrefix(line, "etoile: error") ||
		strings.HasPrefix(line, "etoile: waiting")) {
		c.all(line) // every console, /dev/console's among them
		return len(p), nil
	}
	return c.out.Write(p)
}

// EntropyReady is closed once the kernel's random number generator is
// seeded (K3s needs it for its keys).
func (m *Machine) EntropyReady() <-chan struct{} { return m.entropyDone }

// waitEntropy makes the kernel's random number generator ready, after the
// ready line. A blocking getrandom(2) makes the kernel gather timer jitter
// until it is seeded; without it, a VM with no RDRAND and no virtio-rng
// gathers entropy from interrupts alone, which took minutes under QEMU TCG.
// Real machines have RDRAND and are seeded at once. Nothing in the boot
// needs it (the DHCP client draws its transaction ids with GRND_INSECURE),
// and the jitter gathering spins the CPU the boot steps need, so it waits
// until they are done.
func (m *Machine) waitEntropy() {
	defer close(m.entropyDone)
	defer safego.Recover(m.log, "waiting for the random number generator")
	start := time.Now()
	var b [16]byte
	if _, err := unix.Getrandom(b[:], 0); err != nil {
		m.log.Warn("random number generator unavailable", "reason", err.Error())
		return
	}
	if took := time.Since(start); took > 10*time.Millisecond {
		m.log.Info("entropy ready", "t", Seconds(m.opts.Clock.SinceBoot()), "took", kmod.Round(took))
	}
}

// Broadcast prints line once on every console.
func (m *Machine) Broadcast(line string) { m.broadcast(line) }

// ReadyLine is the ready line as the boot knows it (without the services' pairs).
func (m *Machine) ReadyLine() string { return m.ready().String() }

// MediaDirs lists the folders where the boot medium is mounted (the ISO,
// which may hold /etoile/config.yaml); none for disk and HTTP boots.
func (m *Machine) MediaDirs() []string {
	if m.Source == sysimage.SourceISO {
		return []string{MediaDir}
	}
	return nil
}

// Reaper is the machine's reaper, for the services started after the boot.
func (m *Machine) Reaper() *Reaper { return m.opts.Reaper }

// Log is the machine's logger (at debug level once etoile.debug is read).
func (m *Machine) Log() *slog.Logger { return m.log }

// Boot runs Early, then Sequence for the kernel arguments Early read, and
// prints the ready line on every console. A failing step stops the boot: its
// error line is printed on every console and returned as a *StepError.
func (m *Machine) Boot(ctx context.Context) (Ready, error) {
	if err := m.Run(ctx, Early()); err != nil {
		m.imageDriversLoaded()
		return Ready{}, err
	}
	if err := m.Run(ctx, Sequence(m.Params)); err != nil {
		m.imageDriversLoaded()
		return Ready{}, err
	}
	var extra []string
	if m.opts.BeforeReady != nil {
		func() {
			defer func() {
				if r := recover(); r != nil {
					safego.Report(m.log, "starting the services", r)
				}
			}()
			extra = m.opts.BeforeReady(ctx, m)
		}()
	}
	// After the services: the machine config may have set the addresses.
	ready := m.ready()
	ready.Extra = extra
	readyAttrs := []any{"step", "ready", "t", Seconds(m.opts.Clock.SinceBoot())}
	if m.real() {
		// The CPU the agent used so far: its own (user) and the kernel's on
		// its behalf (system: module loads, mounts, reads), counted from New
		// because PID 1's system time includes the kernel's own start (its
		// init thread is PID 1 until it runs /init).
		var ru unix.Rusage
		if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
			readyAttrs = append(readyAttrs, "cpu_user", kmod.Round(time.Duration(ru.Utime.Nano())),
				"cpu_sys", kmod.Round(time.Duration(ru.Stime.Nano())-m.sysAtStart))
		}
	}
	m.log.Info("", readyAttrs...)
	m.broadcast(ready.String())
	// What the boot itself did not need starts now, in the background:
	// after the services have started K3s, so that neither the ready line
	// nor K3s's start shares the CPU with it. K3s loads the netfilter
	// modules it needs itself (through the agent as modprobe) and waits
	// for the kernel's random number generator on its own.
	if m.real() {
		safego.Go(m.log, "reading the kernel's log", m.logInitRan)
		go m.waitEntropy() // recovers (closes entropyDone)
		safego.Go(m.log, "late module loading", func() { m.LateModules(ctx) })
	} else {
		close(m.entropyDone)
		// Under --root the run ends with the sequence: load them now.
		m.LateModules(ctx)
	}
	return ready, nil
}

// logInitRan prints when the kernel ran the agent as /init, from the kernel's
// own log (the boot benchmarks count the agent's time from there).
// kernel_clock= says whether the kernel's clock started late, leaving the
// early boot out of every t= (kmsg.ClockStartedLate).
func (m *Machine) logInitRan() {
	recs, err := kmsg.Read("/dev/kmsg")
	if err != nil {
		m.log.Debug("kernel log unreadable", "reason", err.Error())
		return
	}
	if d, ok := kmsg.InitRan(recs); ok {
		attrs := []any{"agent_start", Seconds(d), "from", "kernel log"}
		if c, ok := kmsg.ClockStart(recs); ok {
			attrs = append(attrs, "kernel_clock", c)
		}
		m.log.Info("init ran", attrs...)
	}
}

// Run runs steps in order, logging each; a failing step that is not
// Optional stops them, with its error line printed on every console.
func (m *Machine) Run(ctx context.Context, steps []Step) error {
	for _, s := range steps {
		start := time.Now()
		err := m.runStep(ctx, s)
		took := kmod.Round(time.Since(start))
		if err != nil && s.Optional {
			m.log.Warn("", "step", s.Name, "t", Seconds(m.opts.Clock.SinceBoot()), "took", took, "reason", err.Error())
			continue
		}
		if err != nil {
			se := &StepError{Step: s.Name, Reason: err.Error(), Fix: s.Fix}
			var fe *fixError
			if errors.As(err, &fe) {
				se.Fix = fe.fix
			}
			if se.Fix == "" {
				se.Fix = "see the lines above"
			}
			m.broadcast(se.Line())
			return se
		}
		m.log.Info("", "step", s.Name, "t", Seconds(m.opts.Clock.SinceBoot()), "took", took)
	}
	return nil
}

// runStep turns a panic into an error: PID 1 must never die.
func (m *Machine) runStep(ctx context.Context, s Step) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error (panic): %v\n%s", r, firstLines(string(debug.Stack()), 12))
		}
	}()
	return s.Run(ctx, m)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// broadcast writes a line on every console. Under --root the consoles are
// files under DIR/dev, and the line also goes to Stdout for the caller.
func (m *Machine) broadcast(line string) {
	b := console.Broadcaster{SysDir: m.path("/sys"), DevDir: m.path("/dev"), Fallback: m.opts.Stdout}
	if !m.real() {
		b.Fallback = nil
		fmt.Fprintln(m.opts.Stdout, line)
	}
	reached, _ := b.Println(line)
	if m.opts.Echo != nil && m.real() && len(reached) > 0 { // else Stdout, the fallback, has it
		fmt.Fprintln(m.opts.Echo, line)
	}
}

func (m *Machine) ready() Ready {
	r := Ready{Version: agent.ImageVersion(m.path("/")), Boot: "bios", Source: m.Source, Slot: "none", IP: "none"}
	if _, err := os.Stat(m.path("/sys/firmware/efi")); err == nil {
		r.Boot = "uefi"
	}
	if m.Slot != "" {
		r.Slot = m.Slot
	}
	if res := m.NetworkResult(); res != nil {
		// A lease that came after the network step counts once there.
		r.IP = network.FirstIPv4(res.AllLeases())
	}
	return r
}

// ImageDriversLoaded is closed once the drivers that the system image's own
// kernel modules add are loaded (see switchRoot), or once there are none.
func (m *Machine) ImageDriversLoaded() <-chan struct{} { return m.imageDrivers }

// ImageDriversSettled is closed once those drivers have finished loading,
// also those still loading when ImageDriversLoaded stopped waiting.
func (m *Machine) ImageDriversSettled() <-chan struct{} { return m.imageSettled }

func (m *Machine) imageDriversSettled() {
	m.imageSettledOnce.Do(func() { close(m.imageSettled) })
}

func (m *Machine) imageModulesIndexed() {
	m.imageIndexedOnce.Do(func() { close(m.imageIndexed) })
}

// nvDevWait bounds the wait for NVIDIA's device files before
// ImageDriversLoaded closes: nvdev.Nodes takes at most about twice
// devread.DefaultWait (its reads of the driver's files are bounded), and
// LateModules may be making them meanwhile (nvDevMu).
const nvDevWait = 3 * devread.DefaultWait

func (m *Machine) imageDriversLoaded() {
	m.imageModulesIndexed()
	m.imageDriversOnce.Do(func() {
		// Whatever making the device files does: K3s, the network and the
		// inventory wait on these.
		defer func() {
			close(m.imageDrivers)
			if !m.lateScan.Load() {
				m.imageDriversSettled()
			}
		}()
		// nvidia-smi in the inventory that waits on this opens the device
		// files; they are made in a goroutine and waited for within a
		// bound: NVIDIA's driver can hold its reads while a GPU is in a
		// bad state, or LateModules be making them (nvDevMu).
		made := make(chan struct{})
		safego.Go(m.log, "making NVIDIA device files", func() {
			defer close(made)
			m.nvidiaDeviceFiles()
		})
		wait := time.NewTimer(m.scale(nvDevWait))
		defer wait.Stop()
		select {
		case <-made:
		case <-wait.C:
			m.log.Warn("NVIDIA device files: still being made; the services start without waiting for them", "waited", m.scale(nvDevWait),
				"fix", "NVIDIA's driver does not answer (a GPU fallen off the bus, or the driver stuck): read the kernel's NVRM messages (dmesg)")
		}
	})
}

// nvidiaDeviceFiles makes /dev/nvidiactl, /dev/nvidia<N> and the others
// NVIDIA's driver, once loaded, needs and devtmpfs never shows (there is no
// udev to run nvidia-modprobe's mknod): see package nvdev. Those it could
// list are made even when others could not be (a GPU whose information the
// driver does not give).
func (m *Machine) nvidiaDeviceFiles() {
	m.nvDevMu.Lock()
	defer m.nvDevMu.Unlock()
	defer safego.Recover(m.log, "making NVIDIA device files")
	nvdev.DriverReads.Set(m.scale(devread.DefaultWait), nil)
	nodes, err := nvdev.Nodes(m.path("/proc"))
	if len(nodes) > 0 {
		made, merr := nvdev.Make(m.path("/dev"), nodes)
		if len(made) > 0 {
			m.log.Info("NVIDIA device files", "made", strings.Join(made, ","))
		}
		err = errors.Join(err, merr)
	}
	if err != nil {
		m.log.Warn("NVIDIA device files", "reason", err.Error(),
			"fix", "the GPU's driver is loaded but nvidia-smi and containers cannot open what has no device file: read the kernel's messages (dmesg) and the driver's parameters (/proc/driver/nvidia/params)")
	}
}

// NetworkResult is the network as the boot and the machine config left it.
func (m *Machine) NetworkResult() *network.Result {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	return m.Network
}

// ApplyNetwork writes the machine config's hosts: entries into /etc/hosts,
// and configures what its network section lists (static addresses, bonds,
// VLANs, MTU, DHCP on a VLAN or a bond) over the boot's DHCP, and
// its hostname. Under --root the network is left alone. The error names
// each interface that could not be configured; the others are.
func (m *Machine) ApplyNetwork(ctx context.Context, c *config.MachineConfig) error {
	if !m.real() || c == nil {
		return nil
	}
	m.etcMu.Lock()
	defer m.etcMu.Unlock()
	// hosts: entries, or none (an earlier config's go).
	var hostsErr error
	if changed, err := network.WriteHosts("/etc", c.Hosts); err != nil {
		hostsErr = fmt.Errorf("hosts: %w", err)
	} else if changed {
		var names []string
		for _, h := range c.Hosts {
			names = append(names, h.IP+"="+strings.Join(h.Names, "|"))
		}
		m.log.Info("hosts written", "file", "/etc/hosts", "entries", strings.Join(names, ","))
	}
	var bonds bool // an earlier config's bonds, which a config without them removes
	locked(&m.netMu, func() { bonds = m.Network != nil && m.Network.HasBonds() })
	if len(c.Network.Interfaces) == 0 && c.Hostname == "" && !bonds {
		return hostsErr
	}
	var res network.Result
	locked(&m.netMu, func() {
		if m.Network != nil {
			res = *m.Network
			res.Leases = slices.Clone(res.Leases)
			res.Links = slices.Clone(res.Links)
		}
	})
	// In this process: the kernel would otherwise start the agent again as
	// modprobe for rtnl-link-vlan or rtnl-link-bond. bonding makes no bond
	// of its own (bond0, balance-rr, with max_bonds' default of 1): the
	// config's are made with their options.
	for _, need := range []struct {
		module, params, what string
		used                 func(config.Interface) bool
	}{
		{"8021q", "", "VLAN support", func(ifc config.Interface) bool { return ifc.VLAN != 0 }},
		{"bonding", "max_bonds=0", "bond support", func(ifc config.Interface) bool { return ifc.Bond != nil }},
	} {
		if !slices.ContainsFunc(c.Network.Interfaces, need.used) {
			continue
		}
		if m.Cold == nil {
			m.log.Warn(need.what, "reason", "no module index (the drivers step failed)")
		} else if err := m.Cold.ModprobeWith(ctx, need.module, kmod.ProbeOptions{Params: need.params}); err != nil {
			m.log.Warn(need.what, "reason", err.Error())
		}
	}
	applied, err := network.Apply(ctx, c.Network.Interfaces, &res, network.Config{Log: m.log, EtcDir: "/etc", Renew: true,
		DHCPTimeout: m.scale(15 * time.Second),
		// A dhcp: true entry without a lease is asked again, as the boot's links are.
		Retry: m.scale(5 * time.Second), RetryMax: m.scale(time.Minute), OnLateLease: m.lateLease, OnRenewed: m.renewedLease})
	for _, a := range applied {
		attrs := []any{"iface", a.Iface, "addresses", strings.Join(a.Addresses, ",")}
		if a.DHCP {
			attrs = append(attrs, "dhcp", true)
		}
		if a.Gateway != "" {
			attrs = append(attrs, "gateway", a.Gateway)
		}
		if a.Gateway6 != "" {
			attrs = append(attrs, "gateway6", a.Gateway6)
		}
		if len(a.Routes) > 0 {
			attrs = append(attrs, "routes", strings.Join(a.Routes, ", "))
		}
		if len(a.DNS) > 0 {
			attrs = append(attrs, "dns", strings.Join(a.DNS, ","))
		}
		m.log.Info("network config applied", attrs...)
	}
	if c.Hostname != "" && c.Hostname != res.Hostname {
		if herr := unix.Sethostname([]byte(c.Hostname)); herr != nil {
			err = errors.Join(err, fmt.Errorf("setting the hostname %s: %w", c.Hostname, herr))
		} else {
			res.Hostname = c.Hostname
			network.WriteEtc("/etc", network.Result{Hostname: c.Hostname}, m.log)
			m.log.Info("hostname", "hostname", c.Hostname, "from", "machine config")
		}
	}
	locked(&m.netMu, func() { m.Network = &res })
	return errors.Join(err, hostsErr)
}

// --- the steps ---------------------------------------------------------

func mountAPI(ctx context.Context, m *Machine) error {
	for _, a := range mount.APIMounts {
		done, err := m.opts.Mounter.Mounted(a.Target)
		if err != nil {
			return err
		}
		if done {
			m.log.Debug("already mounted", "target", a.Target)
			continue
		}
		if err := m.opts.Mounter.Mount(a.Source, a.Target, a.FSType, a.Flags, a.Data); err != nil {
			return err
		}
	}
	if m.real() {
		reopenConsole()
		// An XOFF byte on a serial console (a BMC's serial-over-LAN, line
		// noise) must not block the agent's writes, the shutdown's among them.
		if _, err := console.NoFlowControl("/sys", "/dev"); err != nil {
			m.log.Debug("console flow control left as it is", "reason", err.Error())
		}
	}
	// The agent's folder in /run, where the boot medium and the config
	// volumes are mounted (their config.yaml holds the cluster's secrets):
	// root's only, before anything is put there.
	if err := mount.MakePrivate(m.path(mount.PrivateDir)); err != nil {
		return fmt.Errorf("making %s: %w", mount.PrivateDir, err)
	}
	return nil
}

func readCmdline(ctx context.Context, m *Machine) error {
	b, err := os.ReadFile(m.path("/proc/cmdline"))
	if err != nil {
		return fmt.Errorf("reading the kernel command line: %w", err)
	}
	m.Params = cmdline.Parse(string(b))
	for _, w := range m.Params.Warnings {
		m.log.Warn("kernel argument ignored", "reason", w)
	}
	if m.Params.Debug {
		m.log = NewLogger(m.logOut, slog.LevelDebug)
		if m.Cold != nil {
			m.Cold.Log = m.log
		}
	}
	m.log.Info("kernel arguments", "slot", orNone(m.Params.Slot), "system", orNone(m.Params.SystemURL))
	return nil
}

func loadDrivers(ctx context.Context, m *Machine) error {
	rel, err := sysimage.KernelRelease(m.path("/lib/modules"), m.opts.KernelRelease)
	if err != nil {
		return err
	}
	start := time.Now()
	cold, err := kmod.NewColdplug(m.path("/sys"), m.path("/lib/modules/"+rel), m.opts.Loader, m.log)
	if err != nil {
		return err
	}
	m.log.Debug("module index read", "took", kmod.Round(time.Since(start)))
	cold.Params, cold.Defaults = kmod.ModuleParams(m.Params.Raw), kmod.DefaultParams
	cold.AsyncProbe = true
	cold.StuckAfter = m.scale(kmod.DefaultStuckAfter) // emulation is slower, not stuck
	// What nothing waits for yet loads only when the CPU is otherwise idle.
	cold.Background = m.real()
	cold.NetworkFirst = m.Params.SystemURL != ""
	m.Cold = cold
	if m.real() {
		// The kernel runs /sbin/modprobe to load what it lacks (a filesystem
		// on mount, a cipher, a netfilter match), and /sbin/poweroff for an
		// orderly shutdown. There is no kmod in the initramfs: the agent
		// answers as each itself (AgentCommands).
		installAgentCommands("/sbin", "/init", m.log)
		// Off the boot's path: only pods open these, long after.
		safego.Go(m.log, "making the device files of modules not loaded yet", m.staticNodes)
	}
	// Devices that appear from now on (a disk behind a controller whose
	// driver loads, a USB stick) arrive as uevents and get their driver at
	// once; the socket is open before the first scan so that none is missed.
	if m.real() {
		if h, err := kmod.OpenHotplug(); err != nil {
			m.log.Warn("devices plugged in later get no driver", "reason", err.Error())
		} else {
			m.hotplug.Store(true)
			go func() {
				defer m.hotplug.Store(false) // the medium wait rescans again
				defer safego.Recover(m.log, "the hotplug watch (devices plugged in later get no driver)")
				err := cold.WatchHotplug(ctx, h, func(u kmod.Uevent) {
					if u.Subsystem == "block" {
						select {
						case m.devEvents <- struct{}{}:
						default:
						}
					}
				})
				if err != nil {
					m.log.Warn("devices plugged in later get no driver", "reason", err.Error())
				}
			}()
		}
	}
	m.bootCtlDone = make(chan struct{}) // before find-image, which reads it: the steps run in turn
	setBootController := func() {
		defer close(m.bootCtlDone)
		if ma := m.bootController(ctx); ma != "" {
			cold.SetBootController(ma)
		}
	}
	switch {
	case m.Params.SystemURL != "":
		close(m.bootCtlDone) // over HTTP: no boot disk to tell
	case !m.real():
		setBootController() // --root: before the scan, for deterministic loads
	}
	// The first scan starts the storage drivers before anything else
	// loads (kmod.Coldplug: storage first).
	start = time.Now()
	if n, err := cold.StartScan(ctx); err != nil {
		m.log.Warn("driver loading stopped", "reason", err.Error())
	} else {
		m.log.Debug("devices found", "modaliases", n, "took", kmod.Round(time.Since(start)))
	}
	if m.Params.SystemURL == "" && m.real() {
		// Reading the firmware's variables takes a module and a mount
		// (about 0.1 s under emulation): meanwhile every controller's
		// drivers load; the others' then go on in the background.
		safego.Go(m.log, "reading the boot device", setBootController)
	}
	// The hardware drivers load in the background: find-image only needs
	// its one device and polls for it (a virtio disk is there long before
	// ahci has finished probing six empty SATA ports); the network step
	// waits for all of them.
	go func() {
		defer close(m.coldplugDone)
		defer safego.Recover(m.log, "driver loading")
		start := time.Now()
		if err := cold.Settle(ctx, 0, m.scale(5*time.Second)); err != nil && ctx.Err() == nil {
			// (Not when the machine shuts down: that is why it stopped.)
			m.log.Warn("driver loading stopped", "reason", err.Error())
		}
		m.log.Info("hardware drivers", "t", Seconds(m.opts.Clock.SinceBoot()), "took", kmod.Round(time.Since(start)),
			"loaded", cold.LoadCount(), "modules", strings.Join(cold.Loaded(0), ","))
	}()
	// What mounting the system takes loads meanwhile, as urgently as the
	// storage drivers (see kmod.Coldplug); mount-system waits for it.
	m.bootMods = make(chan struct{})
	go func() {
		defer close(m.bootMods)
		defer safego.Recover(m.log, "loading the boot's modules")
		mods := kmod.BootModulesFor(m.Params.Slot != "", m.Params.SystemURL != "")
		if m.Params.VerityRoot != "" && m.Params.SystemURL == "" {
			mods = append(slices.Clone(mods), kmod.VerityModules...)
		}
		cold.LoadBoot(ctx, mods)
	}()
	if !m.real() {
		// recorded loads: keep --root runs deterministic
		<-m.coldplugDone
		<-m.bootMods
	}
	if m.real() && m.Params.SystemURL == "" {
		m.netDone = make(chan struct{})
		go m.networkInBackground(ctx) // recovers: the network step reports it
	}
	m.log.Info("drivers", "kernel", rel)
	// Read now: after the switch, /etc is the system image's.
	m.fixed, err = kmod.ReadList(m.path(ModuleListFile))
	if errors.Is(err, os.ErrNotExist) {
		m.fixed = kmod.DefaultFixed
	} else if err != nil {
		m.log.Warn("module list unreadable, using the built-in one", "path", ModuleListFile, "reason", err.Error())
		m.fixed = kmod.DefaultFixed
	}
	return nil
}

// staticNodes makes the device files of the modules not loaded (kmod's
// static-nodes, which systemd runs at boot): /dev/net/tun and /dev/fuse,
// whose opening makes the kernel load tun or fuse (a pod's VPN sidecar, a
// FUSE storage driver) through the agent as /sbin/modprobe.
func (m *Machine) staticNodes() {
	made, err := kmod.MakeStaticNodes(m.path("/dev"), m.Cold.StaticNodes())
	if err != nil {
		m.log.Warn("device files of modules not loaded yet", "reason", err.Error())
	}
	if len(made) > 0 {
		m.log.Debug("device files of modules not loaded yet", "made", strings.Join(made, ","))
	}
}

// EFIVars is where efivarfs is mounted.
const EFIVars = "/sys/firmware/efi/efivars"

// mountEFIVars mounts efivarfs at dir read-only: the agent only reads
// BootCurrent and LoaderDevicePartUUID (package efivar writes nothing),
// and the mount moves with /sys into the running system, where nothing
// should change the firmware's boot variables behind the installer's back.
func mountEFIVars(mt mount.Mounter, dir string) error {
	return mt.Mount("efivarfs", dir, "efivarfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}

// bootController returns the modalias of the PCI controller the UEFI
// firmware booted from (its BootCurrent load option's device path), or ""
// under BIOS, when it cannot be told, or when it is not storage (a NIC, for
// PXE). The other storage controllers' drivers then wait
// (kmod.Coldplug.SetBootController).
func (m *Machine) bootController(ctx context.Context) string {
	if _, err := os.Stat(m.path("/sys/firmware/efi")); err != nil {
		return "" // BIOS
	}
	dir := m.path(EFIVars)
	if m.real() {
		if done, err := m.opts.Mounter.Mounted(dir); err == nil && !done {
			if err := m.Cold.Modprobe(ctx, "efivarfs"); err != nil {
				m.log.Info("boot device unknown", "reason", err.Error())
				return ""
			}
			if err := mountEFIVars(m.opts.Mounter, dir); err != nil {
				m.log.Info("boot device unknown", "reason", "mounting efivarfs: "+err.Error())
				return ""
			}
		}
	}
	p, err := efivar.Current(dir)
	if err != nil {
		m.log.Info("boot device unknown", "reason", err.Error())
		return ""
	}
	dev, err := p.SysfsDevice(m.path("/sys"))
	if err != nil {
		m.log.Info("boot device unknown", "path", p.String(), "reason", err.Error())
		return ""
	}
	b, err := os.ReadFile(filepath.Join(dev, "modalias"))
	if err != nil {
		m.log.Info("boot device unknown", "path", p.String(), "reason", err.Error())
		return ""
	}
	m.log.Info("booted from", "option", p.Option, "path", p.String(), "pci", filepath.Base(dev))
	if rp, err := filepath.EvalSymlinks(dev); err == nil {
		m.bootPCIDir = rp
	}
	ma := strings.TrimSpace(string(b))
	if !kmod.StorageModalias(ma) {
		return "" // a NIC (PXE, HTTP boot): every storage controller may hold the medium
	}
	return ma
}

// aliasRescan loads, in the background, the drivers modprobe.d's aliases
// name for devices the initramfs found, and then says the image's drivers
// are loaded (imageDriversLoaded): the network's wait for its links counts
// them, for 10 s at most (a driver still loading after that goes on).
func (m *Machine) aliasRescan(ctx context.Context) {
	scanned := make(chan struct{})
	safego.Go(m.log, "loading the drivers modprobe.d's aliases name", func() {
		defer close(scanned)
		m.rescan(ctx)
	})
	safego.Go(m.log, "waiting for the drivers modprobe.d's aliases name", func() {
		defer m.imageDriversLoaded()
		select {
		case <-scanned:
		case <-time.After(m.scale(10 * time.Second)):
		case <-ctx.Done():
		}
	})
}

// LateModules loads the rest of the fixed module list (netfilter,
// wireguard, filesystems) and the system image's modules-load.d after the
// ready line: nothing in the boot needs them. K3s, started before, does not
// wait for them: it loads what it needs at start through /sbin/modprobe
// (the agent), and so does NVIDIA's container CLI (nvidia_uvm) when a GPU
// container starts first.
func (m *Machine) LateModules(ctx context.Context) {
	defer close(m.modulesDone)
	start := time.Now()
	if m.Cold == nil {
		return
	}
	before := m.Cold.LoadCount()
	names := m.fixed
	// What the system image asks for, as systemd's modules-load.d: the
	// modules no device asks for (nvidia_uvm, a site's tcp_bbr).
	ml, err := kmod.ReadModulesLoadD(m.path("/"))
	if err != nil {
		m.log.Warn("modules-load.d unreadable", "reason", err.Error())
	}
	if len(ml.Names) > 0 {
		m.log.Info("modules-load.d", "files", strings.Join(ml.Files, ","), "modules", strings.Join(ml.Names, ","))
		names = append(slices.Clone(names), ml.Names...)
	}
	m.Cold.LoadFixed(ctx, names)
	m.nvidiaDeviceFiles() // nvidia_uvm, nvidia_modeset come from modules-load.d
	m.log.Info("", "step", "late-modules", "t", Seconds(m.opts.Clock.SinceBoot()), "took", kmod.Round(time.Since(start)),
		"loaded", m.Cold.LoadCount()-before, "modules", strings.Join(m.Cold.Loaded(before), ","))
}

// LoadModule loads a module or alias ("fs-vfat") with its dependencies
// in this process, as modprobe would.
func (m *Machine) LoadModule(ctx context.Context, name string) error {
	if m.Cold == nil {
		return errors.New("no module index (the drivers step failed)")
	}
	return m.Cold.Modprobe(ctx, name)
}

// ModulesLoaded is closed once LateModules is done.
func (m *Machine) ModulesLoaded() <-chan struct{} { return m.modulesDone }

// rescan picks up devices that appeared late (USB sticks, disks behind a
// controller probed asynchronously) and loads their drivers.
func (m *Machine) rescan(ctx context.Context) {
	if m.Cold == nil {
		return
	}
	if _, err := m.Cold.Scan(ctx); err != nil {
		m.log.Debug("rescan failed", "reason", err.Error())
	}
}

func findImage(ctx context.Context, m *Machine) error {
	p := m.Params
	if len(p.Unusable) > 0 {
		// Looking elsewhere (the CD) would boot what the user did not ask for.
		return withFix(fmt.Errorf("the kernel command line names the system image with values that cannot be used: %s", strings.Join(p.Unusable, "; ")),
			"correct these arguments in the boot loader's entry (or the netboot server's profile) and boot again")
	}
	switch {
	case p.SystemURL != "":
		m.Source = sysimage.SourceHTTP
		if p.SystemSHA256 == "" {
			return withFix(fmt.Errorf("etoile.system=%s is given without etoile.system.sha256: an image that cannot be verified is never used", p.SystemURL),
				"add etoile.system.sha256=<the image's line in SHA256SUMS> to the kernel command line")
		}
		// Bounded by progress, not length: a large image over a slow link
		// arrives; a server silent for five minutes is given up on.
		lim := sysimage.Limits{Patience: m.scale(sysimage.DefaultLimits.Patience), Stall: m.scale(sysimage.DefaultLimits.Stall)}
		start := time.Now()
		n, err := sysimage.DownloadWithin(ctx, m.opts.HTTP, p.SystemURL, p.SystemSHA256, m.path(HTTPImage), m.log, lim)
		if err != nil {
			var ce *sysimage.ChecksumError
			switch {
			case errors.As(err, &ce) && ce.LengthUnknown:
				return withFix(err, "if the connection drops (the server sends no Content-Length, so a cut download looks whole), check the server and the network and boot again; otherwise serve the image this kernel command line was made for, or correct etoile.system.sha256 from the build's SHA256SUMS")
			case errors.As(err, &ce):
				return withFix(err, "serve the image this kernel command line was made for, or correct etoile.system.sha256 from the build's SHA256SUMS")
			}
			return withFix(err, "check that the HTTP server is up and reachable from this network, and the URL in etoile.system=")
		}
		m.Image = HTTPImage
		m.log.Info("system image downloaded", "url", p.SystemURL, "bytes", n, "took", kmod.Round(time.Since(start)), "sha256", p.SystemSHA256)
		return nil
	case p.Slot != "":
		m.Source, m.Slot = sysimage.SourceDisk, p.Slot
		label := sysimage.PartLabel(p.Slot)
		dev, err := m.waitDevice(ctx, "partition "+label, func(devs []sysimage.BlockDev) (sysimage.BlockDev, bool) {
			return m.onBootDisk(devs, sysimage.FindPartitions(devs, label), "partition "+label)
		})
		if err != nil {
			if lerr := m.loaderDiskMissing(err); lerr != nil {
				return lerr
			}
			return withFix(err, fmt.Sprintf("the disk holding GPT partition %s was not found: check the disk and its controller driver (see the hardware drivers line above; etoile.debug lists every module), or boot the other slot", label))
		}
		m.Device, m.BootDisk = dev.Path, dev.Disk
		attrs := []any{"source", "disk", "partition", label, "device", dev.Name}
		if devs, err := sysimage.ListBlock(m.path("/sys"), m.path("/dev")); err == nil {
			if u := sysimage.PartUUID(devs, dev); u != "" {
				attrs = append(attrs, "partuuid", u)
			}
		}
		m.log.Info("system image found", attrs...)
		return nil
	default:
		m.Source = sysimage.SourceISO
		// A device read once and found to be something else is not read
		// again unless its size changes (a CD drive getting its disc).
		checked := map[string]int64{}
		dev, err := m.waitDevice(ctx, "ISO9660 volume "+sysimage.ISOLabel, func(devs []sysimage.BlockDev) (sysimage.BlockDev, bool) {
			var fresh []sysimage.BlockDev
			for _, d := range devs {
				if size, ok := checked[d.Name]; !ok || size != d.Size {
					fresh = append(fresh, d)
				}
			}
			if found := sysimage.FindISOs(fresh, sysimage.ISOLabel); len(found) > 0 {
				return m.onBootDisk(devs, found, "ISO9660 volume "+sysimage.ISOLabel)
			}
			for _, d := range fresh {
				if d.Size > 0 && readable(d.Path) {
					checked[d.Name] = d.Size
				}
			}
			return sysimage.BlockDev{}, false
		})
		if err != nil {
			if lerr := m.loaderDiskMissing(err); lerr != nil {
				return lerr
			}
			return withFix(err, "insert the Étoile CD or USB stick (written whole, e.g. with dd), or boot with etoile.slot= or etoile.system=")
		}
		m.Device, m.BootDisk = dev.Path, dev.Disk
		m.Image = filepath.Join(MediaDir, sysimage.ISOImagePath)
		m.log.Info("system image found", "source", "iso", "device", dev.Name)
		return nil
	}
}

// onBootDisk chooses among the devices that hold the system image (the
// booted slot's partition, an Étoile ISO): the one on the disk the firmware
// loaded systemd-boot from (its ESP's unique GUID, LoaderDevicePartUUID),
// so that a USB stick booted on a server whose disk already holds Étoile,
// or one of two sticks, runs its own image. Without that variable (BIOS, a
// CD) the first by name is taken, and several are warned about. While the
// boot disk has not appeared, and several candidates have, it waits.
func (m *Machine) onBootDisk(devs, cands []sysimage.BlockDev, what string) (sysimage.BlockDev, bool) {
	if len(cands) == 0 {
		return sysimage.BlockDev{}, false
	}
	names := func(ds []sysimage.BlockDev) string {
		var n []string
		for _, d := range ds {
			n = append(n, d.Name)
		}
		return strings.Join(n, ",")
	}
	if uuid := m.loaderPartUUID(); uuid != "" {
		if disk, ok := m.bootDiskOf(sysimage.DisksWithPartUUID(devs, uuid), names); ok {
			for _, c := range cands {
				if c.Disk == disk.Name {
					if len(cands) > 1 {
						m.log.Info("several devices hold the system image: using the boot disk's", "what", what, "device", c.Name, "boot_disk", disk.Name, "all", names(cands))
					}
					return c, true
				}
			}
		}
		// The boot disk may yet appear (a USB stick after an NVMe disk
		// that also holds Étoile): it is waited for, for the whole wait.
		// Another disk's image is never taken instead: its ESP config and
		// state partition are another machine's (or an old install's).
		// Where the firmware says nothing (no variable) the first is taken,
		// below.
		m.loaderMissing, m.loaderOthers = uuid, names(cands)
		if m.testHookFind != nil {
			m.testHookFind()
		}
		return sysimage.BlockDev{}, false
	}
	if len(cands) > 1 && m.Params.VerityRoot != "" {
		// The root hash on the command line names the image the boot
		// entry was written with: the medium whose hash tree gives it.
		var ok []sysimage.BlockDev
		for _, c := range cands {
			if _, err := sysimage.CheckVerity(c.Path, m.Source == sysimage.SourceISO, m.Params.VerityRoot, m.Params.VeritySalt); err == nil {
				ok = append(ok, c)
			}
		}
		if len(ok) == 1 {
			m.log.Info("several devices hold the system image: using the one whose dm-verity tree has the command line's root hash", "what", what, "device", ok[0].Name, "all", names(cands))
			return ok[0], true
		}
		if len(ok) > 1 {
			cands = ok // the same image on several media: any of them
		}
	}
	if len(cands) > 1 {
		m.log.Warn("several devices hold the system image and the firmware does not say which one booted: using the first", "what", what,
			"device", cands[0].Name, "all", names(cands), "fix", "disconnect the other Étoile media, or boot through Étoile's systemd-boot under UEFI (it names its disk)")
	}
	return cands[0], true
}

// loaderDiskMissing is the medium's error when the wait (err) ended with
// the system image seen only on disks other than the one the firmware
// booted (LoaderDevicePartUUID); nil otherwise.
func (m *Machine) loaderDiskMissing(err error) error {
	if m.loaderMissing == "" {
		return nil
	}
	return withFix(fmt.Errorf("the firmware booted from the partition with GUID %s (LoaderDevicePartUUID), and no disk holding it appeared; the system image was found only on other disks (%s), which are not used: their config and state are another installation's: %w",
		m.loaderMissing, m.loaderOthers, err),
		"check the boot disk and its controller's driver (etoile.debug lists every module); to boot one of the other disks, choose it in the firmware's boot menu, or disconnect it if it should not be there")
}

// bootDiskOf picks the boot disk among the disks holding the partition
// systemd-boot came from: several when one image was written to several
// disks (same GUIDs); then the one behind the controller the firmware
// booted from (BootCurrent), else the first, with a warning.
func (m *Machine) bootDiskOf(disks []sysimage.BlockDev, names func([]sysimage.BlockDev) string) (sysimage.BlockDev, bool) {
	switch {
	case len(disks) == 0:
		return sysimage.BlockDev{}, false
	case len(disks) == 1:
		return disks[0], true
	}
	if m.bootCtlKnown() && m.bootPCIDir != "" {
		var behind []sysimage.BlockDev
		for _, d := range disks {
			if p, err := filepath.EvalSymlinks(m.path("/sys/class/block/" + d.Name)); err == nil && strings.HasPrefix(p, m.bootPCIDir+"/") {
				behind = append(behind, d)
			}
		}
		if len(behind) == 1 {
			return behind[0], true
		}
	}
	if !m.warnedSameImage {
		m.warnedSameImage = true
		m.log.Warn("several disks carry the very same image and the firmware does not tell them apart: using the first", "disks", names(disks),
			"fix", "boot only one of them, or make their GUIDs differ (sgdisk -G on one)")
	}
	return disks[0], true
}

// bootCtlKnown waits until the boot controller has been looked for
// (bootCtlDone), 5 s at most; it reports whether it has: efivarfs is
// mounted, bootPCIDir may be read.
func (m *Machine) bootCtlKnown() bool {
	if m.bootCtlDone == nil {
		return true // the drivers' step stopped before (its error shown)
	}
	select {
	case <-m.bootCtlDone:
		return true
	default:
	}
	select {
	case <-m.bootCtlDone:
		return true
	case <-time.After(m.scale(5 * time.Second)):
		return false
	}
}

// loaderPartUUID is LoaderDevicePartUUID, read once ("" when not set). It
// waits for efivarfs (bootCtlKnown); without it, "" is returned and the
// variable is read at a later call.
func (m *Machine) loaderPartUUID() string {
	if !m.bootCtlKnown() {
		if !m.warnedLoaderLate {
			m.warnedLoaderLate = true
			m.log.Warn("the firmware's boot variables were not read within 5s: the disk systemd-boot came from (LoaderDevicePartUUID) is not known yet, and the system image is chosen without it",
				"fix", "if the wrong medium boots, disconnect the other Étoile media; etoile.debug shows the drivers' step")
		}
		return ""
	}
	m.loaderOnce.Do(func() {
		if _, err := os.Stat(m.path("/sys/firmware/efi")); err != nil {
			return
		}
		if u, err := efivar.LoaderDevicePartUUID(m.path(EFIVars)); err == nil {
			m.loaderUUID = u
		}
	})
	return m.loaderUUID
}

// readable reports whether a device opens (a CD drive without a disc, a
// device still being set up, does not): such a device is looked at again.
// The open is bounded (sysimage.DeviceReads): one that hangs is not.
func readable(path string) bool {
	return sysimage.DeviceReads.Do(path, "whether it opens", func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		return f.Close()
	}) == nil
}

// waitDevice looks at the block devices until find succeeds, for at most
// 30 s (scaled): again on every block device event, or every 250 ms. Without
// the uevent watcher (under --root) it rescans for drivers every 50 ms.
func (m *Machine) waitDevice(ctx context.Context, what string, find func([]sysimage.BlockDev) (sysimage.BlockDev, bool)) (sysimage.BlockDev, error) {
	limit := m.scale(30 * time.Second)
	deadline := time.Now().Add(limit)
	announced := false
	start := time.Now()
	usbSeen := map[string]*usbRetry{}
	for {
		devs, err := sysimage.ListBlock(m.path("/sys"), m.path("/dev"))
		if err == nil {
			if d, ok := find(devs); ok {
				return d, nil
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, d := range devs {
				names = append(names, d.Name)
			}
			return sysimage.BlockDev{}, fmt.Errorf("no block device holds the %s after %s (block devices: %s)", what, limit, orNone(strings.Join(names, " ")))
		}
		if !announced && time.Since(start) > 2*time.Second {
			m.log.Info("waiting for the boot medium", "want", what)
			announced = true
		}
		m.retryUSB(usbSeen)
		poll := 250 * time.Millisecond
		if !m.hotplug.Load() {
			m.rescan(ctx)
			poll = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return sysimage.BlockDev{}, ctx.Err()
		case <-m.devEvents:
		case <-time.After(poll):
		}
	}
}

// usbRetry is retryUSB's record of one usb-storage host.
type usbRetry struct {
	last  time.Time // when the host appeared, then when it was last asked
	tries int
	busy  atomic.Bool // a rescan is in progress (it can take the kernel seconds)
}

// maxUSBRetries bounds the rescans of one host: a card reader with no card
// or a USB CD drive with no disc stays without capacity for ever.
const maxUSBRetries = 5

// retryUSB asks a USB stick again when, a second after its host appeared,
// it has shown no disk or a disk with no capacity: the kernel does not wait
// for sticks to settle (kmod.DefaultParams), so one that needed the time is
// asked again, once a second, up to maxUSBRetries times. The kernel answers
// a rescan only once it has talked to the device: it runs in the
// background, one at a time per host, and the medium wait goes on.
func (m *Machine) retryUSB(seen map[string]*usbRetry) {
	now := time.Now()
	for _, h := range sysimage.USBHosts(m.path("/sys")) {
		r := seen[h.Name]
		switch {
		case r == nil:
			seen[h.Name] = &usbRetry{last: now}
			continue
		case r.tries >= maxUSBRetries || r.busy.Load() || now.Sub(r.last) < m.scale(time.Second) ||
			(h.Devices > 0 && len(h.Empty) == 0):
			continue
		}
		r.tries++
		r.last = now
		if r.tries == 1 {
			m.log.Info("USB storage not ready, asking it again", "host", h.Name, "devices", h.Devices, "without_capacity", len(h.Empty))
		}
		r.busy.Store(true)
		safego.Go(m.log, "asking USB storage again", func() {
			defer r.busy.Store(false)
			if err := h.Rescan(m.path("/sys")); err != nil {
				m.log.Debug("USB rescan failed", "host", h.Name, "reason", err.Error())
			}
		})
	}
}

func mountSystem(ctx context.Context, m *Machine) error {
	if m.Cold != nil {
		m.Cold.MediumFound()
	}
	m.startConfigPrefetch(ctx)
	if m.bootMods != nil {
		select { // loop, squashfs, overlay, isofs
		case <-m.bootMods:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	mt := m.opts.Mounter
	ro := uintptr(unix.MS_RDONLY)
	switch m.Source {
	case sysimage.SourceISO:
		if err := mt.Mount(m.Device, MediaDir, "iso9660", ro, ""); err != nil {
			return err
		}
	case sysimage.SourceDisk:
		// The slot's partition is the squashfs itself: no loop device.
		dev, err := m.verityDevice(m.Device)
		if err != nil {
			return err
		}
		if err := mt.Mount(dev, SystemDir, "squashfs", ro, ""); err != nil {
			return m.damaged(err)
		}
	}
	if m.Image != "" {
		if m.real() {
			if _, err := os.Stat(m.Image); err != nil {
				return withFix(fmt.Errorf("the boot medium holds no system image: %w", err), "write the medium again from a complete build (out/etoile-amd64.iso)")
			}
		}
		dev, err := mt.AttachLoop(m.Image)
		if err != nil {
			return err
		}
		if m.Source == sysimage.SourceHTTP {
			// The verified download stays in the loop device, which holds
			// it open; on the writable tmpfs it could be changed under the
			// mounted squashfs (the loop device's read-only flag guards only
			// writes through the device), and it would take its size of
			// memory twice were it ever copied. Nothing else reads it.
			if err := os.Remove(m.path(m.Image)); err != nil {
				m.log.Warn("removing the downloaded system image file after attaching it", "file", m.Image, "reason", err.Error())
			}
		}
		if m.Source == sysimage.SourceISO {
			if dev, err = m.verityDevice(dev); err != nil {
				return err
			}
		}
		if err := mt.Mount(dev, SystemDir, "squashfs", ro, ""); err != nil {
			return m.damaged(err)
		}
	}
	if err := mt.Mount("tmpfs", OverlayDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return err
	}
	if m.real() {
		for _, d := range []string{"upper", "work"} {
			if err := os.MkdirAll(filepath.Join(OverlayDir, d), 0o755); err != nil {
				return fmt.Errorf("making the overlay's %s folder: %w", d, err)
			}
		}
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", SystemDir, OverlayDir, OverlayDir)
	if err := mt.Mount("overlay", NewRoot, "overlay", 0, data); err != nil {
		return err
	}
	return nil
}

// VerityName is the device-mapper name of the verified system image.
const VerityName = "etoile-system"

// damagedFix is what to do when the system image of a medium fails its
// dm-verity check.
const damagedFix = "the medium is damaged: write it again from out/ and check it with sha256sum -c SHA256SUMS"

// damaged attaches damagedFix to a failed mount of a verified image: a
// block that fails its hash reads as an I/O error.
func (m *Machine) damaged(err error) error {
	if m.Params.VerityRoot == "" || m.Source == sysimage.SourceHTTP {
		return err
	}
	return withFix(fmt.Errorf("mounting the dm-verity checked system image: %w", err), damagedFix)
}

// verityDevice maps dev (the ISO's loop device or the slot's partition),
// whose squashfs is followed by its hash tree (image/verity), through
// dm-verity with the etoile.verity= root hash, and returns the mapped
// device; dev itself without etoile.verity (media built before it). Every
// block the kernel reads through it is checked against the root hash.
func (m *Machine) verityDevice(dev string) (string, error) {
	p := m.Params
	if p.VerityRoot == "" {
		return dev, nil
	}
	if !m.real() {
		m.log.Debug("dm-verity not set up: not a real boot", "device", dev)
		return dev, nil
	}
	start := time.Now()
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("%s is not a block device", dev)
	}
	// The tree's top block against the root hash first: a medium holding
	// another build's image (the boot entry and the image not written
	// together) is named so, not found "damaged" by the mount's reads.
	blocks, err := sysimage.CheckVerity(dev, false, p.VerityRoot, p.VeritySalt)
	if err != nil {
		if _, ok := errors.AsType[*sysimage.VerityMismatchError](err); ok {
			return "", withFix(err, "boot the medium's own entry, or write the medium again from out/ (image and boot entry together) and check it with sha256sum -c SHA256SUMS")
		}
		return "", withFix(err, damagedFix)
	}
	v := dm.Verity{
		Dev: fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))), DataBlocks: blocks, HashStartBlock: blocks,
		Root: p.VerityRoot, Salt: p.VeritySalt,
	}
	node, err := dm.CreateVerity("", VerityName, v)
	if err != nil {
		return "", withFix(fmt.Errorf("setting up dm-verity over %s: %w", dev, err), damagedFix+" (or, if the kernel has no dm_verity, rebuild the image with dm_mod and dm_verity in spec.modules)")
	}
	// The tree matches the command line's root hash; the data is checked
	// block by block as the kernel reads it (a damaged block fails its read).
	m.log.Info("system image mapped through dm-verity, every block checked as it is read", "root", p.VerityRoot[:12], "data_blocks", blocks, "device", node, "took", kmod.Round(time.Since(start)))
	return node, nil
}

// VFATModules are what mounting a FAT filesystem takes with the kernel's
// default code page (437) and character set (ascii).
var VFATModules = []string{"vfat", "nls_cp437", "nls_ascii"}

// switchRoot makes the agent and the kernel modules visible in the new root,
// then moves the API mounts and switches. They are bind-mounted read-only
// from the initramfs rather than copied: copying 10-30 MB into the overlay's
// tmpfs took seconds under emulation and doubled their memory. The agent is
// then at /usr/bin/etoile-agent (to re-exec itself, and as /sbin/modprobe),
// and modules load for devices that appear later (a USB NIC, a hot-plugged
// disk) and for K3s's netfilter needs.
func switchRoot(ctx context.Context, m *Machine) error {
	mt := m.opts.Mounter
	self := "/init"
	if m.real() {
		if exe, err := os.Executable(); err == nil {
			self = exe
		}
		// A bind mount of a file needs a file to cover.
		if err := touch(NewRoot + AgentPath); err != nil {
			return err
		}
	}
	if err := bindReadOnly(mt, self, NewRoot+AgentPath); err != nil {
		return err
	}
	layered := false
	if m.Cold != nil {
		mods := strings.TrimPrefix(m.Cold.ModDir, m.opts.Root) // the machine's path
		if st, err := os.Stat(m.path(NewRoot + mods)); err == nil && st.IsDir() {
			// The system image has modules for this kernel (its extensions'
			// drivers, with the build's index of both): laid over the
			// initramfs's, one folder for the agent, modprobe and K3s.
			if err := overlayReadOnly(mt, NewRoot+mods, NewRoot+mods, mods); err != nil {
				m.log.Warn("the system image's kernel modules cannot be laid over the initramfs's: its extensions' drivers will not load", "reason", err.Error())
				// The initramfs's modules at least, as without extensions.
				if err := bindReadOnly(mt, mods, NewRoot+mods); err != nil {
					m.log.Warn("kernel modules not visible in the system", "reason", err.Error())
				}
			} else {
				layered = true
			}
		} else if err := bindReadOnly(mt, mods, NewRoot+mods); err != nil {
			m.log.Warn("kernel modules not visible in the system", "reason", err.Error())
		}
	}
	if m.real() {
		installAgentCommands(NewRoot+"/sbin", AgentPath, m.log)
	}
	m.switchMu.Lock()
	defer m.switchMu.Unlock()
	if err := mt.SwitchRoot(NewRoot, []string{"/proc", "/sys", "/dev", "/run"}); err != nil {
		return err
	}
	// Every mount shared, as systemd makes them at boot: a pod's volume
	// with mountPropagation HostToContainer (node-exporter, log
	// collectors) or Bidirectional (CSI node plugins: Longhorn, Rook) is
	// refused by containerd on a private mount ("is not a shared mount"),
	// and kubelet's own mounts under /var/lib/kubelet would not reach them.
	if err := mt.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
		m.log.Warn("mounts not shared: pods asking for mount propagation (CSI drivers, node-exporter) will not start", "reason", err.Error())
	}
	if m.real() && m.Params.SystemURL != "" {
		// A netboot's network came up before the switch, into the
		// initramfs's /etc: the system's needs its resolv.conf and hostname.
		locked(&m.etcMu, func() {
			if res := m.NetworkResult(); res != nil {
				network.WriteEtc("/etc", *res, m.log)
			}
		})
	}
	aliased := false // modprobe.d has aliases, which may name drivers for devices seen already
	if m.Cold != nil {
		// The system's modprobe.d options (options nvidia NVreg_…) for
		// what loads from here on, before the command line's; its
		// blacklist and install false/true too.
		if conf, err := kmod.ReadModprobeD(m.path("/")); err != nil {
			m.log.Warn("modprobe.d unreadable: its options are not applied", "reason", err.Error())
		} else if len(conf.Files) > 0 {
			m.Cold.AddModprobeConf(conf)
			aliased = len(conf.Aliases) > 0
			attrs := []any{"files", strings.Join(conf.Files, ","), "options_for", strings.Join(slices.Sorted(maps.Keys(conf.Options)), ","),
				"blacklist", strings.Join(slices.Sorted(maps.Keys(conf.Blacklist)), ","), "install", conf.InstallSummary()}
			if len(conf.Aliases) > 0 {
				var as []string
				for _, a := range conf.Aliases {
					as = append(as, a.Pattern+"="+a.Module)
				}
				attrs = append(attrs, "alias", strings.Join(as, ","))
			}
			if len(conf.Softdeps) > 0 {
				var ss []string
				for _, s := range conf.Softdeps {
					ss = append(ss, s.Pattern)
				}
				attrs = append(attrs, "softdep", strings.Join(ss, ","))
			}
			m.log.Info("modprobe.d", append(attrs, "not_applied", strings.Join(conf.Ignored, ","))...)
		}
	}
	if !layered || !m.real() {
		if aliased && m.real() {
			// modprobe.d's aliases may name drivers for devices the
			// initramfs found (a NIC): loaded as the image's drivers are,
			// the network's wait for its links waiting for them.
			m.aliasRescan(ctx)
			return nil
		}
		m.imageDriversLoaded()
		return nil
	}
	// The merged index knows the extensions' drivers: the devices
	// nothing drove yet (a GPU, a NIC with an out-of-tree driver) get
	// theirs now, in the background; the network's wait for its links
	// and a GPU's inventory wait for them (ImageDriversLoaded).
	loadedBefore := m.Cold.Loaded(0)
	added, err := m.Cold.Reindex()
	if err != nil {
		m.log.Warn("the system image's module index is unreadable: its extensions' drivers will not load", "reason", err.Error())
		if aliased {
			m.aliasRescan(ctx)
		} else {
			m.imageDriversLoaded()
		}
		return nil
	}
	m.imageModulesIndexed() // HasDriver knows the extensions' drivers from here on
	m.log.Info("kernel modules of the system image added", "index", m.Cold.ModDir, "modules", strings.Join(added, ","))
	safego.Go(m.log, "making the device files of the system image's modules", m.staticNodes) // the extensions' too
	for _, name := range added {
		if slices.Contains(loadedBefore, name) {
			// The kernel keeps a module once loaded: the image's copy of
			// one the initramfs had loaded cannot replace it.
			m.log.Warn("a module of the system image is not used: the initramfs's copy was loaded before the system image was mounted",
				"module", name, "fix", "leave the module out of the image's module list (spec modules) so that only the extension's copy exists")
		}
	}
	go func() {
		defer m.imageDriversLoaded()
		defer safego.Recover(m.log, "loading the system image's drivers")
		before := m.Cold.LoadCount()
		// Bounded: a driver that takes longer (a large GPU module) goes
		// on loading, but the network and the inventory stop waiting.
		scanned := make(chan struct{})
		go func() {
			defer close(scanned)
			defer safego.Recover(m.log, "looking for devices for the system image's drivers")
			if _, err := m.Cold.Scan(ctx); err != nil {
				m.log.Debug("rescan failed", "reason", err.Error())
			}
		}()
		select {
		case <-scanned:
		case <-time.After(m.scale(10 * time.Second)):
			m.log.Warn("the system image's drivers are still loading; the boot goes on")
			m.lateScan.Store(true)
			go func() {
				// A GPU driver that took longer gets its device files
				// (and NVIDIA's persistence daemon) once it is loaded.
				defer m.imageDriversSettled()
				defer safego.Recover(m.log, "making the device files of late drivers")
				<-scanned
				m.nvidiaDeviceFiles()
			}()
		}
		// Only the image's modules: other loads (drivers nothing waits
		// for, in the background) finish meanwhile too.
		var loaded []string
		for _, name := range m.Cold.Loaded(before) {
			if slices.Contains(added, name) {
				loaded = append(loaded, name)
			}
		}
		if len(loaded) > 0 {
			m.log.Info("drivers loaded from the system image's modules", "modules", strings.Join(loaded, ","))
		}
	}()
	return nil
}

// overlayReadOnly mounts a read-only overlay of the folders lower (the
// first one on top) on dst.
func overlayReadOnly(mt mount.Mounter, dst string, lower ...string) error {
	return mt.Mount("etoile-modules", dst, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lower, ":"))
}

// bindReadOnly bind-mounts src on dst, then makes the bind read-only (a
// bind takes the read-only flag only on a remount).
func bindReadOnly(mt mount.Mounter, src, dst string) error {
	if err := mt.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	return mt.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
}

// bringUpNetwork brings the network up in the foreground (before a
// netboot's download).
func bringUpNetwork(ctx context.Context, m *Machine) error {
	if !m.real() {
		m.log.Info("network left alone under --root")
		locked(&m.netMu, func() { m.Network = &network.Result{} })
		return nil
	}
	res, err := m.upNetwork(ctx, "/etc")
	locked(&m.netMu, func() { m.Network = &res })
	if err != nil {
		return err
	}
	m.log.Info("network", "hostname", res.Hostname, "ip", network.FirstIPv4(res.Leases), "links", strings.Join(res.Links, ","))
	return nil
}

// upNetwork configures every link, from the moment it appears and has
// carrier, while the drivers may still be loading.
func (m *Machine) upNetwork(ctx context.Context, etc string) (network.Result, error) {
	var settled, driversKnown <-chan struct{}
	if m.Cold != nil {
		settled = m.coldplugDone // the NICs' drivers
		if m.Params.SystemURL == "" {
			// The system image's modules (an extension's NIC driver)
			// are in the index from then on.
			driversKnown = m.imageIndexed
			// …and those the system image's modules add after the switch.
			both := make(chan struct{})
			safego.Go(m.log, "waiting for the drivers", func() {
				defer close(both)
				<-m.coldplugDone
				<-m.imageDrivers
			})
			settled = both
		}
	}
	var hasDriver func(string) bool
	if m.Cold != nil {
		hasDriver = m.Cold.HasDriver
	}
	return network.Up(ctx, network.Config{
		Settled: settled,
		// A generated host name (no DHCP one) waits for the NICs with a
		// driver to register: it names the K3s node, on every boot alike.
		NICWait:      m.scale(10 * time.Second),
		HasDriver:    hasDriver,
		DriversKnown: driversKnown,
		// Until the system image is mounted: a slow boot medium (a USB
		// stick) is waited for longer than the NICs.
		DriversKnownWait: m.scale(time.Minute),
		// The ready line waits for the NICs there are, not for the other
		// controllers' drivers (ahci's chain still loads on a machine
		// booted from a virtio disk); a NIC that appears later still comes up.
		EarlyReturn:  true,
		Log:          m.log,
		CarrierWait:  m.scale(3 * time.Second),
		CarrierGrace: m.scale(500 * time.Millisecond),
		DHCPTimeout:  m.scale(15 * time.Second),
		// A port cabled to a network without DHCP (one the machine
		// config makes static) does not hold the boot for 15 s once
		// another link has a default route.
		LeaseGrace: m.scale(2 * time.Second),
		// A link without a lease is asked again, 5 s after and up to
		// every minute: the switch port or the DHCP server may come up
		// after the machine (a rack powered on at once).
		Retry:       m.scale(5 * time.Second),
		RetryMax:    m.scale(time.Minute),
		OnLateLease: m.lateLease,
		OnRenewed:   m.renewedLease,
		EtcDir:      etc,
		Renew:       true,
	})
}

// SetOnAddressChange sets what is told of each address a link gets, changes
// or loses after the network step (a lease that came late, a renewal that
// gave another address, a lease that ran out: no address): K3s, waiting out
// a restart's backoff, tries again at once, or is restarted when its node
// address is no longer the machine's.
func (m *Machine) SetOnAddressChange(f func(network.Lease)) {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	m.onAddress = f
}

// lateLease follows a lease that came after the network step: resolv.conf
// gets its name servers (the NTP rounds ask NetworkResult's AllLeases), and
// onAddress is told. Before the network step's result is in Network,
// that step's own write of /etc has it.
func (m *Machine) lateLease(l network.Lease) {
	m.leaseNews("address after the boot's network step", l)
	m.tellAddress(l)
}

// renewedLease follows a renewal that changed a lease's address or servers,
// or a lease that ran out (no address; the network logged it): resolv.conf
// is written again (the NTP rounds, the status and the ready line read
// NetworkResult's AllLeases), and onAddress is told.
func (m *Machine) renewedLease(l network.Lease) {
	if l.Addr.IP == nil {
		m.writeResolv(network.RewriteResolv)
	} else {
		m.leaseNews("DHCP lease renewed with changes", l)
	}
	m.tellAddress(l)
}

func (m *Machine) tellAddress(l network.Lease) {
	var hook func(network.Lease)
	locked(&m.netMu, func() { hook = m.onAddress })
	if hook != nil {
		hook(l)
	}
}

// writeResolv writes resolv.conf from every lease now, with write
// (network.WriteResolv, or RewriteResolv after a lease was lost).
func (m *Machine) writeResolv(write func(string, network.Result, *slog.Logger)) {
	m.etcMu.Lock()
	defer m.etcMu.Unlock()
	if res := m.NetworkResult(); res != nil {
		write("/etc", *res, m.log)
	}
}

// leaseNews writes resolv.conf from every lease now and logs msg with l.
func (m *Machine) leaseNews(msg string, l network.Lease) {
	m.writeResolv(network.WriteResolv)
	attrs := []any{"iface", l.Iface, "addr", l.Addr.String()}
	if len(l.DNS) > 0 {
		attrs = append(attrs, "dns", joinIPs(l.DNS))
	}
	if len(l.NTP) > 0 {
		attrs = append(attrs, "ntp", joinIPs(l.NTP))
	}
	m.log.Info(msg, attrs...)
}

func joinIPs(ips []net.IP) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

// networkInBackground brings the network up while the boot medium is found
// and mounted; awaitNetwork collects it.
func (m *Machine) networkInBackground(ctx context.Context) {
	defer close(m.netDone)
	defer func() {
		if r := recover(); r != nil {
			safego.Report(m.log, "bringing the network up", r)
			m.netErr = fmt.Errorf("internal error (panic): %v", r)
		}
	}()
	m.netRes, m.netErr = m.upNetwork(ctx, "")
}

// awaitNetwork waits for the network the drivers step started, then writes
// hostname and resolv.conf into the system's /etc.
func awaitNetwork(ctx context.Context, m *Machine) error {
	if m.netDone == nil {
		return bringUpNetwork(ctx, m)
	}
	select {
	case <-m.netDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	res := m.netRes
	m.etcMu.Lock()
	defer m.etcMu.Unlock()
	locked(&m.netMu, func() { m.Network = &res })
	if m.netErr != nil {
		return m.netErr
	}
	network.WriteEtc("/etc", res, m.log)
	m.log.Info("network", "hostname", res.Hostname, "ip", network.FirstIPv4(res.Leases), "links", strings.Join(res.Links, ","))
	return nil
}
