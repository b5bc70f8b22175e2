package efivar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"
)

func node(typ, sub byte, data ...byte) []byte {
	b := []byte{typ, sub, 0, 0}
	binary.LittleEndian.PutUint16(b[2:], uint16(4+len(data)))
	return append(b, data...)
}

func pciRoot(uid uint32) []byte {
	d := make([]byte, 8)
	binary.LittleEndian.PutUint32(d, 0x0a0341d0)
	binary.LittleEndian.PutUint32(d[4:], uid)
	return node(0x02, 0x01, d...)
}

func pci(dev, fn byte) []byte { return node(0x01, 0x01, fn, dev) }

var end = node(0x7f, 0xff)

// loadOption is an EFI_LOAD_OPTION as firmware stores it.
func loadOption(desc string, path ...[]byte) []byte {
	var dp []byte
	for _, n := range path {
		dp = append(dp, n...)
	}
	b := []byte{1, 0, 0, 0, 0, 0} // LOAD_OPTION_ACTIVE, path length
	binary.LittleEndian.PutUint16(b[4:], uint16(len(dp)))
	for _, r := range utf16.Encode([]rune(desc + "\x00")) {
		b = binary.LittleEndian.AppendUint16(b, r)
	}
	b = append(b, dp...)
	return append(b, "optional data"...)
}

func writeVars(t *testing.T, current uint16, options map[uint16][]byte) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name+"-"+GlobalGUID), append([]byte{7, 0, 0, 0}, data...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("BootCurrent", binary.LittleEndian.AppendUint16(nil, current))
	for n, opt := range options {
		write(bootName(n), opt)
	}
	return dir
}

func bootName(n uint16) string { return fmt.Sprintf("Boot%04X", n) }

