package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent"
	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/boot"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/kmsg"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/network"
	"github.com/etoile-os/etoile/agent/node"
	"github.com/etoile-os/etoile/agent/safego"
	"github.com/etoile-os/etoile/agent/sysimage"
	"github.com/etoile-os/etoile/agent/syslogd"
	"github.com/etoile-os/etoile/agent/timesync"
)

// services are what PID 1 runs after the boot steps (agent/node).
type services struct {
	mu        sync.Mutex
	node      *node.Node
	agentLogs *logring.Ring // the agent's console log, for /v1/logs?source=agent
	// timeBehind: PID 1 found the clock before the image's build time.
	timeBehind bool
}

// wait returns once the services stopped (their context ended).
func (s *services) wait() {
	s.mu.Lock()
	n := s.node
	s.mu.Unlock()
	if n != nil {
		n.Wait()
	}
}

// start runs once the boot steps are done, before the ready line: the
// machine config, K3s and the local API. It returns the pairs that end the
// ready line.
func (s *services) start(ctx context.Context, m *boot.Machine) []string {
	media := m.MediaDirs()
	// The filesystems the config sources need load in this process: the
	// kernel would otherwise start the agent again as modprobe for each.
	mount := func(dev, dir string, fstypes []string) error {
		for _, t := range fstypes {
			m.LoadFS(ctx, t)
		}
		return boot.MountReadOnly(dev, dir, fstypes)
	}
	var esp config.Source
	if m.Source == sysimage.SourceDisk {
		// The raw disk's ESP may hold /etoile/config.yaml (etoile build --config).
		esp = espSource{mount: mount, log: m.Log(), disk: m.BootDisk, told: new(atomic.Bool)}
	}
	// The image's daemons log through syslog(3) to /dev/log: kept for
	// `etoile-agent logs syslog`, their warnings on the consoles. Open
	// until the machine goes down: what daemons say as they are stopped
	// (after ctx ended) is kept too.
	var syslogLogs func(uint64) ([]string, uint64, uint64)
	daemons := logring.New(1000)
	if srv, err := syslogd.Listen(syslogd.DefaultPath, daemons, m.Log()); err != nil {
		m.Log().Warn("daemons' syslog messages are not kept", "reason", err.Error())
	} else {
		syslogLogs = daemons.Since
		goRecovered(m.Broadcast, "syslog server", func() { srv.Serve(context.Background()) })
	}
	stateTold := &toldOnce{log: m.Log()}
	hostname, _ := os.Hostname()
	slot := m.Slot
	if slot == "" {
		slot = "none"
	}
	n := node.Start(ctx, node.Env{
		Root:         "/",
		ConfigURL:    m.Params.Config,
		ConfigVolume: func() config.Source { return m.ConfigVolume(ctx) },
		BootMedia:    media,
		ESP:          esp,
		State: func() (string, error) {
			return mountPartition(mount, config.StateLabel, "/run/etoile/state", "ext4", m.BootDisk, stateTold)
		},
		Broadcast: m.Broadcast,
		ReadyLine: m.ReadyLine,
		Status: func() api.Status {
			h, _ := os.Hostname() // the machine config may have set it
			return machineStatus(m, h, slot)
		},
		ApplyNetwork:   m.ApplyNetwork,
		DriversLoaded:  m.ImageDriversLoaded(),
		DriversSettled: m.ImageDriversSettled(),
		AgentLogs:      s.agentLogs.Since,
		AgentLogsAt:    s.agentLogs.SinceAt,
		SyslogLogs:     syslogLogs,
		KernelLog:      func() ([]kmsg.Record, error) { return kmsg.Read("/dev/kmsg") },
		Clock:          timesync.KernelClock{},
		TimeFloor:      imageBuildTime(),
		TimeBehind:     s.timeBehind,
		NTPServers: func() []string {
			if res := m.NetworkResult(); res != nil {
				return network.NTPServers(res.AllLeases())
			}
			return nil
		},
		NodeAddress:  network.NodeAddress,
		NodeNetworks: network.NodeNetworks,
		Power:        powerThroughSignal,
		Start:        m.Reaper().Start,
		Release:      m.Reaper().Release,
		Slot:         slot,
		BootDevice:   m.Device, // "" for a netboot
		NodeName:     hostname,
		Log:          m.Log(),
	})
	m.SetOnAddressChange(func(l network.Lease) {
		addr := ""
		if l.Addr.IP != nil {
			addr = l.Addr.String()
		}
		n.AddressChanged(l.Iface, addr)
	})
	s.mu.Lock()
	s.node = n
	s.mu.Unlock()
	return []string{"k3s=" + n.K3sState()}
}

