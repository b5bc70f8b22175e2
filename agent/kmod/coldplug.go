package kmod

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/mount"
	"github.com/etoile-os/etoile/agent/safego"
)

// BootModules are loaded with the hardware drivers, before the system image
// is looked for: what mounting it takes from an ISO. Everything else of the
// fixed list (netfilter, wireguard, ext4…) can come after the ready line.
var BootModules = []string{"loop", "squashfs", "overlay", "isofs"}

// VerityModules are what mounting a dm-verity checked system image adds
// (etoile.verity=; modules.dep brings dm_bufio and reed_solomon).
var VerityModules = []string{"dm_mod", "dm_verity"}

// BootModulesFor is what mounting the system image takes for a source:
// a slot's squashfs is a partition (no loop, no ISO9660), a downloaded one a
// file (loop, no ISO9660), an ISO's a file on the ISO (BootModules).
func BootModulesFor(slot, url bool) []string {
	switch {
	case slot:
		return []string{"squashfs", "overlay"}
	case url:
		return []string{"loop", "squashfs", "overlay"}
	}
	return BootModules
}

// DefaultFixed are loaded on every boot whatever the hardware: what the boot
// itself mounts, the disk class drivers, and what K3s needs from the kernel.
// The image writes the list it actually ships to /etc/etoile/modules; this is
// the fallback.
var DefaultFixed = []string{
	"loop", "squashfs", "overlay", "isofs", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "ext4",
	"sd_mod", "sr_mod",
	"br_netfilter", "vxlan", "nf_tables", "nf_conntrack", "iptable_nat", "iptable_filter", "ip_vs", "wireguard",
}

// ReadList reads a module list: one name per line, '#' comments.
func ReadList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, name := range strings.Fields(line) {
			out = append(out, Normalize(name))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading module list %s: %w", path, err)
	}
	return out, nil
}

// Coldplug loads the drivers for the devices the kernel has found, the way
// udev would at boot: every /sys/bus/*/devices/*/modalias, and
// /sys/class/dmi/id/modalias, is matched against modules.alias. Loading a
// bus driver (virtio_pci, xhci_pci, ahci) makes new devices appear with new
// modaliases, so Scan is meant to be called again until nothing new shows
// up (see Settle).
//
// The drivers a scan finds are loaded in parallel, as udev does: a driver's
// init often sleeps while it probes (ahci waits for its links), and the
// others load meanwhile. A module is loaded once; whoever needs a module
// another goroutine is loading waits for it to finish first, so that the
// kernel finds its symbols, and shares its outcome. A module whose load
// failed is tried again by the next request for it (a modprobe, a device
// added), never in a loop; a dependency that fails stops its chain.
//
// Storage comes first: the drivers for disk and CD controllers, USB host
// controllers and the disks and CDs themselves (what finding the boot
// medium waits for) load first, then what mounting it takes, then the
// rest, each waiting until no more urgent load is in progress, so that on a
// machine with few cores the boot medium's chain of modules (scsi_mod,
// libata, ahci, sr_mod…) does not share the CPU with NIC and filesystem
// drivers. With AsyncProbe, modules load with async_probe: a driver's
// probe (ahci waits about 0.35 s for its links) runs in the background
// instead of inside init_module, and no other load waits for it.
type Coldplug struct {
	SysDir string // "/sys", or DIR/sys under --root
	ModDir string // the folder holding modules.dep: "/lib/modules/<release>"
	Loader Loader
	Log    *slog.Logger
	// Parallel bounds the modules loaded at once, in each priority class
	// (default 4): an urgent load never waits for a slot held by a load
	// of another class.
	Parallel int
	// StuckAfter bounds how long one module's load (or a wait for it)
	// holds its slot (default DefaultStuckAfter): a driver whose init
	// hangs probing broken hardware is then named in a warning, and the
	// other loads go on without it (see stuck).
	StuckAfter time.Duration
	// Params are module parameters by module name ("param=value …"), as
	// modprobe takes them from the kernel command line (ModuleParams),
	// and Defaults Étoile's own (DefaultParams), given where neither the
	// command line nor modprobe.d (AddConfigParams) sets that parameter.
	// Set before the first load.
	Params   map[string]string
	Defaults map[string]string
	paramsMu sync.RWMutex
	conf     map[string]string // modprobe.d's options, by module
	// modprobe.d's blacklist (module → "file:line"), the install
	// commands Étoile follows, its aliases (the rules, and their index)
	// and its soft dependencies (AddModprobeConf), under paramsMu.
	blacklist   map[string]string
	install     []InstallRule
	aliasRules  []AliasRule
	confAliases *Aliases
	softdeps    []SoftdepRule
	// NetworkFirst makes the NIC drivers urgent instead of the storage
	// drivers: the boot medium comes over the network (netboot).
	NetworkFirst bool
	// AsyncProbe loads modules with async_probe. Without it, init_module
	// waits for every asynchronous probe in the kernel (do_init_module
	// calls async_synchronize_full), so a filesystem or NIC module would
	// wait for ahci to finish probing its links. With it, a driver's
	// devices appear a little after init_module returns, which the uevent
	// watcher, the boot's wait for its medium and the network's wait for
	// its links take in their stride. The boot sets it; modprobe, whose
	// caller expects the device to be there when it returns, does not.
	AsyncProbe bool
	// Background runs the kernel's share of the loads nothing waits for
	// yet at the lowest CPU priority (nice 19): what mounting the medium
	// takes while the medium's chain loads and probes, the other
	// controllers' drivers once it is found (or once the firmware named
	// the boot controller), drivers for devices nothing waits for. They
	// then take the CPU only when the urgent work leaves it idle (ahci's
	// link debounce, a USB stick's enumeration) and no longer slow the
	// boot medium's chain down on a machine with few cores; see urgent
	// for what runs at the usual priority. The boot sets it.
	Background bool

	// The index, replaced whole by Reindex while loads go on.
	aliases atomic.Pointer[Aliases]
	deps    atomic.Pointer[Deps]

	mu          sync.Mutex
	seen        map[string]bool       // modaliases already handled (at most maxSeen)
	seenFull    bool                  // (under mu) a modalias was turned away: seen is full
	done        map[string]*loadState // module → its load; a failed one is forgotten, to be tried again
	failed      map[string]error      // (under mu) module → why its last load failed
	warned      map[string]bool
	loaded      []string // modules loaded, in order
	loadCount   atomic.Int64
	pending     atomic.Int64           // loads started and not finished (nor stuck)
	inFlight    [numPrio]int           // loads started and not finished (nor stuck), by priority (under mu)
	mediumFound bool                   // (under mu) see MediumFound
	calm        *sync.Cond             // broadcast (on mu) when a priority's count drops to 0
	finished    chan struct{}          // a load has finished (Settle looks again)
	watching    atomic.Bool            // WatchHotplug is loading drivers for new devices
	sem         [numPrio]chan struct{} // slots, by priority
	semOnce     sync.Once
	bootCtl     atomic.Value           // string: see SetBootController
	threads     map[*loadThread]bool   // (under mu) loads inside the kernel now
	claimedBy   map[string]*loadThread // (under mu) module → the load that claimed it
	dmiOnce     sync.Once
	dmi         string // see dmiModalias
	setNice     func(tid, nice int) error
	beforeSlot  func(module string) // tests': called as a load starts to wait for its slot
}

