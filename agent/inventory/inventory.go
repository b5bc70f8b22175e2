// Package inventory describes a machine's hardware from sysfs and procfs: DMI identity, CPU,
// memory, disks, NICs, RDMA adapters, PCI devices with their pci.ids names, and GPUs (with NVIDIA's driver
// version, memory and MIG mode when its driver is loaded).
//
// It reads a live machine (Options.Root empty) or a copied tree, so the same code is tested
// against real hosts' snapshots. A copied tree may also be a capture made with shell tools
// rather than a byte copy of /proc; besides the kernel's own paths these capture files are
// read at the top of the tree when the kernel's path is missing (the H100 host snapshot in
// ../shared/fixtures/hw/h100-vm has this form):
//
//	meminfo.txt                    /proc/meminfo
//	cpuinfo-head.txt               /proc/cpuinfo (may be cut short: the count comes from…)
//	cpu-count.txt                  …the number of online CPUs (nproc), or /sys/devices/system/cpu/online
//	nvidia-driver-version.txt      /proc/driver/nvidia/version
//	nvidia-gpus-information.txt    /proc/driver/nvidia/gpus/*/information, concatenated
//	nvidia-smi-q.xml               the output of `nvidia-smi -q -x`
//	lsblk.json                     `lsblk -J -b` output, used only when sys/class/block is missing
//
// and a sysfs link may be stored as a text file holding its target's base name (see root).
//
// The JSON field names (snake_case) are an interface: netboot's inventory store and the hub
// read them. Add fields; do not rename them.
package inventory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/etoile-os/etoile/agent/safego"
)

// Inventory is one machine's hardware.
type Inventory struct {
	DMI    DMI    `json:"dmi"`
	CPU    CPU    `json:"cpu"`
	Memory Memory `json:"memory"`
	Disks  []Disk `json:"disks"`
	NICs   []NIC  `json:"nics"`
	// RDMA are the InfiniBand and RoCE adapters (/sys/class/infiniband), with their
	// ports: an HCA in InfiniBand mode without IPoIB is in no NIC list.
	RDMA       []RDMADevice `json:"rdma"`
	PCIDevices []PCIDevice  `json:"pci_devices"`
	GPUs       []GPU        `json:"gpus"`
	// PCIIDs is the pci.ids database the PCI names come from, with its version: "embedded
	// 2026.07.31" (the binary's), or a system's file when newer (/usr/share/misc/pci.ids …).
	PCIIDs string `json:"pci_ids,omitempty"`
	// Warnings name what could not be read; the rest of the inventory is still good.
	Warnings []string `json:"warnings,omitempty"`
}

// DMI is the machine's SMBIOS identity from /sys/class/dmi/id. The serial and UUID are
// readable by root only; they are empty otherwise, and so is a field holding the firmware's
// placeholder ("To Be Filled By O.E.M.", a UUID of zeros). Warnings say which.
type DMI struct {
	Vendor      string `json:"vendor"`
	Product     string `json:"product"`
	Version     string `json:"version"`
	Serial      string `json:"serial"`
	UUID        string `json:"uuid"`
	BoardVendor string `json:"board_vendor"`
	BoardName   string `json:"board_name"`
	BIOSVendor  string `json:"bios_vendor"`
	BIOSVersion string `json:"bios_version"`
}

// CPU summarises the processors. On arm64 the model and vendor are named from the cores'
// MIDR numbers as lscpu names them ("Neoverse-V2", "ARM"), or from the firmware's SMBIOS
// processor record, or by the numbers ("0x41/0xd99").
type CPU struct {
	Model   string `json:"model"`
	Vendor  string `json:"vendor"`
	Count   int    `json:"count"`   // logical CPUs online
	Sockets int    `json:"sockets"` // physical packages (sysfs topology, else cpuinfo; 0 when neither says)
	Cores   int    `json:"cores"`   // physical cores over all sockets (0 when it is not said)
}

// Memory is the RAM: TotalBytes is what the kernel manages (MemTotal, less than what is
// installed: the firmware's and the kernel's own are left out), InstalledBytes what the
// kernel found (its memory blocks, online or not; 0 when sysfs does not say).
type Memory struct {
	TotalBytes     uint64 `json:"total_bytes"`
	InstalledBytes uint64 `json:"installed_bytes,omitempty"`
}

