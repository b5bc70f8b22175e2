package inventory

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"

	"github.com/etoile-os/etoile/internal/devread"
)

// gpuVendors are the PCI vendors whose display and accelerator functions count as GPUs.
// Others with a display class are left out on purpose: a server's BMC (ASPEED, Matrox) and a
// VM's emulated VGA (QEMU's bochs, virtio-gpu) show a display controller but are no GPU to
// schedule work on.
var gpuVendors = map[string]string{
	"10de": "nvidia",
	"1002": "amd",
	"8086": "intel",
}

// isGPU: display controllers (base class 0x03: VGA, XGA, 3D, other) of the GPU vendors, and
// processing accelerators (0x12) of NVIDIA and AMD, which is how some compute-only GPUs
// present themselves. Intel's 0x12 functions are NPUs, not GPUs.
func isGPU(vendor, class string) bool {
	switch {
	case strings.HasPrefix(class, "03"):
		return true
	case strings.HasPrefix(class, "12"):
		return vendor == "nvidia" || vendor == "amd"
	}
	return false
}

func (c *collector) gpus(ctx context.Context) error {
	for _, d := range c.inv.PCIDevices {
		vendor, ok := gpuVendors[d.VendorID]
		if !ok || !isGPU(vendor, d.Class) || d.PhysicalFunction != "" {
			continue // an SR-IOV virtual function is a share of a GPU listed already
		}
		model, source := d.DeviceName, "pci.ids"
		if model == "" {
			// Unknown to pci.ids: shown as ids, never guessed.
			model, source = d.VendorID+":"+firstNonEmpty(d.DeviceID, "unknown"), "ids"
		}
		c.inv.GPUs = append(c.inv.GPUs, GPU{
			Vendor:      vendor,
			Model:       model,
			ModelSource: source,
			PCIAddress:  d.Address,
			VendorID:    d.VendorID,
			DeviceID:    d.DeviceID,
			Driver:      d.Driver,
			Link:        d.Link,
			NUMANode:    d.NUMANode,
		})
	}
	return c.nvidia(ctx)
}

// nvidia adds what NVIDIA's driver knows: /proc/driver/nvidia (always there with the driver
// loaded) gives the version and the marketing name; nvidia-smi, when the image carries it,
// adds memory and MIG mode. Neither is needed for the GPU to be listed.
func (c *collector) nvidia(ctx context.Context) error {
	byAddr := map[string]*GPU{}
	withDriver := false
	for i := range c.inv.GPUs {
		g := &c.inv.GPUs[i]
		if g.Vendor == "nvidia" {
			byAddr[g.PCIAddress] = g
			withDriver = withDriver || g.Driver == "nvidia"
		}
	}
	if len(byAddr) == 0 {
		return nil
	}
	version := ""
	if b, err := c.readDriver("/proc/driver/nvidia/version", "nvidia-driver-version.txt"); err == nil {
		version = ParseNvidiaVersion(b)
	}
	for _, info := range c.nvidiaInformation() {
		if g := byAddr[info.BusLocation]; g != nil {
			g.DriverVersion = version
			if info.Model != "" {
				g.Model, g.ModelSource = info.Model, "driver"
			}
			g.UUID = info.UUID
			g.VBIOS = info.VBIOS
			if info.Excluded {
				g.Excluded = true
				c.warn("GPU %s: excluded from NVIDIA's driver (\"GPU Excluded: Yes\" in /proc/driver/nvidia/gpus/%s/information: the NVreg_ExcludedGpus module option names it): no program can use it, and the node's GPU count leaves it out; remove it from NVreg_ExcludedGpus and reload the driver to use it", g.PCIAddress, g.PCIAddress)
			}
		}
	}
	if !withDriver && c.r.live {
		return nil // nvidia-smi cannot say more without the driver, and may be slow to say so
	}
	out, runErr := c.runNvidiaSMI(ctx)
	var smi *NvidiaSMI
	if runErr != nil {
		// A GPU the driver cannot reach (fallen off the bus: "Unable to determine the
		// device handle for GPU…: Unknown Error") makes nvidia-smi exit non-zero, 15,
		// after writing of the others; their details are kept when what it wrote is a
		// whole, well-formed document. Anything less is not read.
		var rest string
		smi, rest = partialNvidiaSMI(out)
		if smi == nil {
			return fmt.Errorf("%w (GPUs are listed without memory and MIG mode; run nvidia-smi on the machine to see why)", runErr)
		}
		c.warn("nvidia-smi -q -x failed (%s); the GPUs its output lists have their details", smiFailure(runErr, rest))
	} else {
		if out == nil {
			return nil
		}
		var err error
		if smi, err = ParseNvidiaSMI(out); err != nil {
			return fmt.Errorf("%w (GPUs are listed without memory and MIG mode)", err)
		}
	}
	c.applyNvidiaSMI(smi, byAddr)
	c.markUnlisted(smi)
	return nil
}