// loadThread is one load's goroutine: its priority class and, while its
// module is in the kernel's hands, the OS thread it is locked to and that
// thread's nice value.
type loadThread struct {
	prio     int
	why      string
	modalias string
	boost    bool // an urgent load waits for a module this one loads
	tid      int  // 0 outside the kernel's share of a load
	nice     int
	bg       bool // the current module's load ran in the background for a while
	slot     bool // it holds a slot of its class (under mu)
	released bool // it no longer counts in pending and inFlight (under mu): finished, or stuck
}

// DefaultStuckAfter is how long a module's load may take before it is
// reported as stuck and stops holding back the others (StuckAfter): the
// slowest driver inits (a GPU's, ahci's link debounce on many ports) take
// a few seconds.
const DefaultStuckAfter = 30 * time.Second

// BackgroundNice is the nice value of loads nothing waits for (Background).
const BackgroundNice = 19

// NewColdplug reads modules.alias, modules.dep, modules.builtin,
// modules.softdep and modules.builtin.alias from modDir.
func NewColdplug(sysDir, modDir string, loader Loader, log *slog.Logger) (*Coldplug, error) {
	c := &Coldplug{SysDir: sysDir, ModDir: modDir, Loader: loader, Log: log, Parallel: 4,
		seen: map[string]bool{}, done: map[string]*loadState{}, failed: map[string]error{}, warned: map[string]bool{}, finished: make(chan struct{}, 1),
		threads: map[*loadThread]bool{}, claimedBy: map[string]*loadThread{}, setNice: setThreadNice}
	c.calm = sync.NewCond(&c.mu)
	deps, aliases, skipped, err := readIndex(modDir)
	if err != nil {
		return nil, err
	}
	c.warnSkipped(modDir, skipped)
	c.deps.Store(deps)
	c.aliases.Store(aliases)
	return c, nil
}

// Reindex reads the module index from ModDir again — the system image's
// modules laid over the initramfs's (an extension's drivers) — and forgets
// the devices whose drivers it changes, so that the next Scan loads the
// drivers the new index has for them. Loads in progress go on. It returns the modules
// the new index adds or moves (an extension's replacement of a module),
// sorted.
func (c *Coldplug) Reindex() ([]string, error) {
	deps, aliases, skipped, err := readIndex(c.ModDir)
	if err != nil {
		return nil, err
	}
	c.warnSkipped(c.ModDir, skipped)
	old := c.deps.Load()
	var added []string
	for name, p := range deps.path {
		if old.path[name] != p {
			added = append(added, name)
		}
	}
	slices.Sort(added)
	c.mu.Lock()
	// Only the devices whose drivers the new index changes are looked at
	// again: the others' loads (done, or going on in the background) stay
	// as they are.
	oldAliases := c.aliases.Load()
	for ma := range c.seen {
		if !slices.Equal(c.driversFor(oldAliases, ma), c.driversFor(aliases, ma)) {
			delete(c.seen, ma)
		}
	}
	c.deps.Store(deps)
	c.aliases.Store(aliases)
	clear(c.warned)
	c.mu.Unlock()
	return added, nil
}

// readIndex reads a modules folder's depmod files, and what it skipped of
// them (warnSkipped). modules.builtin, modules.softdep and
// modules.builtin.alias are optional: a kernel may have none, and one none
// of whose lines is readable is skipped whole.
func readIndex(modDir string) (*Deps, *Aliases, []badLines, error) {
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading the module index: %w (the initramfs must hold modules.dep for its kernel; rebuild the image)", err)
	}
	deps, err := parseDeps(f)
	f.Close()
	if err == nil {
		err = deps.bad[0].unusable()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", filepath.Join(modDir, "modules.dep"), err)
	}
	f, err = os.Open(filepath.Join(modDir, "modules.alias"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading the module aliases: %w (the initramfs must hold modules.alias; rebuild the image)", err)
	}
	aliases, bad, err := parseAliases("modules.alias", f)
	f.Close()
	if err == nil {
		err = bad.unusable()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", filepath.Join(modDir, "modules.alias"), err)
	}
	skipped := []badLines{bad}
	for _, name := range []string{"modules.builtin", "modules.softdep", "modules.builtin.alias"} {
		f, err := os.Open(filepath.Join(modDir, name))
		if err != nil {
			continue // optional
		}
		switch name {
		case "modules.builtin":
			err = deps.AddBuiltin(f)
		case "modules.softdep":
			err = deps.AddSoftdeps(f)
		case "modules.builtin.alias":
			aliases.builtin, bad, err = parseAliases(name, f)
			skipped = append(skipped, bad)
			// Its modules are built in, whatever modules.builtin says.
			for _, es := range aliases.builtin.byPrefix {
				for _, e := range es {
					deps.builtin[e.module] = true
				}
			}
		}
		f.Close()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", filepath.Join(modDir, name), err)
		}
	}
	return deps, aliases, append(skipped, deps.bad...), nil
}

// warnSkipped says, once per file read, which lines of the module index in
// modDir were skipped: a driver whose line it was does not load.
func (c *Coldplug) warnSkipped(modDir string, skipped []badLines) {
	for _, b := range skipped {
		if b.count == 0 {
			continue
		}
		c.Log.Warn("module index: lines that could not be read were skipped", "file", filepath.Join(modDir, b.file),
			"line", b.line, "first", b.text, "skipped", b.count, "read", b.good, "want", b.want,
			"hint", "the file is damaged or not depmod's: rebuild the image (its build writes the module index)")
	}
}

// LoadCount is how many module files were loaded so far.
func (c *Coldplug) LoadCount() int { return int(c.loadCount.Load()) }

// Loaded lists the modules loaded so far, from the n-th on, in order.
func (c *Coldplug) Loaded(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n >= len(c.loaded) {
		return nil
	}
	return slices.Clone(c.loaded[n:])
}