// Disk is a whole block device backed by hardware (loop, zram, dm and other virtual devices
// are left out), or a network volume attached to the machine (Remote).
type Disk struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	SizeBytes uint64 `json:"size_bytes"`
	// Model is the disk's own: a SATA disk's full ATA model (from its IDENTIFY data, not
	// the SCSI layer's 16 characters); an MMC card's (eMMC, SD) product name.
	Model string `json:"model"`
	// Vendor is a SCSI disk's vendor (SAS: SEAGATE, HGST); "" for SATA disks, which the
	// SCSI layer names "ATA".
	Vendor string `json:"vendor,omitempty"`
	Serial string `json:"serial"`
	// WWN is what lsblk's WWN column shows, in the kernel's spelling: a SCSI or SATA disk's
	// NAA or EUI-64 name ("naa.5000c500a1b2c3d4", where lsblk writes "0x5000c500a1b2c3d4"),
	// an NVMe namespace's wwid ("eui.…", "uuid.…", or "nvme.<vid>-<serial>-<model>-<nsid>"
	// for one with neither); "" for a disk with none (a "t10." vendor id is none).
	WWN        string `json:"wwn"`
	Firmware   string `json:"firmware,omitempty"`
	Rotational bool   `json:"rotational"`
	// Transport is nvme, sata (a SATA disk on libata, or behind a SAS HBA), sas, usb,
	// virtio, scsi (other SCSI hosts: virtio-scsi, RAID volumes), mmc, or for a network
	// volume rbd, iscsi, fc (a Fibre Channel LUN), nvme-tcp, nvme-rdma, nvme-fc (nvme-of: a
	// fabric not named), or "" (unknown), from the device's place in the sysfs device tree
	// (a capture's lsblk.json: its TRAN column, in the same words).
	Transport string `json:"transport"`
	// Remote marks a network volume (Ceph RBD, iSCSI, Fibre Channel, NVMe over fabrics: a
	// CSI driver's volume or a SAN's LUN): storage of another machine, never one to install
	// on. A SAN LUN the machine boots from is listed too, remote and boot.
	Remote    bool `json:"remote,omitempty"`
	Removable bool `json:"removable"`
	// NoMedium marks a removable device with nothing in it (an empty card reader or
	// optical drive, a BMC's virtual CD or floppy with no image): its size is 0.
	NoMedium bool `json:"no_medium,omitempty"`
	ReadOnly bool `json:"read_only"`
	// FSLabel is the label of a filesystem on the whole disk (an ISO written to a stick).
	FSLabel string `json:"fs_label"`
	// Boot is true for the medium this machine booted from; BootReason says how that was told.
	Boot       bool        `json:"boot"`
	BootReason string      `json:"boot_reason,omitempty"`
	Partitions []Partition `json:"partitions"`
	// Paths, for a disk reached through several paths (a SAN LUN, a dual-port
	// SAS disk: the same WWN, serial and size), are the other paths' devices;
	// Path is the first, and the disk is listed once.
	Paths []string `json:"paths,omitempty"`
}

// Partition is an existing partition of a disk.
type Partition struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Number int    `json:"number"`
	// StartBytes is where the partition starts on its disk; nil (left out of the JSON)
	// when it is not known (a capture of lsblk without its START column). A partition may
	// start at 0 (an ISO's, written to a stick), so 0 is no "unknown".
	StartBytes *uint64 `json:"start_bytes,omitempty"`
	SizeBytes  uint64  `json:"size_bytes"`
	PartLabel  string  `json:"part_label"` // GPT partition name
	FSLabel    string  `json:"fs_label"`   // filesystem label, when it could be read
}

// NIC is a network interface backed by hardware (lo, bridges, veths, tunnels are left out).
type NIC struct {
	Name string `json:"name"`
	// MAC is an Ethernet NIC's own address (a bond member's permanent one, not the bond's);
	// "" for other link types, whose address is in HWAddress.
	MAC string `json:"mac"`
	// LinkType is the link layer, as `ip link` names it: ethernet, infiniband, can, rawip
	// (a modem), none, or "type N" (the kernel's ARPHRD number); "" when sysfs does not say.
	LinkType string `json:"link_type,omitempty"`
	// HWAddress is the link-layer address of a NIC that is not Ethernet (IPoIB: 20 bytes).
	HWAddress string `json:"hw_address,omitempty"`
	Driver    string `json:"driver"`
	SpeedMbps int    `json:"speed_mbps"` // 0 when unknown (link down, virtual NIC)
	Carrier   bool   `json:"carrier"`
	OperState string `json:"oper_state"`
	// PCIAddress is the NIC's PCI function; "" for a NIC on another bus (USB).
	PCIAddress string `json:"pci_address,omitempty"`
	// Bus is "usb" for a USB NIC (a BMC's host interface, a dongle), with its USBPath
	// (port path: 1-3); "" for a PCI one.
	Bus     string `json:"bus,omitempty"`
	USBPath string `json:"usb_path,omitempty"`
}

