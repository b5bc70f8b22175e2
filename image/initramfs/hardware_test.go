package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"github.com/etoile-os/etoile/internal/syncbuf"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/kmod"
)

// serverDevice is a real PCI function: its ids, as the kernel writes them
// into /sys/bus/pci/devices/*/modalias, and the driver Debian's kernel binds.
type serverDevice struct {
	name                 string
	vendor, device       uint16
	subVendor, subDevice uint16
	class                uint32 // base class, subclass, programming interface
	driver               string
}

// modalias is the device's modalias as the kernel's pci driver writes it
// (drivers/pci/pci-sysfs.c: upper-case hex).
func (d serverDevice) modalias() string {
	return fmt.Sprintf("pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X",
		d.vendor, d.device, d.subVendor, d.subDevice, d.class>>16, (d.class>>8)&0xff, d.class&0xff)
}

// serverHardware: the NICs, disk controllers and USB host of real servers
// and of QEMU, each with the driver it must get. The storage entries with
// no vendor-specific alias (NVMe, AHCI, xHCI) match by class alone.
var serverHardware = []serverDevice{
	{"Intel E810-C 100GbE", 0x8086, 0x1593, 0x8086, 0x0002, 0x020000, "ice"},
	{"Intel X710 10GbE SFP+", 0x8086, 0x1572, 0x8086, 0x0001, 0x020000, "i40e"},
	{"Intel 82599ES 10GbE SFP+", 0x8086, 0x10fb, 0x8086, 0x000c, 0x020000, "ixgbe"},
	{"Intel I210 1GbE", 0x8086, 0x1533, 0x8086, 0x0001, 0x020000, "igb"},
	{"Intel I219-LM", 0x8086, 0x15b8, 0x1028, 0x07a1, 0x020000, "e1000e"},
	{"Mellanox ConnectX-6 Dx", 0x15b3, 0x101d, 0x15b3, 0x0016, 0x020000, "mlx5_core"},
	{"Broadcom BCM57414 25GbE", 0x14e4, 0x16d7, 0x14e4, 0x1402, 0x020000, "bnxt_en"},
	{"Broadcom BCM5720 1GbE", 0x14e4, 0x165f, 0x1028, 0x04f7, 0x020000, "tg3"},
	{"Realtek RTL8111/8168", 0x10ec, 0x8168, 0x1043, 0x8677, 0x020000, "r8169"},
	{"Samsung PM9A3 NVMe", 0x144d, 0xa80a, 0x144d, 0xa812, 0x010802, "nvme"},
	{"Intel C620 SATA AHCI", 0x8086, 0xa182, 0x15d9, 0x095d, 0x010601, "ahci"},
	{"Intel C620 USB 3.0 xHCI", 0x8086, 0xa1af, 0x15d9, 0x095d, 0x0c0330, "xhci_pci"},
	{"virtio-net (modern) under QEMU", 0x1af4, 0x1041, 0x1af4, 0x1100, 0x020000, "virtio_pci"},
	{"Broadcom SAS3008 HBA", 0x1000, 0x0097, 0x1000, 0x30e0, 0x010700, "mpt3sas"},
	{"Broadcom MegaRAID SAS-3 3108 (PERC H730)", 0x1000, 0x005d, 0x1028, 0x1f49, 0x010400, "megaraid_sas"},
}

// virtioNet is the virtio device virtio_pci finds behind a modern
// virtio-net PCI function: virtio_net binds that one.
const virtioNet = "virtio:d00000001v00001AF4"