// Modaliases lists the modalias of every device on the buses some module
// has an alias for (pci, usb, virtio… but not acpi's dozens of devices
// whose drivers are built in), and the firmware's DMI modalias if some
// module has a dmi: alias (dmiModalias), sorted. It reads the folders
// itself rather than globbing, which would stat every device of every bus
// first.
func (c *Coldplug) Modaliases() ([]string, error) {
	defer mount.HoldAPI()() // not while the root switches
	bus := filepath.Join(c.SysDir, "bus")
	buses, err := os.ReadDir(bus)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, b := range buses {
		if !c.forBus(b.Name()) {
			continue
		}
		dir := filepath.Join(bus, b.Name(), "devices")
		devs, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, d := range devs {
			// A device can vanish between the listing and the read, and
			// many have no modalias.
			data, err := os.ReadFile(filepath.Join(dir, d.Name(), "modalias"))
			if err != nil {
				continue
			}
			if m := strings.TrimSpace(string(data)); m != "" {
				out = append(out, m)
			}
		}
	}
	if c.forBus("dmi") {
		if m := c.dmiModalias(); m != "" {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// dmiModalias is the firmware's DMI modalias ("dmi:bvn…:svn…:pn…", in
// /sys/class/dmi/id), which platform drivers match: hardware monitoring
// (dell_smm_hwmon, asus_wmi_sensors), IPMI (ibmpex, ibmaem), a board's
// extras. It is no device of a bus (udev loads them from its uevent at
// coldplug), and it never changes: read once.
func (c *Coldplug) dmiModalias() string {
	c.dmiOnce.Do(func() {
		if data, err := os.ReadFile(filepath.Join(c.SysDir, "class/dmi/id/modalias")); err == nil {
			c.dmi = strings.TrimSpace(string(data))
		}
	})
	return c.dmi
}

type request struct {
	module, why, modalias string
	params                string // given to module itself (modprobe NAME k=v), after the others
	ignoreInstall         bool   // modprobe -i: modprobe.d's install commands are not followed
}

// Load priorities: a load waits while one of a lower number is in progress.
const (
	prioNow    = iota // modprobe's: a caller waits for it, it waits for nothing
	prioMedium        // drivers of what the boot medium is found on
	prioBoot          // what mounting it takes (BootModules), and the NICs
	prioOther         // the rest
	numPrio
)

// priority of a request: prioNow for modprobe's (the kernel or a mount
// waits for it), prioMedium for the drivers of storage (or of the
// NICs, when the medium comes over the network), prioBoot for what mounting
// the medium takes and for the NICs (the ready line waits for both), which
// load while the medium's controller probes.
func (c *Coldplug) priority(r request) int {
	switch {
	case r.why == "modprobe":
		return prioNow
	case r.why == "boot":
		return prioBoot
	case r.modalias == "":
		return prioOther
	case c.NetworkFirst && NetworkModalias(r.modalias), !c.NetworkFirst && StorageModalias(r.modalias):
		if c.elsewhere(r.modalias) {
			return prioOther // not the controller the firmware booted from
		}
		return prioMedium
	case NetworkModalias(r.modalias):
		return prioBoot // the ready line waits for the network too
	}
	return prioOther
}

// NetworkModalias reports whether a device is a NIC: a PCI network
// controller (class 02) or a virtio network device.
func NetworkModalias(ma string) bool {
	switch {
	case strings.HasPrefix(ma, "pci:"):
		return strings.Contains(ma, "bc02sc")
	case strings.HasPrefix(ma, "virtio:"):
		return strings.HasPrefix(ma, "virtio:d00000001v")
	}
	return false
}

// StorageModalias reports whether a device is storage or on the way to it:
// a PCI mass-storage controller (class 01) or USB host controller (0c03),
// a virtio block or SCSI device, a SCSI disk, CD or RBC device, or a USB
// mass-storage interface.
func StorageModalias(ma string) bool {
	switch {
	case strings.HasPrefix(ma, "pci:"):
		return strings.Contains(ma, "bc01sc") || strings.Contains(ma, "bc0Csc03") // the kernel writes hex in capitals
	case strings.HasPrefix(ma, "virtio:"):
		return strings.HasPrefix(ma, "virtio:d00000002v") || strings.HasPrefix(ma, "virtio:d00000008v")
	case strings.HasPrefix(ma, "scsi:"):
		return ma == "scsi:t-0x00" || ma == "scsi:t-0x05" || ma == "scsi:t-0x0e"
	case strings.HasPrefix(ma, "usb:"):
		return strings.Contains(ma, "ic08")
	}
	return false
}

// Scan loads the drivers for modaliases not seen before and waits for them.
// It returns how many new modaliases it found.
func (c *Coldplug) Scan(ctx context.Context) (int, error) {
	var wg sync.WaitGroup
	n, err := c.scanAsync(ctx, &wg)
	wg.Wait()
	return n, err
}

// StartScan starts loading the drivers for modaliases not seen before and
// returns at once, with how many it found. Call it before loading other
// modules in the background, so that the urgent ones are known when those
// start (Settle goes on from there).
func (c *Coldplug) StartScan(ctx context.Context) (int, error) {
	var wg sync.WaitGroup // the loads are tracked by pending
	return c.scanAsync(ctx, &wg)
}

// scanAsync starts loading the drivers for new modaliases and returns at once.
func (c *Coldplug) scanAsync(ctx context.Context, wg *sync.WaitGroup) (int, error) {
	aliases, err := c.Modaliases()
	if err != nil {
		return 0, err
	}
	return c.startFor(ctx, aliases, wg), ctx.Err()
}

// maxSeen bounds the modaliases remembered (seen): a machine has a few
// hundred distinct ones, a large server a few thousand. Past it, new
// modaliases are turned away (and said so once) rather than grow the map
// and start loads for ever.
const maxSeen = 1 << 14

// startFor starts loading the drivers of the modaliases not seen before and
// returns how many were new.
func (c *Coldplug) startFor(ctx context.Context, aliases []string, wg *sync.WaitGroup) int {
	return c.startForDevices(ctx, aliases, wg, false)
}

// startForDevices is startFor; added tells that the modaliases come from
// devices just added (a uevent): a modalias seen before is then handled
// again if one of its drivers failed to load, so that a device plugged in
// again gets another try (a failed load is never retried in a loop).
func (c *Coldplug) startForDevices(ctx context.Context, aliases []string, wg *sync.WaitGroup, added bool) int {
	var reqs []request
	var refused []request // blacklisted by modprobe.d
	fresh := 0
	full := false
	c.mu.Lock()
	for _, ma := range aliases {
		if c.seen[ma] {
			if added {
				for _, m := range c.driversFor(c.aliases.Load(), ma) {
					// Not while a load of it goes on (c.done holds only
					// loads in progress and successful ones).
					if c.failed[m] != nil && c.done[m] == nil && c.blacklistedBy(m) == "" {
						reqs = append(reqs, request{module: m, why: "modalias", modalias: ma})
					}
				}
			}
			continue
		}
		if len(c.seen) >= maxSeen {
			full = full || !c.seenFull
			c.seenFull = true
			continue
		}
		c.seen[ma] = true
		fresh++
		for _, m := range c.driversFor(c.aliases.Load(), ma) {
			r := request{module: m, why: "modalias", modalias: ma}
			if c.blacklistedBy(m) != "" {
				// kmod (udev's modprobe -b) does not load a blacklisted
				// module for a device's alias.
				refused = append(refused, r)
				continue
			}
			reqs = append(reqs, r)
		}
	}
	c.mu.Unlock()
	if full {
		c.Log.Warn("too many distinct device modaliases: drivers for new ones are not loaded", "limit", maxSeen,
			"hint", "a device or a process floods device events; see dmesg")
	}
	for _, r := range refused {
		c.warnOnce(slog.LevelInfo, "blacklist "+r.module, "module blacklisted by modprobe.d: not loaded for the device",
			"module", r.module, "modalias", r.modalias, "by", c.blacklistedBy(r.module))
	}
	// Storage first, in the same scan too.
	slices.SortStableFunc(reqs, func(a, b request) int {
		return c.priority(a) - c.priority(b)
	})
	for _, r := range reqs {
		c.start(ctx, r, wg, nil)
	}
	return fresh
}

// HasDriver reports whether a module in the index (the image's too, once
// merged), or a modprobe.d alias, matches the modalias.
func (c *Coldplug) HasDriver(modalias string) bool {
	return len(c.driversFor(c.aliases.Load(), modalias)) > 0
}

// LoadFixed loads each named module (or alias) with its dependencies,
// whatever the hardware. A module missing from the image is a warning. An
// alias does not load the modules modprobe.d blacklists, as with kmod.
func (c *Coldplug) LoadFixed(ctx context.Context, names []string) {
	var reqs []request
	for _, m := range names {
		mods, byAlias := c.resolveName(m)
		if len(mods) == 0 {
			mods = []string{Normalize(m)} // warned about as missing
		}
		for _, mod := range mods {
			if by := c.blacklistedBy(mod); byAlias && by != "" {
				c.warnOnce(slog.LevelInfo, "blacklist "+mod, "module blacklisted by modprobe.d: not loaded for an alias",
					"module", mod, "alias", m, "by", by)
				continue
			}
			reqs = append(reqs, request{module: mod, why: "fixed"})
		}
	}
	c.loadAll(ctx, reqs)
}

// LoadBoot loads what mounting the boot medium takes (BootModules), right
// after the storage drivers: while the medium's controller probes.
func (c *Coldplug) LoadBoot(ctx context.Context, names []string) {
	var reqs []request
	for _, m := range names {
		reqs = append(reqs, request{module: Normalize(m), why: "boot"})
	}
	c.loadAll(ctx, reqs)
}

// ProbeOptions are what modprobe(8)'s options change in a load (ModprobeWith).
type ProbeOptions struct {
	// Params are given to the module named (not to its dependencies),
	// after modprobe.d's and the kernel command line's: `modprobe NAME
	// k=v …`. They apply only if this call loads it.
	Params string
	// FirstTime fails if the module is already in the kernel (built in,
	// or loaded): --first-time.
	FirstTime bool
	// UseBlacklist applies modprobe.d's blacklist to a module named by its
	// own name too, not only to one an alias names (-b).
	UseBlacklist bool
	// IgnoreInstall does not follow modprobe.d's install commands (-i).
	IgnoreInstall bool
}

// NotFoundError is a name that is neither a module nor an alias.
type NotFoundError struct{ Name, Dir string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("module %s not found in %s (no such module or alias in the image: check the name, or build the image with it)", e.Name, e.Dir)
}

// Modprobe loads name, a module name or an alias ("fs-iso9660",
// "crypto-crc32c"), as modprobe(8) would. It fails if nothing matches, or
// if the module or one of its dependencies did not load (for an alias that
// names several modules, if none of them loads). A module already in the
// kernel or built in is a success.
func (c *Coldplug) Modprobe(ctx context.Context, name string) error {
	return c.ModprobeWith(ctx, name, ProbeOptions{})
}

// ModprobeWith is Modprobe with modprobe(8)'s options. A module that
// modprobe.d blacklists is not loaded for an alias (nor for its own name
// with UseBlacklist), and that is no error, as with kmod.
func (c *Coldplug) ModprobeWith(ctx context.Context, name string, o ProbeOptions) error {
	mods, byAlias := c.resolveName(name)
	if len(mods) == 0 {
		return &NotFoundError{Name: name, Dir: c.ModDir}
	}
	var reqs []request
	var errs []error
	for _, m := range mods {
		if by := c.blacklistedBy(m); by != "" && (byAlias || o.UseBlacklist) {
			c.Log.Info("module blacklisted by modprobe.d: not loaded", "module", m, "name", name, "by", by)
			continue
		}
		if o.FirstTime {
			if where := c.alreadyIn(m); where != "" {
				errs = append(errs, fmt.Errorf("module %s is already in the kernel (%s), and --first-time was given", m, where))
				continue
			}
		}
		reqs = append(reqs, request{module: m, why: "modprobe", params: o.Params, ignoreInstall: o.IgnoreInstall})
	}
	if len(reqs) == 0 {
		return errors.Join(errs...) // nil when every module is blacklisted
	}
	for _, err := range c.loadAll(ctx, reqs) {
		if err == nil {
			return nil // one of the modules an alias names is enough
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Resolve maps a name to the modules modprobe would load for it: those a
// modprobe.d alias names, else itself if it is a module (or built in),
// else the modules its alias names.
func (c *Coldplug) Resolve(name string) []string {
	mods, _ := c.resolveName(name)
	return mods
}

// resolve maps a name to modules: itself if it is one, else its aliases' modules.
func (c *Coldplug) resolve(name string) []string {
	mods, _ := c.resolveName(name)
	return mods
}

// resolveName is resolve, and whether the name is an alias. modprobe.d's
// aliases come first, before even a module of that name, as kmod looks
// them up: the first kind of lookup that finds something is the answer.
func (c *Coldplug) resolveName(name string) (mods []string, byAlias bool) {
	if mods := c.configAliases(name); len(mods) > 0 {
		return mods, true
	}
	if n := Normalize(name); c.deps.Load().Has(n) {
		return []string{n}, false
	}
	a := c.aliases.Load()
	mods = a.Lookup(name)
	if len(mods) == 0 {
		// Last, as kmod: an alias of a module built into the kernel
		// ("fs-ext4" with ext4 built in) is there already.
		mods = a.builtin.Lookup(name)
	}
	return mods, len(mods) > 0
}

// alreadyIn tells where module m is in the kernel already ("built in",
// "loaded"), or "".
func (c *Coldplug) alreadyIn(m string) string {
	if c.deps.Load().Builtin(m) {
		return "built in"
	}
	c.mu.Lock()
	st := c.done[m]
	c.mu.Unlock()
	if st != nil {
		select {
		case <-st.done:
			if st.err == nil {
				return "loaded"
			}
		default:
		}
	}
	if _, err := os.Stat(filepath.Join(c.SysDir, "module", m, "initstate")); err == nil {
		return "loaded"
	}
	return ""
}

// loadAll loads reqs, in parallel, and returns each one's outcome.
func (c *Coldplug) loadAll(ctx context.Context, reqs []request) []error {
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		c.start(ctx, r, &wg, func(err error) { errs[i] = err })
	}
	wg.Wait()
	return errs
}

// start loads r in a goroutine, at most Parallel at once; wg tracks it for
// the caller, pending for everyone. report, when not nil, is given the
// load's outcome before wg is told.
func (c *Coldplug) start(ctx context.Context, r request, wg *sync.WaitGroup, report func(error)) {
	if err := ctx.Err(); err != nil {
		if report != nil {
			report(fmt.Errorf("module %s not loaded: %w", r.module, err))
		}
		return
	}
	c.semOnce.Do(func() {
		for p := range c.sem {
			c.sem[p] = make(chan struct{}, max(c.Parallel, 1))
		}
	})
	wg.Add(1)
	c.pending.Add(1)
	prio := c.priority(r)
	func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.inFlight[prio]++
	}()
	lt := &loadThread{prio: prio, why: r.why, modalias: r.modalias}
	go func() {
		defer wg.Done()
		defer func() {
			c.mu.Lock()
			c.release(lt)
			c.mu.Unlock()
		}()
		// A bug here, in the wait for a slot as in the load, must not take
		// PID 1 down: it is logged, and the load's bookkeeping (pending,
		// inFlight, its slot) undone all the same.
		defer safego.Recover(c.Log, "loading module "+r.module)
		// What a crash leaves as the outcome (the panic is logged).
		err := fmt.Errorf("loading module %s crashed (see the error logged)", r.module)
		if report != nil {
			defer func() { report(err) }()
		}
		if c.beforeSlot != nil {
			c.beforeSlot(r.module)
		}
		c.waitCalm(prio)
		c.sem[prio] <- struct{}{}
		c.mu.Lock()
		lt.slot = true
		c.mu.Unlock()
		err = c.load(r, map[string]bool{}, lt)
	}()
}

// release ends lt's share of the bookkeeping (c.mu held), once: its slot
// goes to the next load, and neither the loads of lower priority nor
// Settle wait for it any more. Its goroutine may go on (stuck).
func (c *Coldplug) release(lt *loadThread) {
	if lt.slot {
		lt.slot = false
		<-c.sem[lt.prio]
	}
	if lt.released {
		return
	}
	lt.released = true
	if c.inFlight[lt.prio]--; c.inFlight[lt.prio] == 0 {
		c.calm.Broadcast()
	}
	c.pending.Add(-1)
	select {
	case c.finished <- struct{}{}:
	default:
	}
}

// stuck reports module m, whose load lt has been making (or waiting for)
// for StuckAfter: its init has not returned, most likely a driver's probe
// stuck on broken hardware. init_module cannot be interrupted, so lt goes
// on waiting for it, but releases its slot: the other drivers load
// meanwhile. What needs m still waits for it (its claim stays).
func (c *Coldplug) stuck(m, wanted string, lt *loadThread) {
	c.mu.Lock()
	c.release(lt)
	c.mu.Unlock()
	attrs := []any{"module", m}
	if m != wanted {
		attrs = append(attrs, "needed_by", wanted)
	}
	attrs = append(attrs, "hint", "the other drivers load meanwhile; what needs it waits for it")
	c.warnOnce(slog.LevelWarn, "stuck "+m, fmt.Sprintf("module still loading after %s: its probe may be stuck; read dmesg", c.stuckAfter()), attrs...)
}

// stuckAfter is StuckAfter or its default.
func (c *Coldplug) stuckAfter() time.Duration {
	if c.StuckAfter > 0 {
		return c.StuckAfter
	}
	return DefaultStuckAfter
}

// urgent reports whether something waits for lt's load now (c.mu held):
// the boot medium's drivers until it is found, the NICs' (a link takes
// seconds to come up on real hardware: its driver must be there early),
// what mounting the medium takes once it is found, modprobe's loads, the
// fixed list, and whatever such a load waits for.
func (c *Coldplug) urgent(lt *loadThread) bool {
	switch {
	case lt.boost || lt.why == "modprobe":
		return true
	case lt.why == "fixed":
		// After the ready line (LoadFixed), with K3s starting: K3s asks
		// for netfilter modules through /sbin/modprobe, another process,
		// whose init_module would wait for a load at nice 19 here without
		// lending it its priority.
		return true
	case lt.prio == prioMedium:
		return !c.mediumFound && !c.elsewhere(lt.modalias)
	case lt.prio == prioBoot:
		return c.mediumFound || lt.why != "boot"
	}
	return false
}

// renice gives lt's thread the nice value its urgency calls for, if it is
// inside the kernel's share of a load (c.mu held).
func (c *Coldplug) renice(lt *loadThread) {
	if lt.tid == 0 {
		return
	}
	want := 0
	if c.Background && !c.urgent(lt) {
		want = BackgroundNice
	}
	if want == lt.nice {
		return
	}
	if err := c.setNice(lt.tid, want); err != nil {
		c.Log.Debug("module load priority unchanged", "reason", err.Error())
		return
	}
	lt.nice = want
	lt.bg = lt.bg || want != 0
}

// inKernel runs fn, the kernel's share of lt's load, on a thread of its own
// at lt's priority, kept up to date (MediumFound, boosts) while fn runs.
func (c *Coldplug) inKernel(lt *loadThread, fn func() error) error {
	if !c.Background {
		return fn()
	}
	runtime.LockOSThread()
	c.mu.Lock()
	lt.tid, lt.bg = gettid(), false
	c.threads[lt] = true
	c.renice(lt)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.threads, lt)
		if lt.nice != 0 {
			if err := c.setNice(lt.tid, 0); err == nil {
				lt.nice = 0
			}
		}
		// A failed reset leaves lt.nice as it is: the thread stays with
		// this goroutine, and the next renice tries again.
		reset := lt.nice == 0
		lt.tid = 0
		c.mu.Unlock()
		// The thread goes back to the Go scheduler's pool only at nice 0;
		// otherwise it stays locked, and ends with this goroutine.
		if reset {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// busyBefore reports whether a load more urgent than prio is in progress
// (c.mu held).
// waitCalm waits while something more urgent than prio loads (storage
// first).
func (c *Coldplug) waitCalm(prio int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.busyBefore(prio) {
		c.calm.Wait()
	}
}

func (c *Coldplug) busyBefore(prio int) bool {
	if prio == prioBoot && c.mediumFound {
		return false // mounting the medium is what the boot waits for now
	}
	for p := 0; p < prio; p++ {
		if c.inFlight[p] > 0 {
			return true
		}
	}
	return false
}

// SetBootController tells the modalias of the PCI controller the firmware
// booted from (UEFI's BootCurrent, see package efivar): the other storage
// controllers' drivers are then no longer urgent, as on a server with NVMe
// data disks booted from a SATA SSD, or a VM with an unused AHCI
// controller. Their loads in progress go on in the background (nice 19);
// none waits for the medium, so a wrong guess only slows the boot down.
func (c *Coldplug) SetBootController(modalias string) {
	c.bootCtl.Store(modalias)
	c.mu.Lock()
	c.reniceAll()
	c.mu.Unlock()
}

// reniceAll applies a change of urgency to the loads inside the kernel now
// (c.mu held).
func (c *Coldplug) reniceAll() {
	for lt := range c.threads {
		c.renice(lt)
	}
}

// elsewhere reports whether modalias is a storage controller other than the
// one the firmware booted from.
func (c *Coldplug) elsewhere(modalias string) bool {
	boot, _ := c.bootCtl.Load().(string)
	return !c.NetworkFirst && boot != "" && strings.HasPrefix(modalias, "pci:") && modalias != boot && StorageModalias(modalias)
}

// MediumFound tells that the boot medium is found: what mounting it takes
// stops waiting for the other storage drivers (a virtio disk is found
// while ahci's chain of modules still loads).
func (c *Coldplug) MediumFound() {
	c.mu.Lock()
	c.mediumFound = true
	c.reniceAll()
	c.calm.Broadcast()
	c.mu.Unlock()
}

// yield holds a storage driver's chain of modules, between two of them,
// while what mounting the found medium takes loads: once the medium is
// found, the other controllers' drivers (ahci's chain on a machine booted
// from a virtio disk) are no longer what the boot waits for. It holds no
// claim and no slot while it waits.
func (c *Coldplug) yield(r request, lt *loadThread) {
	if c.priority(r) != prioMedium {
		return
	}
	c.mu.Lock()
	if !lt.slot || !c.mediumFound || c.inFlight[prioBoot] == 0 {
		c.mu.Unlock()
		return
	}
	// Give the slot up meanwhile: a chain that yields holds none.
	lt.slot = false
	<-c.sem[prioMedium]
	for c.mediumFound && c.inFlight[prioBoot] > 0 {
		c.calm.Wait()
	}
	c.mu.Unlock()
	c.sem[prioMedium] <- struct{}{}
	c.mu.Lock()
	lt.slot = true
	if lt.released {
		c.release(lt) // reported stuck meanwhile: it holds no slot any more
	}
	c.mu.Unlock()
}

// loadState is one load of a module: done is closed once it finished, and
// err is then its outcome (nil: loaded, or already in the kernel).
type loadState struct {
	done chan struct{}
	err  error
}

// claimOrOwner returns the module's load and true if lt must load it, or
// the load of whoever claimed it first and false: the caller then waits
// for it to finish (st.done). An urgent load that waits lends its
// priority to the load it waits for.
func (c *Coldplug) claimOrOwner(module string, lt *loadThread) (*loadState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.done[module]
	if !ok {
		st = &loadState{done: make(chan struct{})}
		c.done[module] = st
		c.claimedBy[module] = lt
		return st, true
	}
	if owner := c.claimedBy[module]; owner != nil && !owner.boost && c.urgent(lt) && !c.urgent(owner) {
		owner.boost = true
		c.renice(owner)
	}
	return st, false
}

// finish ends st, module's load, with its outcome. A failed load is
// forgotten: the next request for the module (a modprobe, a device added)
// tries it again, and meanwhile failed says why it failed.
func (c *Coldplug) finish(module string, st *loadState, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.err = err
	close(st.done)
	delete(c.claimedBy, module)
	if err != nil {
		if c.done[module] == st {
			delete(c.done, module)
		}
		c.failed[module] = err
	} else {
		delete(c.failed, module)
	}
}

func (c *Coldplug) warnOnce(level slog.Level, key, msg string, args ...any) {
	c.mu.Lock()
	seen := c.warned[key]
	c.warned[key] = true
	c.mu.Unlock()
	if !seen {
		c.Log.Log(context.Background(), level, msg, args...)
	}
}

// load loads r.module: its softdep pre modules, its dependencies in order,
// itself, then its softdep post modules. stack guards against softdep loops.
// It returns why r.module did not load: a dependency that failed stops the
// chain, as with kmod; a soft dependency that fails does not (it is often
// one of several candidates, or an optional helper).
func (c *Coldplug) load(r request, stack map[string]bool, lt *loadThread) error {
	name := r.module
	if stack[name] {
		return nil
	}
	stack[name] = true
	order, err := c.deps.Load().Order(name)
	if err != nil {
		var missing *MissingError
		if errors.As(err, &missing) {
			// A modalias match for a module the image does not ship is
			// normal (the initramfs holds a chosen subset); a fixed module
			// missing is worth a warning.
			level := slog.LevelWarn
			switch r.why {
			case "modalias":
				level = slog.LevelDebug
			case "softdep":
				// Soft dependencies are often optional helpers (a charset,
				// a faster cipher); the image build decides which to ship.
				level = slog.LevelInfo
			}
			c.warnOnce(level, name, "module not in image", "module", name, "reason", err.Error())
		}
		return fmt.Errorf("%w (in %s: build the image with it)", err, c.ModDir)
	}
	softdeps := func(names []string) {
		for _, p := range names {
			for _, s := range c.resolve(p) {
				_ = c.load(request{module: s, why: "softdep", ignoreInstall: r.ignoreInstall}, stack, lt)
			}
		}
	}
	for _, m := range order {
		c.yield(r, lt)
		pre, post := c.softdepsFor(m) // modprobe.d's, else modules.softdep's
		softdeps(pre)
		if err := c.loadOne(m, name, r, lt); err != nil {
			if m != name {
				// The dependency's failure is logged; say what it stops.
				level := slog.LevelWarn
				if r.why == "modalias" || r.why == "softdep" {
					level = slog.LevelInfo
				}
				c.Log.Log(context.Background(), level, "module not loaded: a dependency failed", "module", name, "dependency", m)
				err = fmt.Errorf("module %s not loaded: its dependency %s failed: %w", name, m, err)
				// Marked failed too, so that the device added again tries
				// its driver (and so the dependency) again.
				c.mu.Lock()
				if c.done[name] == nil {
					c.failed[name] = err
				}
				c.mu.Unlock()
				return err
			}
			return err
		}
		softdeps(post)
	}
	// A storage controller's SCSI chain is followed by the SCSI disk and
	// CD drivers, while the controller probes its links: the disk or CD
	// it finds then binds at once, not after a uevent's round trip.
	if c.priority(r) == prioMedium && r.why == "modalias" && slices.Contains(order, "scsi_mod") {
		for _, m := range SCSIClassDrivers {
			if c.deps.Load().Has(m) {
				_ = c.load(request{module: m, why: "scsi class driver"}, stack, lt)
			}
		}
	}
	return nil
}

// loadOne loads module m of r's chain (wanted is r.module), once: a load
// of m in progress elsewhere is waited for, and its outcome is m's.
func (c *Coldplug) loadOne(m, wanted string, r request, lt *loadThread) error {
	if !r.ignoreInstall {
		if rule, ok := c.installFor(m); ok && c.alreadyIn(m) == "" {
			if rule.Fail {
				err := &DisabledError{Module: m, Rule: rule}
				c.warnOnce(slog.LevelInfo, "install "+m, "module disabled by modprobe.d: not loaded",
					"module", m, "for", r.why, "by", rule.Source, "command", rule.Command)
				return err
			}
			// install NAME /bin/true: loading it does nothing, and succeeds.
			c.warnOnce(slog.LevelInfo, "install "+m, "module set aside by modprobe.d: not loaded",
				"module", m, "for", r.why, "by", rule.Source, "command", rule.Command)
			return nil
		}
	}
	st, mine := c.claimOrOwner(m, lt)
	if !mine {
		select {
		case <-st.done:
			return st.err // loaded before: no wait
		default:
		}
	}
	// A load that does not return, or the wait for it, must not hold lt's
	// slot for ever.
	t := time.AfterFunc(c.stuckAfter(), func() { c.stuck(m, wanted, lt) })
	defer t.Stop()
	if !mine {
		<-st.done
		return st.err
	}
	start := time.Now()
	// What a crash in the load leaves as its outcome (safego logs it).
	err := fmt.Errorf("loading module %s crashed (see the error logged)", m)
	defer func() { c.finish(m, st, err) }() // even if loading crashed: others wait for it
	err = c.loadFile(m, wanted, r, lt)
	if !t.Stop() {
		// Reported stuck: say how it ended.
		c.Log.Info("module load reported stuck has returned", "module", m, "took", Round(time.Since(start)), "ok", err == nil)
	}
	return err
}

// SCSIClassDrivers are the drivers of the disks and CDs behind a SCSI
// host: SATA (libata), USB mass storage and virtio-scsi all are one.
var SCSIClassDrivers = []string{"sr_mod", "sd_mod"}

// LoadError is a module the kernel did not load: init_module's error.
type LoadError struct {
	Module, Path string
	Err          error
}

func (e *LoadError) Unwrap() error { return e.Err }

func (e *LoadError) Error() string {
	msg := e.Err.Error()
	var errno unix.Errno
	if errors.As(e.Err, &errno) && errno.Error() == msg {
		// The kernel's own error: say which module and where.
		msg = fmt.Sprintf("loading module %s (%s): %s", e.Module, e.Path, msg)
	} else if !strings.Contains(msg, e.Module) {
		msg = fmt.Sprintf("loading module %s: %s", e.Module, msg)
	}
	if hint := loadHint(e.Err); hint != "" {
		msg += " (" + hint + ")"
	}
	return msg
}

// loadHint says what init_module's error usually means, and where to look.
func loadHint(err error) string {
	switch {
	case errors.Is(err, unix.ENODEV):
		return "the driver found no device it drives"
	case errors.Is(err, unix.ENOENT):
		return "unknown symbol in module, or unknown parameter: see dmesg"
	case errors.Is(err, unix.ENOEXEC):
		return "invalid module format, probably built for another kernel: rebuild the image for this kernel; see dmesg"
	case errors.Is(err, unix.EPERM):
		return "module loading refused: kernel.modules_disabled, lockdown, or a module signature the kernel requires; see dmesg"
	case errors.Is(err, unix.EKEYREJECTED), errors.Is(err, unix.ENOKEY), errors.Is(err, unix.EBADMSG):
		return "module signature rejected: see dmesg"
	case errors.Is(err, unix.EINVAL):
		return "invalid module or parameter: see dmesg"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return "see dmesg for the kernel's reason"
	}
	return ""
}

// loadFile puts module m into the kernel, and says why it did not.
func (c *Coldplug) loadFile(m, wanted string, r request, lt *loadThread) error {
	p := filepath.Join(c.ModDir, c.deps.Load().Path(m))
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		level := slog.LevelWarn
		if r.why == "modalias" && m == wanted {
			level = slog.LevelDebug
		}
		c.warnOnce(level, m, "module file missing", "module", m, "path", p)
		return fmt.Errorf("module %s: file %s missing (modules.dep lists it but the image lacks it: rebuild the image)", m, p)
	}
	start := time.Now()
	params := c.paramsFor(m)
	if m == wanted && r.params != "" {
		params = strings.TrimSpace(params + " " + r.params)
	}
	if c.AsyncProbe {
		params = strings.TrimSpace(params + " async_probe")
	}
	load := func() error { return c.Loader.Load(m, p) }
	if pl, ok := c.Loader.(ParamLoader); ok && params != "" {
		load = func() error { return pl.LoadParams(m, p, params) }
	}
	var err error
	var prep time.Duration
	if pr, ok := c.Loader.(Preparer); ok {
		// Reading and decompressing at the usual priority, the kernel's share at lt's.
		var prepared Prepared
		if prepared, err = pr.Prepare(m, p); err == nil {
			load = func() error { return prepared(params) }
		}
		prep = time.Since(start)
	}
	if err == nil {
		err = c.inKernel(lt, load)
	}
	if errors.Is(err, unix.EEXIST) {
		// Already in the kernel (loaded by someone else meanwhile).
		c.Log.Debug("module already loaded", "module", m)
		return nil
	}
	if err != nil {
		var le *LoadError
		if !errors.As(err, &le) {
			err = &LoadError{Module: m, Path: p, Err: err}
		}
		if errors.Is(err, unix.ENODEV) {
			// Normal for one of several candidates (crc32c_intel on a CPU
			// without SSE4.2, a driver for a device another driver took).
			c.Log.Info("module not for this machine", "module", m, "reason", "no such device")
			return err
		}
		c.Log.Warn("module load failed", "module", m, "reason", err.Error())
		return err
	}
	c.loadCount.Add(1)
	c.mu.Lock()
	c.loaded = append(c.loaded, m)
	c.mu.Unlock()
	attrs := []any{"module", m, "took", Round(time.Since(start))}
	if prep > 0 {
		attrs = append(attrs, "read", Round(prep)) // reading and decompressing the file
	}
	if params != "" {
		attrs = append(attrs, "params", params)
	}
	if lt.bg {
		attrs = append(attrs, "nice", BackgroundNice)
	}
	switch {
	case m != wanted:
		attrs = append(attrs, "for", "dependency of "+wanted)
	case r.modalias != "":
		attrs = append(attrs, "for", r.why, "modalias", r.modalias)
	default:
		attrs = append(attrs, "for", r.why)
	}
	// One line per module is for etoile.debug: on a slow console (a VGA
	// text screen under emulation) each line costs milliseconds, and the
	// boot prints the list once (Loaded).
	c.Log.Debug("module loaded", attrs...)
	return nil
}

// Settle loads drivers until no new device shows up: each finished load
// is followed at once by a new look at the buses (loading virtio_pci makes
// the virtio disk appear; its driver loads while ahci is still probing), and
// once nothing is loading and nothing new was found it keeps looking for
// quiet more (drivers probe asynchronously: a disk shows up some
// milliseconds after its controller's driver loads), bounded by max.
// Between loads it looks every 50 ms, or only once nothing is loading while
// WatchHotplug reports new devices: a look reads every modalias file,
// which is not free on a slow machine.
func (c *Coldplug) Settle(ctx context.Context, quiet, max time.Duration) error {
	deadline := time.Now().Add(max)
	quietSince := time.Time{}
	var wg sync.WaitGroup // never waited for: past max the boot goes on
	for {
		// Drain the signal of loads that finished before this look.
		select {
		case <-c.finished:
		default:
		}
		// While WatchHotplug runs, new devices arrive as events: look at
		// the buses only once everything started has loaded, to be sure.
		n := 0
		if !c.watching.Load() || c.pending.Load() == 0 {
			var err error
			if n, err = c.scanAsync(ctx, &wg); err != nil {
				return err
			}
		}
		now := time.Now()
		switch {
		case n > 0 || c.pending.Load() > 0:
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = now
		}
		if !quietSince.IsZero() && now.Sub(quietSince) >= quiet {
			return nil
		}
		if now.After(deadline) {
			// Whatever still loads goes on; the boot does not wait for it,
			// but says what it is (a driver stuck in its probe is among them).
			c.mu.Lock()
			loading := slices.Sorted(maps.Keys(c.claimedBy))
			c.mu.Unlock()
			if len(loading) > 0 {
				c.Log.Info("drivers still loading; the boot goes on without waiting for them", "waited", Round(max), "modules", strings.Join(loading, ","))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.finished:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ModuleParams picks the module parameters out of kernel arguments, as
// modprobe does: "usb-storage.delay_use=0" gives usb_storage the parameter
// delay_use=0. args is the parsed command line (key → value, "" for a bare
// flag); the result maps module names to their parameters, sorted.
func ModuleParams(args map[string]string) map[string]string {
	byModule := map[string][]string{}
	for key, val := range args {
		mod, param, ok := strings.Cut(key, ".")
		if !ok || mod == "" || param == "" || strings.ContainsAny(mod, "/=") {
			continue
		}
		p := param
		if val != "" {
			if strings.ContainsAny(val, " \t") {
				val = `"` + val + `"`
			}
			p += "=" + val
		}
		byModule[Normalize(mod)] = append(byModule[Normalize(mod)], p)
	}
	out := map[string]string{}
	for mod, ps := range byModule {
		slices.Sort(ps)
		out[mod] = strings.Join(ps, " ")
	}
	return out
}

// DefaultParams are module parameters the boot gives unless the kernel
// command line sets them. usb-storage waits delay_use seconds (1) before it
// asks a new USB device what it holds; the stick the machine boots from was
// read by the firmware a moment before, and the boot asks a stick that did
// need the time again (sysimage.USBHosts), so the wait goes.
// usb-storage.delay_use=1 on the command line brings it back.
var DefaultParams = map[string]string{"usb_storage": "delay_use=0"}

// WithDefaults adds to params (as ModuleParams returns them) each default
// parameter whose name params does not set for its module.
func WithDefaults(params, defaults map[string]string) map[string]string {
	out := maps.Clone(params)
	if out == nil {
		out = map[string]string{}
	}
	for mod, def := range defaults {
		have := map[string]bool{}
		for _, p := range strings.Fields(out[mod]) {
			k, _, _ := strings.Cut(p, "=")
			have[k] = true
		}
		for _, p := range strings.Fields(def) {
			if k, _, _ := strings.Cut(p, "="); !have[k] {
				out[mod] = strings.TrimSpace(out[mod] + " " + p)
			}
		}
	}
	return out
}

// Round keeps durations in logs short and readable.
func Round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// ModulesLoadDirs are where systemd's modules-load.d(5) files live, most
// important first: a file in an earlier folder hides one of the same name
// in a later one.
var ModulesLoadDirs = []string{"/etc/modules-load.d", "/run/modules-load.d", "/usr/local/lib/modules-load.d", "/usr/lib/modules-load.d"}

// ModulesLoad is what the modules-load.d files ask for.
type ModulesLoad struct {
	Names []string          // in the order of the files, each once
	Files []string          // the files read, in order
	From  map[string]string // name → the file that named it first
}

// ReadModulesLoadD reads the module names of every *.conf file of
// ModulesLoadDirs under root, as systemd-modules-load does: files in the
// order of their names, one module per line, '#' and ';' start comments.
// Paths are the machine's, whose / root is: symlinks (a folder, or
// etc/modules-load.d/site.conf -> /usr/lib/modules-load.d/site.conf) lead
// where they lead there, inside root, an absolute target taken from root
// and ".." stopping at it. A build reading an image's tree so never reads
// the build host's files in its place.
func ReadModulesLoadD(root string) (ModulesLoad, error) {
	var out ModulesLoad
	r, err := os.OpenRoot(root)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	defer r.Close()
	// By name, one in an earlier folder hiding the same name in a later
	// one, as confFiles lists them.
	byName := map[string]string{}
	for _, dir := range ModulesLoadDirs {
		real, err := inRoot(r, dir)
		if err != nil {
			return out, err
		}
		entries, err := fs.ReadDir(r.FS(), real)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return out, fmt.Errorf("%s: %w", dir, err)
		}
		for _, e := range entries {
			if _, taken := byName[e.Name()]; taken || !strings.HasSuffix(e.Name(), ".conf") || e.IsDir() {
				continue
			}
			byName[e.Name()] = filepath.Join(dir, e.Name())
		}
	}
	for _, base := range slices.Sorted(maps.Keys(byName)) {
		p := byName[base]
		real, err := inRoot(r, p)
		if err != nil {
			return out, err
		}
		data, err := r.ReadFile(real)
		if err != nil {
			return out, fmt.Errorf("%s: %w", p, err)
		}
		out.Files = append(out.Files, p)
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			if out.From == nil {
				out.From = map[string]string{}
			}
			if n := Normalize(line); out.From[n] == "" {
				out.From[n] = p
				out.Names = append(out.Names, n)
			}
		}
	}
	return out, nil
}

// inRoot resolves p, a path on the machine whose / is r, as that machine
// does: each symlink on the way followed, an absolute target from r's top,
// ".." at the top staying there. It returns the path relative to r ("."
// for its top); the last elements need not exist.
func inRoot(r *os.Root, p string) (string, error) {
	parts := strings.Split(filepath.ToSlash(p), "/")
	var cur []string // real folders, no symlink among them
	for hops := 0; len(parts) > 0; {
		name := parts[0]
		parts = parts[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		next := filepath.Join(filepath.Join(cur...), name)
		info, err := r.Lstat(next)
		if err != nil || info.Mode()&fs.ModeSymlink == 0 {
			cur = append(cur, name)
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symlinks", p)
		}
		to, err := r.Readlink(next)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(to, "/") {
			cur = cur[:0]
		}
		parts = append(strings.Split(to, "/"), parts...)
	}
	if len(cur) == 0 {
		return ".", nil
	}
	return filepath.Join(cur...), nil
}