func mkdirs(t *testing.T, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCurrent(t *testing.T) {
	sata := node(0x03, 0x12, 0, 0, 0xff, 0xff, 0, 0) // Sata(0x0,0xFFFF,0x0)
	nvme := node(0x03, 0x17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	vars := writeVars(t, 0x000A, map[uint16][]byte{
		0x0001: loadOption("UEFI QEMU HARDDISK", pciRoot(0), pci(3, 0), end),
		0x000A: loadOption("UEFI QEMU DVD-ROM", pciRoot(0), pci(0x1f, 2), sata, end),
	})
	p, err := Current(vars)
	if err != nil {
		t.Fatal(err)
	}
	if p.Option != "Boot000A" || p.String() != "PciRoot(0x0)/Pci(0x1F,0x2)" {
		t.Errorf("Current = %s %s, want Boot000A PciRoot(0x0)/Pci(0x1F,0x2)", p.Option, p)
	}
	sys := t.TempDir()
	mkdirs(t, sys, "devices/pci0000:00/0000:00:1f.2", "devices/pci0000:00/0000:00:1f.0", "devices/pci0000:00/0000:00:1c.0/0000:01:00.0/nvme",
		"devices/pci0000:00/pci_bus/0000:00")
	if d, err := p.SysfsDevice(sys); err != nil || d != filepath.Join(sys, "devices/pci0000:00/0000:00:1f.2") {
		t.Errorf("SysfsDevice = %q, %v", d, err)
	}
	// Behind a bridge: the root port, then the NVMe controller on its bus.
	vars = writeVars(t, 2, map[uint16][]byte{2: loadOption("NVMe", pciRoot(0), pci(0x1c, 0), pci(0, 0), nvme, end)})
	if p, err = Current(vars); err != nil || p.String() != "PciRoot(0x0)/Pci(0x1C,0x0)/Pci(0x0,0x0)" {
		t.Fatalf("Current = %s, %v", p, err)
	}
	if d, err := p.SysfsDevice(sys); err != nil || d != filepath.Join(sys, "devices/pci0000:00/0000:00:1c.0/0000:01:00.0") {
		t.Errorf("SysfsDevice = %q, %v", d, err)
	}
	// A PCI device that is not there.
	vars = writeVars(t, 2, map[uint16][]byte{2: loadOption("gone", pciRoot(0), pci(9, 0), end)})
	if p, err = Current(vars); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SysfsDevice(sys); err == nil {
		t.Error("SysfsDevice found a device that is not there")
	}
}

func TestCurrentBadInput(t *testing.T) {
	file := node(0x04, 0x04, 'x', 0, 0, 0) // a file path alone
	for name, vars := range map[string]string{
		"no BootCurrent": t.TempDir(),
		"no such option": writeVars(t, 5, nil),
		"no PCI device":  writeVars(t, 1, map[uint16][]byte{1: loadOption("file", file, end)}),
		"truncated path": writeVars(t, 1, map[uint16][]byte{1: loadOption("x", pciRoot(0), pci(3, 0), end)[:20]}),
		"bad node":       writeVars(t, 1, map[uint16][]byte{1: loadOption("x", []byte{1, 1, 2, 0}, end)}),
		"short option":   writeVars(t, 1, map[uint16][]byte{1: {1, 0}}),
	} {
		if p, err := Current(vars); err == nil {
			t.Errorf("%s: Current = %s, want an error", name, p)
		}
	}
	if _, err := Current(writeVars(t, 1, map[uint16][]byte{1: loadOption("file", file, end)})); !errors.Is(err, ErrNoPCI) {
		t.Errorf("no PCI device: err = %v, want ErrNoPCI", err)
	}
}

func TestLoaderDevicePartUUID(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoaderDevicePartUUID(dir); err == nil {
		t.Error("no variable: want an error")
	}
	// As systemd-boot writes it: attributes, then UTF-16LE upper case, NUL-terminated.
	val := []byte{0x06, 0, 0, 0}
	for _, c := range "6A1B3C5D-0000-4E2F-8A9B-0C1D2E3F4A5B\x00" {
		val = append(val, byte(c), 0)
	}
	if err := os.WriteFile(filepath.Join(dir, "LoaderDevicePartUUID-"+LoaderGUID), val, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := LoaderDevicePartUUID(dir); err != nil || got != "6a1b3c5d-0000-4e2f-8a9b-0c1d2e3f4a5b" {
		t.Errorf("LoaderDevicePartUUID = %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "LoaderDevicePartUUID-"+LoaderGUID), []byte{6, 0, 0, 0, 'x', 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoaderDevicePartUUID(dir); err == nil {
		t.Error("a value that is not a GUID: want an error")
	}
}

// TestSysfsDeviceMultiRoot: on a server with several PCI root bridges,
// PciRoot(n) is the bridge's ACPI _UID, not its bus: the bridge is found
// through the ACPI devices' uid and physical_node, as the kernel lays them
// out; a UID that no ACPI device has is still taken for the bus.
func TestSysfsDeviceMultiRoot(t *testing.T) {
	sys := t.TempDir()
	mkdirs(t, sys, "devices/pci0000:00/0000:00:1f.2", "devices/pci0000:16/0000:16:02.0/0000:17:00.0",
		"devices/pci0001:00/0001:00:03.0", "devices/pci0000:05/0000:05:00.0", "bus/acpi/devices")
	bridges := map[string]struct{ uid, bus string }{
		"PNP0A08:00": {"0", "pci0000:00"},
		"PNP0A08:01": {"1", "pci0000:16"},
		"PNP0A03:00": {"2", "pci0001:00"}, // plain PCI, another segment
	}
	for name, b := range bridges {
		adev := filepath.Join("devices/LNXSYSTM:00/LNXSYBUS:00", name)
		mkdirs(t, sys, adev)
		if err := os.WriteFile(filepath.Join(sys, adev, "uid"), []byte(b.uid+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../../"+b.bus, filepath.Join(sys, adev, "physical_node")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../../"+adev, filepath.Join(sys, "bus/acpi/devices", name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		path BootPath
		want string
	}{
		{BootPath{RootBus: 1, PCI: []PCINode{{2, 0}, {0, 0}}}, "devices/pci0000:16/0000:16:02.0/0000:17:00.0"},
		{BootPath{RootBus: 2, PCI: []PCINode{{3, 0}}}, "devices/pci0001:00/0001:00:03.0"},
		{BootPath{RootBus: 0, PCI: []PCINode{{0x1f, 2}}}, "devices/pci0000:00/0000:00:1f.2"},
		{BootPath{RootBus: 5, PCI: []PCINode{{0, 0}}}, "devices/pci0000:05/0000:05:00.0"}, // no ACPI match: the UID as the bus
	} {
		if d, err := tt.path.SysfsDevice(sys); err != nil || d != filepath.Join(sys, tt.want) {
			t.Errorf("%s: SysfsDevice = %q, %v; want %s", tt.path, d, err, tt.want)
		}
	}
}