// TestRealServerHardwareFindsItsDrivers takes real PCI ids through the
// agent's own matcher (agent/kmod) against the modules.alias and
// modules.dep of an initramfs built from Debian's kernel with the default
// spec's modules: each device resolves to its driver, and that driver and
// every module it depends on are files in the initramfs. Then the agent's
// coldplug, on a sysfs holding all those devices, loads each driver.
func TestRealServerHardwareFindsItsDrivers(t *testing.T) {
	k, mods := realKernel(t)
	var img bytes.Buffer
	if _, err := Write(&img, Options{Init: []byte("#!agent"), KernelVersion: k.Version, Modules: mods, Epoch: testEpoch}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	entries, err := ReadImage(img.Bytes())
	if err != nil {
		t.Fatalf("ReadImage: %v", err)
	}
	// Unpack the archive as the kernel does (devices left out).
	root := t.TempDir()
	files := map[string]bool{}
	for _, e := range entries {
		p := filepath.Join(root, filepath.FromSlash(e.Path))
		switch e.Mode & sIFMT {
		case sIFDIR:
			err = os.MkdirAll(p, 0o755)
		case sIFREG:
			files[e.Path] = true
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, e.Data, 0o644)
			}
		case sIFLNK:
			err = os.Symlink(string(e.Data), p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	base := "lib/modules/" + k.Version
	modDir := filepath.Join(root, base)
	open := func(name string) io.Reader {
		data, err := os.ReadFile(filepath.Join(modDir, name))
		if err != nil {
			t.Fatalf("the initramfs lacks %s: %v", name, err)
		}
		return bytes.NewReader(data)
	}
	aliases, err := kmod.ParseAliases(open("modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	deps, err := kmod.ParseDeps(open("modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	if err := deps.AddBuiltin(open("modules.builtin")); err != nil {
		t.Fatal(err)
	}

	check := func(name, modalias, driver string) {
		t.Helper()
		got := aliases.Lookup(modalias)
		if !slices.Contains(got, driver) {
			t.Errorf("%s (%s): modules.alias gives %q, want %s", name, modalias, got, driver)
			return
		}
		order, err := deps.Order(driver)
		if err != nil {
			t.Errorf("%s: %s: %v", name, driver, err)
			return
		}
		for _, m := range order {
			if p := base + "/" + deps.Path(m); !files[p] {
				t.Errorf("%s: %s needs %s, whose file %s is not in the initramfs", name, driver, m, p)
			}
		}
		t.Logf("%-42s %s -> %s (loads %s)", name, modalias, driver, strings.Join(order, " "))
	}
	for _, d := range serverHardware {
		check(d.name, d.modalias(), d.driver)
	}
	check("virtio-net behind virtio_pci", virtioNet, "virtio_net")

	// The agent's coldplug: every device in a sysfs, loads recorded.
	sys := filepath.Join(t.TempDir(), "sys")
	for i, d := range serverHardware {
		writeModalias(t, sys, "pci", fmt.Sprintf("0000:%02x:00.0", i+1), d.modalias())
	}
	loader := &virtioLoader{sys: sys, t: t}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := kmod.NewColdplug(sys, modDir, loader, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Settle(context.Background(), 200*time.Millisecond, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	loaded := loader.Loaded()
	for _, want := range append(driversOf(serverHardware), "virtio_net") {
		if !slices.Contains(loaded, want) {
			t.Errorf("coldplug did not load %s; it loaded %q\n%s", want, loaded, logs.String())
		}
	}
}

func driversOf(devs []serverDevice) []string {
	var out []string
	for _, d := range devs {
		out = append(out, d.driver)
	}
	return out
}

func writeModalias(t *testing.T, sys, bus, dev, modalias string) {
	t.Helper()
	dir := filepath.Join(sys, "bus", bus, "devices", dev)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modalias"), []byte(modalias+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// virtioLoader records loads; loading virtio_pci makes the virtio-net
// device appear on the virtio bus, as the kernel does.
type virtioLoader struct {
	kmod.Recorder
	sys string
	t   *testing.T
}

func (l *virtioLoader) Load(name, p string) error { return l.LoadParams(name, p, "") }

func (l *virtioLoader) LoadParams(name, p, params string) error {
	if name == "virtio_pci" {
		writeModalias(l.t, l.sys, "virtio", "virtio0", virtioNet)
	}
	return l.Recorder.LoadParams(name, p, params)
}