// PCIDevice is one function on the PCI bus. Ids are lower-case hex without "0x", as pci.ids
// and `lspci -n` write them; names come from the embedded pci.ids and are "" when unknown.
type PCIDevice struct {
	Address           string   `json:"address"`
	Class             string   `json:"class"`
	ClassName         string   `json:"class_name"`
	VendorID          string   `json:"vendor_id"`
	VendorName        string   `json:"vendor_name"`
	DeviceID          string   `json:"device_id"`
	DeviceName        string   `json:"device_name"`
	SubsystemVendorID string   `json:"subsystem_vendor_id"`
	SubsystemDeviceID string   `json:"subsystem_device_id"`
	SubsystemName     string   `json:"subsystem_name"`
	Revision          string   `json:"revision"`
	Driver            string   `json:"driver"`
	NUMANode          int      `json:"numa_node"` // -1 when the platform has none
	Link              *PCILink `json:"link,omitempty"`
	// PhysicalFunction is, for an SR-IOV virtual function, its physical
	// function's address: a VF is no device of its own to count (a GPU's
	// for a VM, a NIC's for a pod).
	PhysicalFunction string `json:"physical_function,omitempty"`
}

// PCILink is a PCI Express link's state as sysfs reports it.
type PCILink struct {
	CurrentSpeed string `json:"current_speed"` // "32.0 GT/s PCIe"
	CurrentWidth int    `json:"current_width"` // lanes
	MaxSpeed     string `json:"max_speed"`
	MaxWidth     int    `json:"max_width"`
	CurrentGen   int    `json:"current_gen,omitempty"` // PCIe generation of the current speed
	MaxGen       int    `json:"max_gen,omitempty"`
}

// GPU is a graphics or compute accelerator.
type GPU struct {
	Vendor string `json:"vendor"` // nvidia, amd, intel
	Model  string `json:"model"`
	// ModelSource says where Model comes from: "driver" (the vendor's
	// driver: NVIDIA's product name), "pci.ids" (the database's name of the
	// chip, which can differ: GH100 [H100 SXM5 80GB]) or "ids" (unknown to
	// both: vendor:device).
	ModelSource string   `json:"model_source"`
	PCIAddress  string   `json:"pci_address"`
	VendorID    string   `json:"vendor_id"`
	DeviceID    string   `json:"device_id"`
	Driver      string   `json:"driver"`
	Link        *PCILink `json:"link,omitempty"`
	NUMANode    int      `json:"numa_node"`
	// Known only with the vendor's driver loaded (NVIDIA: /proc/driver/nvidia, nvidia-smi).
	DriverVersion  string `json:"driver_version,omitempty"`
	CUDAVersion    string `json:"cuda_version,omitempty"`
	MemoryMiB      uint64 `json:"memory_mib,omitempty"`
	MIGMode        string `json:"mig_mode,omitempty"`         // enabled, disabled, "" when unknown or unsupported
	MIGModePending string `json:"mig_mode_pending,omitempty"` // what the next GPU reset applies
	// Persistence mode keeps the driver's state while no program uses the GPU (else each
	// nvidia-smi or CUDA start initialises it again): enabled, disabled, "" when unknown.
	PersistenceMode string `json:"persistence_mode,omitempty"`
	// Unreachable marks an NVIDIA GPU bound to NVIDIA's driver that nvidia-smi left out while
	// it wrote of the others (exiting non-zero, "Unable to determine the device handle for
	// GPU…", or 0): fallen off the bus, or lost by its driver. Its memory, MIG and
	// persistence mode are not known.
	Unreachable bool `json:"unreachable,omitempty"`
	// Excluded marks an NVIDIA GPU its driver was told to leave alone (the NVreg_ExcludedGpus
	// module option; /proc/driver/nvidia/gpus/…/information says "GPU Excluded: Yes"): no
	// program can use it, nvidia-smi does not list it, and NodeLabels does not count it.
	Excluded     bool   `json:"excluded,omitempty"`
	UUID         string `json:"uuid,omitempty"`
	VBIOS        string `json:"vbios,omitempty"`
	Architecture string `json:"architecture,omitempty"`
}