// imageBuildTime is when the running image was built: its files carry the
// build's SOURCE_DATE_EPOCH as their time (zero when unknown).
func imageBuildTime() time.Time {
	st, err := os.Stat(agent.ImageVersionFile)
	if err != nil || st.ModTime().Unix() <= 0 {
		return time.Time{}
	}
	return st.ModTime()
}

// espSource is /etoile/config.yaml on the boot disk's EFI system partition
// (etoile build --config puts it there), read without mounting the ESP
// (sysimage.ReadFATFile: FAT's modules need not load); an ESP that cannot be
// read that way (not FAT32) is mounted instead.
type espSource struct {
	mount func(dev, dir string, fstypes []string) error
	log   *slog.Logger
	disk  string // the boot disk, whose ESP is the one to read
	// told is set once the fallback to mounting was logged: a node waiting
	// for its config reads the ESP every 10 s.
	told *atomic.Bool
}

func (espSource) Name() string { return "boot medium (EFI system partition)" }

func (s espSource) Read(ctx context.Context) ([]byte, error) {
	devs, err := sysimage.ListBlock("/sys", "/dev")
	if err != nil {
		return nil, err
	}
	d, ok := onDisk(sysimage.FindPartitions(devs, boot.ESPLabel), s.disk)
	if !ok {
		return nil, fmt.Errorf("%w: no partition labelled %s", config.ErrNotFound, boot.ESPLabel)
	}
	data, err := sysimage.ReadFATFile(d.Path, config.BootMediumFile, config.MaxSize)
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: /%s on %s", config.ErrNotFound, config.BootMediumFile, d.Path)
	}
	if s.told == nil || !s.told.Swap(true) {
		s.log.Info("reading the EFI system partition without mounting it failed: mounting it", "device", d.Path, "reason", err.Error())
	}
	if err := s.mount(d.Path, boot.ESPDir, []string{"vfat"}); err != nil {
		return nil, fmt.Errorf("mounting the EFI system partition %s: %w", d.Path, err)
	}
	return config.BootMediumSource(boot.ESPDir).Read(ctx)
}

// mountPartition mounts the GPT partition labelled label read-only at dir;
// no such partition is config.ErrNotFound (pickPartition).
func mountPartition(mount func(dev, dir string, fstypes []string) error, label, dir, fstype, disk string, told *toldOnce) (string, error) {
	devs, err := sysimage.ListBlock("/sys", "/dev")
	if err != nil {
		return "", err
	}
	d, err := pickPartition(sysimage.FindPartitions(devs, label), label, disk, told)
	if err != nil {
		return "", err
	}
	return dir, mount(d.Path, dir, []string{fstype})
}