// markUnlisted marks the NVIDIA GPUs bound to NVIDIA's driver that nvidia-smi's output left
// out, whether it exited 0 or not: with one GPU fallen off the bus, nvidia-smi may exit 15
// or write of the others and exit 0, and the GPU's memory and MIG mode would be missing
// without a word. A GPU for a VM (vfio-pci) is none of nvidia-smi's, nor one excluded from
// the driver (said already).
func (c *collector) markUnlisted(smi *NvidiaSMI) {
	listed := map[string]bool{}
	for _, s := range smi.GPUs {
		listed[s.PCIAddress] = true
	}
	for i := range c.inv.GPUs {
		g := &c.inv.GPUs[i]
		if g.Vendor != "nvidia" || listed[g.PCIAddress] || g.Excluded {
			continue
		}
		// A copied tree may have lost the driver link (""); a live machine's GPU without
		// one has no driver bound, and nvidia-smi never lists it.
		if g.Driver != "nvidia" && (g.Driver != "" || c.r.live) {
			continue
		}
		g.Unreachable = true
		c.warn("GPU %s: not in nvidia-smi's output: its driver cannot reach it (fallen off the bus, or lost: the kernel log's NVRM Xid lines say which); listed without memory, MIG and persistence mode", g.PCIAddress)
	}
}

// applyNvidiaSMI sets what nvidia-smi says of each GPU it lists.
func (c *collector) applyNvidiaSMI(smi *NvidiaSMI, byAddr map[string]*GPU) {
	for _, s := range smi.GPUs {
		g := byAddr[s.PCIAddress]
		if g == nil {
			c.warn("nvidia-smi reports GPU %s that sysfs does not list", s.PCIAddress)
			continue
		}
		g.DriverVersion = firstNonEmpty(smi.DriverVersion, g.DriverVersion)
		g.CUDAVersion = smi.CUDAVersion
		if s.ProductName != "" {
			g.Model, g.ModelSource = s.ProductName, "driver"
		}
		g.Architecture = s.Architecture
		g.UUID = firstNonEmpty(s.UUID, g.UUID)
		g.VBIOS = firstNonEmpty(s.VBIOS, g.VBIOS)
		g.MemoryMiB = s.MemoryMiB
		g.MIGMode = s.MIGMode
		g.MIGModePending = s.MIGModePending
		g.PersistenceMode = s.Persistence
	}
}

// nvidiaInformation reads every /proc/driver/nvidia/gpus/*/information, or a capture of them.
func (c *collector) nvidiaInformation() []NvidiaProcGPU {
	const dir = "/proc/driver/nvidia/gpus"
	addrs, _ := c.r.list(dir)
	var out []NvidiaProcGPU
	for _, a := range addrs {
		b, err := c.readDriver(dir+"/"+a+"/information", "")
		if err != nil {
			if !errors.Is(err, errSkipped) {
				c.warn("nvidia: read %s/%s/information: %v", dir, a, err)
			}
			continue
		}
		gpus := ParseNvidiaInformation(b)
		for i := range gpus {
			if gpus[i].BusLocation == "" {
				gpus[i].BusLocation = NormalizePCIAddress(a)
			}
		}
		out = append(out, gpus...)
	}
	if len(addrs) == 0 && !c.r.live {
		if b, err := c.r.readFile("/nvidia-gpus-information.txt"); err == nil {
			out = ParseNvidiaInformation(b)
		}
	}
	return out
}

// driverWait bounds a read of /proc/driver/nvidia: each one calls into NVIDIA's driver,
// which can hold it while a GPU in a bad state does not answer. readDriverFile is what
// reads (tests stand in for a driver that holds the read).
var (
	driverWait     = devread.DefaultWait
	readDriverFile = func(r root, p string) ([]byte, error) { return r.readFile(p) }
)

// driverReads bounds the reads of /proc/driver/nvidia (internal/devread): a file whose read
// is still held is skipped at once.
var driverReads devread.Reads