// RunFunc runs a program and returns its standard output. It is the seam through which
// nvidia-smi is run, so tests can stand in for it. When the program fails it may return what
// it wrote with the error (RunTool does, on a non-zero exit): nvidia-smi -q -x exits 15 after
// writing of the GPUs it reached when another has fallen off the bus.
type RunFunc func(ctx context.Context, name string, args ...string) ([]byte, error)

// Options tune Collect. The zero value reads the live machine.
type Options struct {
	// Root is the directory holding the machine's /sys and /proc; "" or "/" is this machine.
	// With another root no program is run unless Run is set: nvidia-smi's output is read
	// from ROOT/nvidia-smi-q.xml when present.
	Root string
	// BootDevice, when set, names the device the machine booted from ("sr0", "sda",
	// "/dev/nvme0n1p2"); its disk is marked Boot, and none when it names no disk or
	// partition here (a warning says so). When empty, the boot medium is detected from
	// labels (see markBoot).
	BootDevice string
	// Run runs nvidia-smi; nil uses os/exec with the PATH on a live machine.
	Run RunFunc
	// Start and Release, when set, start the programs Run's default runs and
	// hand their exit back: PID 1's reaper (boot.Reaper), which otherwise
	// reaps every child, nvidia-smi included, before os/exec's Wait can.
	Start   func(*exec.Cmd) error
	Release func(pid int)
	// Logger receives debug notes on what was skipped; nil discards them.
	Logger *slog.Logger
}

// nvidiaSMITimeout bounds nvidia-smi, which can hang for a long time on a GPU in a bad state;
// an inventory without its extra details is better than none.
const nvidiaSMITimeout = 20 * time.Second

// stuckGrace is how long a command killed at its deadline is waited for
// before it is given up on (RunTool); tests shorten it.
var stuckGrace = 5 * time.Second

// Collect reads the machine's inventory. It fails only when the root cannot be read at all,
// or when ctx ends first (what was read is dropped: the caller has stopped waiting for it);
// a section that cannot be read is left empty and named in Warnings.
func Collect(ctx context.Context, opts Options) (*Inventory, error) {
	r := newRoot(opts.Root)
	if !r.live {
		st, err := os.Stat(r.dir)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("inventory root %s: %w (give the folder holding a copy of sys/ and proc/)", r.dir, err)
		}
		if !st.IsDir() {
			r.close()
			return nil, fmt.Errorf("inventory root %s is not a folder (give the folder holding a copy of sys/ and proc/)", r.dir)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &collector{r: r, opts: opts, log: log, inv: &Inventory{
		Disks: []Disk{}, NICs: []NIC{}, RDMA: []RDMADevice{}, PCIDevices: []PCIDevice{}, GPUs: []GPU{},
	}}
	c.r.notes = &rootNotes{warn: func(msg string) { c.warn("%s", msg) }}
	c.driverWait, c.readDriverFile = driverWait, readDriverFile // read here: the sections may outlive this call
	// The sections run apart from the caller, who gets its answer when ctx ends even
	// while a read is held in the kernel (every read is bounded or cannot block, but a
	// kernel can hold one anyway): the agent's Ctrl-C and SIGTERM end the command. The
	// sections stop at the next one.
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.r.close()
		// A panic here (a parser meeting what it did not expect) would end the
		// agent, PID 1, whatever the caller recovers: said, and the sections
		// read so far kept.
		defer func() {
			if p := recover(); p != nil {
				safego.Report(c.log, "collecting the hardware inventory", p)
				c.warn("the inventory stopped early: internal error (panic: %v); what follows the section it was in is missing: report this as a bug", p)
			}
		}()
		c.dmi()
		c.step(ctx, "cpu", c.cpu)
		c.step(ctx, "memory", c.memory)
		c.step(ctx, "disks", c.disks)
		c.step(ctx, "nics", c.nics)
		c.step(ctx, "pci", c.pci)
		c.step(ctx, "rdma", c.rdma)
		c.step(ctx, "gpus", func() error { return c.gpus(ctx) })
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hardware inventory: %w", context.Cause(ctx))
	}
	return c.inv, nil
}