// pickPartition is the partition labelled label (parts) to use: the boot
// disk's (onDisk); with no boot disk (netboot), the only one there is, and
// none when several disks carry the label (told says which, once).
func pickPartition(parts []sysimage.BlockDev, label, disk string, told *toldOnce) (sysimage.BlockDev, error) {
	if disk == "" {
		switch {
		case len(parts) == 1:
			told.tell(slog.LevelInfo, "no boot disk (netboot): using the only partition labelled "+label, "device", parts[0].Path)
		case len(parts) > 1:
			var names []string
			for _, p := range parts {
				names = append(names, p.Path)
			}
			told.tell(slog.LevelWarn, "no boot disk (netboot) and several partitions labelled "+label+": none is used", "all", strings.Join(names, ","),
				"fix", "keep one disk with Étoile's state partition in this machine, or give the machine its config by etoile.config= or an ETOILE-CFG volume")
			return sysimage.BlockDev{}, fmt.Errorf("%w: several partitions labelled %s and no boot disk to choose by (%s)", config.ErrNotFound, label, strings.Join(names, ","))
		}
	}
	d, ok := onDisk(parts, disk)
	if !ok {
		return sysimage.BlockDev{}, fmt.Errorf("%w: no partition labelled %s", config.ErrNotFound, label)
	}
	return d, nil
}

// toldOnce writes a line when it differs from the last one it wrote (a
// node waiting for its config reads its sources again and again).
type toldOnce struct {
	log  *slog.Logger
	mu   sync.Mutex
	last string
}

func (t *toldOnce) tell(level slog.Level, msg string, args ...any) {
	if t == nil || t.log == nil {
		return
	}
	key := fmt.Sprint(msg, args)
	t.mu.Lock()
	same := key == t.last
	t.last = key
	t.mu.Unlock()
	if !same {
		t.log.Log(context.Background(), level, msg, args...)
	}
}

// onDisk picks the partition on the boot disk among those with one label
// (another disk may carry Étoile's labels too): none when the boot disk has
// none, so that a stick booted on a server with Étoile installed does not
// read the installed disk's config or state. With the boot disk unknown
// (netboot) the first (mountPartition has made sure it is the only one).
func onDisk(parts []sysimage.BlockDev, disk string) (sysimage.BlockDev, bool) {
	for _, p := range parts {
		if disk == "" || p.Disk == disk {
			return p, true
		}
	}
	return sysimage.BlockDev{}, false
}

// machineStatus is what the boot knows, for the local API.
func machineStatus(m *boot.Machine, hostname, slot string) api.Status {
	return machineStatusAt("/", m, hostname, slot, systemAddresses)
}

// machineStatusAt is machineStatus for the machine whose root is root ("/"
// on a node, a folder in tests), addrs giving a link's addresses.
func machineStatusAt(root string, m *boot.Machine, hostname, slot string, addrs func(name string) []string) api.Status {
	st := api.Status{Version: agent.ImageVersion(root), Agent: agent.Version, Hostname: hostname, Boot: "bios", Source: m.Source, Slot: slot}
	if _, err := os.Stat(filepath.Join(root, "sys/firmware/efi")); err == nil {
		st.Boot = "uefi"
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		st.Uptime = time.Duration(ts.Nano()).Round(time.Second).String()
	}
	var (
		leases []network.Lease
		known  []string
	)
	if res := m.NetworkResult(); res != nil {
		leases, known = res.AllLeases(), res.Links
	}
	st.Network = links(filepath.Join(root, "sys/class/net"), addrs, leases, known...)
	return st
}