// readDriver reads a file of /proc/driver/nvidia (or in a copied tree its capture) within
// driverWait. Once one read did not end in time, the driver's other files are not read:
// each would cost the wait again, and the GPUs are listed without them.
func (c *collector) readDriver(p, capture string) ([]byte, error) {
	if c.driverHung {
		return nil, errDriverHung
	}
	read := c.readDriverFile
	if read == nil {
		read = readDriverFile
	}
	driverReads.Set(c.driverWait, nil) // 0: devread's default
	// The read may outlive this call: it reads through a root that tells no one (the
	// warnings are this goroutine's), and its result is taken only once it has ended.
	quiet := c.r
	quiet.notes = nil
	var b []byte
	err := driverReads.Do(c.r.path(p), "it", func() error {
		var err error
		b, err = read(quiet, p)
		return err
	})
	if he, ok := errors.AsType[*devread.HungError](err); ok {
		c.driverHung = true
		c.warn("nvidia: reading %s did not end within %s: NVIDIA's driver does not answer (a GPU fallen off the bus, or the driver stuck: the kernel log's NVRM lines say which); the GPUs are listed without what its files say, and its other files are not read", c.r.path(p), he.Wait)
		return nil, errDriverHung
	}
	if se, ok := errors.AsType[*skipError](err); ok {
		c.r.note(p, se.why, se.advice) // the quiet root told no one
	}
	if err != nil && capture != "" && !c.r.live && errors.Is(err, fs.ErrNotExist) {
		if b2, err2 := c.r.readFile("/" + capture); err2 == nil {
			return b2, nil
		}
	}
	return b, err
}

// errDriverHung is a read of /proc/driver/nvidia not made: an earlier one did not end.
var errDriverHung = fmt.Errorf("NVIDIA's driver did not answer an earlier read: %w", errSkipped)

// HasGPU reports, from the PCI vendor and class files alone, whether the machine (or the
// copied tree at root, "" for the live one) has a device Collect would list as a GPU of
// vendor ("nvidia", "amd", "intel"; "" for any). It reads a few bytes per PCI function, so a
// caller that only needs GPU facts (the node's K3s labels, NVIDIA's only) need not wait for a
// whole inventory on a machine without one.
func HasGPU(root, want string) bool {
	found := false
	eachGPU(root, func(vendor, _ string) bool {
		found = want == "" || vendor == want
		return !found
	})
	return found
}

// GPUCounts counts, by vendor ("nvidia", "amd", "intel"), the devices Collect would list as
// GPUs on the machine (or the copied tree at root, "" for the live one), from the PCI vendor
// and class files: physical functions only (an SR-IOV virtual function is a share of a GPU
// counted already), and, as the node's gpu.count label, not an NVIDIA GPU its driver
// excludes (NVreg_ExcludedGpus: /proc/driver/nvidia/gpus/…/information, read under the
// inventory's time limit). It is the GPU count of every other report of the machine (the
// constellation join's), so that none counts differently from the inventory.
func GPUCounts(root string) map[string]int {
	counts := map[string]int{}
	var nvidia []string
	eachGPU(root, func(vendor, addr string) bool {
		counts[vendor]++
		if vendor == "nvidia" {
			nvidia = append(nvidia, addr)
		}
		return true
	})
	if len(nvidia) == 0 {
		return counts
	}
	r := newRoot(root)
	defer r.close()
	c := &collector{r: r, log: slog.New(slog.DiscardHandler), inv: &Inventory{},
		driverWait: driverWait, readDriverFile: readDriverFile}
	for _, info := range c.nvidiaInformation() {
		if info.Excluded && slices.Contains(nvidia, NormalizePCIAddress(info.BusLocation)) {
			counts["nvidia"]--
		}
	}
	if counts["nvidia"] <= 0 {
		delete(counts, "nvidia")
	}
	return counts
}

// eachGPU calls f with the vendor of each GPU under root's /sys/bus/pci/devices while f
// returns true.
func eachGPU(root string, f func(vendor, addr string) bool) {
	r := newRoot(root)
	defer r.close()
	addrs, err := r.list("/sys/bus/pci/devices")
	if err != nil {
		return
	}
	for _, addr := range addrs {
		sys := "/sys/bus/pci/devices/" + addr
		if r.exists(sys+"/physfn") || r.exists(sys+"/physfn.name") {
			continue // a virtual function
		}
		id, _ := r.attrHex(sys + "/vendor")
		class, _ := r.attrHex(sys + "/class")
		if v, ok := gpuVendors[fmt.Sprintf("%04x", id)]; ok && isGPU(v, fmt.Sprintf("%06x", class)) {
			if !f(v, NormalizePCIAddress(addr)) {
				return
			}
		}
	}
}