type collector struct {
	r    root
	opts Options
	log  *slog.Logger
	inv  *Inventory
	// probeHung is set once a device's first bytes did not come within
	// probeWait: the labels of the devices after it are not read.
	probeHung bool
	// driverHung is set once a read of /proc/driver/nvidia did not end within
	// driverWait: the driver's other files are not read.
	driverHung     bool
	driverWait     time.Duration
	readDriverFile func(root, string) ([]byte, error)
}

// step runs a section unless ctx has ended.
func (c *collector) step(ctx context.Context, name string, f func() error) {
	if ctx.Err() != nil {
		return
	}
	if err := f(); err != nil {
		c.warn("%s: %v", name, err)
	}
}

func (c *collector) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.log.Debug("inventory warning", "warning", msg)
	c.inv.Warnings = append(c.inv.Warnings, msg)
}

// readCapture reads the kernel file p, or in a copied tree the capture file named capture.
func (c *collector) readCapture(p, capture string) ([]byte, error) {
	b, err := c.r.readFile(p)
	if err == nil || c.r.live || capture == "" || !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	b2, err2 := c.r.readFile("/" + capture)
	if err2 != nil {
		return nil, err // the kernel path is the one to name
	}
	return b2, nil
}

// runNvidiaSMI returns the output of `nvidia-smi -q -x`, or nil when there is none to have.
// A caller's Run is always used (tests stand in for nvidia-smi through it, in a copied tree
// too); otherwise a copied tree's capture file is read, and a live machine runs nvidia-smi
// when it is on the PATH.
func (c *collector) runNvidiaSMI(ctx context.Context) ([]byte, error) {
	run := c.opts.Run
	if run == nil && !c.r.live {
		b, err := c.r.readFile("/nvidia-smi-q.xml")
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	if run == nil {
		if _, err := exec.LookPath("nvidia-smi"); err != nil {
			return nil, nil // no tools in this image: /proc/driver/nvidia is enough
		}
		run = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return RunTool(ctx, c.opts.Start, c.opts.Release, name, args...)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, nvidiaSMITimeout)
	defer cancel()
	out, err := run(ctx, "nvidia-smi", "-q", "-x")
	if err != nil {
		// What it wrote is kept: with one GPU it cannot reach, nvidia-smi
		// exits non-zero after writing of the others (see nvidia).
		return out, fmt.Errorf("run nvidia-smi -q -x: %w", err)
	}
	return out, nil
}

// RunTool runs a tool as the inventory runs nvidia-smi: started with start (the reaper's, as
// PID 1) and released with release, killed at ctx's end and given up on when it does not die;
// its error carries what it printed. On a non-zero exit its standard output is returned too,
// with the error, as exec.Cmd.Output does (nvidia-smi writes of the GPUs it reached before
// exiting 15 for one it did not), and the error's *exec.ExitError holds its standard error.
func RunTool(ctx context.Context, start func(*exec.Cmd) error, release func(int), name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if start == nil {
		start = (*exec.Cmd).Start
	}
	err := start(cmd)
	if err == nil {
		pid := cmd.Process.Pid
		waited := make(chan error, 1)
		go func() {
			err := errors.New("waiting for it crashed")
			defer func() { waited <- err }()
			defer safego.Recover(nil, "waiting for "+name) // (slog.Default: the agent's)
			err = cmd.Wait()
			if release != nil {
				release(pid)
			}
		}()
		select {
		case err = <-waited:
		case <-ctx.Done():
			// Killed at ctx's end; a process stuck in the kernel (nvidia-smi
			// in a driver whose GPU fell off the bus) does not die, and its
			// wait would never end: given up on after stuckGrace.
			select {
			case err = <-waited:
			case <-time.After(stuckGrace):
				return nil, fmt.Errorf("%s (pid %d) did not exit when killed: it is stuck in the kernel (a GPU that fell off the bus does that to nvidia-smi; the kernel log says more)", name, pid)
			}
		}
	}
	if err != nil {
		var out []byte
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			exit.Stderr = stderr.Bytes()
			out = stdout.Bytes()
		}
		// nvidia-smi explains failures on stdout ("NVIDIA-SMI has failed because…").
		why := bytes.TrimSpace(stderr.Bytes())
		if len(why) == 0 {
			why = bytes.TrimSpace(stdout.Bytes())
		}
		if len(why) > 0 {
			return out, fmt.Errorf("%w: %s", err, trimOutput(why))
		}
		return out, err
	}
	return stdout.Bytes(), nil
}

func trimOutput(b []byte) string {
	const max = 200
	s := string(b)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