// links lists the machine's links for the status: every physical one (a
// device under sysClassNet), with or without a carrier or an address, and
// any other that holds a DHCP lease or that the network step configured
// (known, the network result's links: a VLAN with a static address from
// the machine config); each with its carrier as the kernel says it and its
// addresses (addrs, the lease's when addrs has none; IPv6 link-local ones
// left out, every link has one).
func links(sysClassNet string, addrs func(name string) []string, leases []network.Lease, known ...string) []api.Interface {
	leased := map[string]network.Lease{}
	for _, l := range leases {
		leased[l.Iface] = l
	}
	ents, _ := os.ReadDir(sysClassNet)
	var out []api.Interface
	for _, e := range ents {
		name := e.Name()
		dir := filepath.Join(sysClassNet, name)
		_, lease := leased[name]
		bond := bondOf(dir)
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil && !lease && !slices.Contains(known, name) && bond == nil {
			continue // virtual: lo, bridges, K3s's cni0 and flannel.1
		}
		ifc := api.Interface{Name: name, MAC: readTrim(filepath.Join(dir, "address")), Bond: bond}
		if own := readTrim(filepath.Join(dir, "bonding_slave/perm_hwaddr")); own != "" {
			ifc.MAC = own // a bond's member shows the bond's address: its own tells the ports apart
		}
		if m, err := os.Readlink(filepath.Join(dir, "master")); err == nil {
			ifc.Master = filepath.Base(m)
		}
		// carrier reads "1" with a link, "0" without; reading fails
		// (EINVAL) on a link that is down: no carrier either.
		ifc.Carrier = readTrim(filepath.Join(dir, "carrier")) == "1"
		if addrs != nil {
			ifc.Addresses = addrs(name)
		}
		if l, ok := leased[name]; ok && len(ifc.Addresses) == 0 && l.Addr.IP != nil {
			ifc.Addresses = []string{l.Addr.String()}
		}
		ifc.Addresses = nonNilStrings(ifc.Addresses)
		out = append(out, ifc)
		delete(leased, name)
	}
	// A lease on a link sysfs does not list (a test's, or gone since).
	for _, l := range leases {
		if _, ok := leased[l.Iface]; ok {
			out = append(out, api.Interface{Name: l.Iface, MAC: l.MAC.String(), Carrier: true, Addresses: []string{l.Addr.String()}})
			delete(leased, l.Iface)
		}
	}
	return out
}

// bondOf is the bond the link whose sysfs folder is dir is, nil when it is
// none: bonding/mode reads "active-backup 1", bonding/slaves its members,
// bonding/active_slave the member in use (active-backup; empty otherwise).
func bondOf(dir string) *api.Bond {
	name, _, _ := strings.Cut(readTrim(filepath.Join(dir, "bonding/mode")), " ")
	if name == "" {
		return nil
	}
	return &api.Bond{Mode: name, Members: nonNilStrings(strings.Fields(readTrim(filepath.Join(dir, "bonding/slaves")))),
		Active: readTrim(filepath.Join(dir, "bonding/active_slave"))}
}

// systemAddresses are a link's addresses in CIDR form, as the kernel has
// them now, IPv6 link-local ones left out.
func systemAddresses(name string) []string {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	as, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsLinkLocalUnicast() && ipn.IP.To4() == nil {
			continue
		}
		out = append(out, a.String())
	}
	return out
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// goRecovered runs f in a goroutine whose panic is shown on every console
// as an `etoile: error` line (broadcast), never the end of PID 1.
func goRecovered(broadcast func(string), what string, f func()) {
	go func() {
		defer func() {
			if r := recover(); r != nil {
				broadcast(safego.Line(what, r))
			}
		}()
		f()
	}()
}

// runStatus is `etoile-agent status [--json]`: the running agent's status
// through its local API.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("etoile-agent status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	socket := fs.String("socket", api.DefaultSocket, "the agent's local API socket")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if err := noArgs(fs, stderr, "status", "another agent's socket is given with --socket PATH"); err != nil {
		return err
	}
	st, err := api.NewClient(filepath.Clean(*socket)).Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return api.WriteStatus(stdout, st)
}

// powerThroughSignal reboots or powers off the machine the way a signal to
// PID 1 does (SIGTERM, SIGUSR2), so that the local API's request takes the
// same path as Ctrl-Alt-Del and the power button: K3s stopped cleanly, then
// everything else. The signal comes a moment later, after the answer.
func powerThroughSignal(action string) error {
	sig := unix.SIGTERM
	if action == "poweroff" {
		sig = unix.SIGUSR2
	}
	time.AfterFunc(200*time.Millisecond, func() { _ = unix.Kill(os.Getpid(), sig) })
	return nil
}
