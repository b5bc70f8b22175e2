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
	"os"
	"path/filepath"
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
		go srv.Serve(context.Background())
	}
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
			return mountPartition(mount, config.StateLabel, "/run/etoile/state", "ext4", m.BootDisk)
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
		NodeAddress: network.NodeAddress,
		Power:       powerThroughSignal,
		Start:       m.Reaper().Start,
		Release:     m.Reaper().Release,
		Slot:        slot,
		NodeName:    hostname,
		Log:         m.Log(),
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
// no such partition is config.ErrNotFound.
func mountPartition(mount func(dev, dir string, fstypes []string) error, label, dir, fstype, disk string) (string, error) {
	devs, err := sysimage.ListBlock("/sys", "/dev")
	if err != nil {
		return "", err
	}
	d, ok := onDisk(sysimage.FindPartitions(devs, label), disk)
	if !ok {
		return "", fmt.Errorf("%w: no partition labelled %s", config.ErrNotFound, label)
	}
	return dir, mount(d.Path, dir, []string{fstype})
}

// onDisk picks the partition on the boot disk among those with one label
// (another disk may carry Étoile's labels too): none when the boot disk has
// none, so that a stick booted on a server with Étoile installed does not
// read the installed disk's config or state. With the boot disk unknown
// (netboot) the first.
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
	st := api.Status{Version: agent.ImageVersion("/"), Agent: agent.Version, Hostname: hostname, Boot: "bios", Source: m.Source, Slot: slot}
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		st.Boot = "uefi"
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		st.Uptime = time.Duration(ts.Nano()).Round(time.Second).String()
	}
	if res := m.NetworkResult(); res != nil {
		for _, l := range res.AllLeases() {
			st.Network = append(st.Network, api.Interface{Name: l.Iface, MAC: l.MAC.String(), Carrier: true,
				Addresses: []string{l.Addr.String()}})
		}
	}
	return st
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
