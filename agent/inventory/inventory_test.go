package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// h100Root is a copy of ../shared/fixtures/hw/h100-vm: a real host with one H100 passed
// through, captured with shell tools (see its README.md).
const h100Root = "testdata/h100-vm"

func collectH100(t *testing.T) *Inventory {
	t.Helper()
	inv, err := Collect(context.Background(), Options{Root: h100Root})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// What an operator checks on the H100 host: exactly one GPU, and its model, memory, driver,
// link and MIG mode, as nvidia-smi and sysfs report them there.
func TestH100SnapshotGPU(t *testing.T) {
	inv := collectH100(t)
	// The capture has no sys/class/net: its NICs are not listed, and that is said (its PCI
	// list has a virtio Ethernet controller). Nothing else is warned of.
	if len(inv.Warnings) != 1 || !strings.HasPrefix(inv.Warnings[0], "nics: not captured: the copied tree has no sys/class/net") {
		t.Errorf("warnings: %q, want the one of the NICs not captured", inv.Warnings)
	}
	if len(inv.GPUs) != 1 {
		t.Fatalf("got %d GPUs, want exactly 1: %+v", len(inv.GPUs), inv.GPUs)
	}
	g := inv.GPUs[0]
	checks := []struct{ field, got, want string }{
		{"vendor", g.Vendor, "nvidia"},
		{"model", g.Model, "NVIDIA H100 80GB HBM3"},
		{"pci_address", g.PCIAddress, "0000:00:06.0"},
		{"vendor_id", g.VendorID, "10de"},
		{"device_id", g.DeviceID, "2330"},
		{"driver", g.Driver, "nvidia"},
		{"driver_version", g.DriverVersion, "580.159.04"},
		{"memory_mib", strconv.FormatUint(g.MemoryMiB, 10), "81559"},
		{"mig_mode", g.MIGMode, "disabled"},
		{"mig_mode_pending", g.MIGModePending, "disabled"},
		{"persistence_mode", g.PersistenceMode, "enabled"},
		{"cuda_version", g.CUDAVersion, "13.0"},
		{"architecture", g.Architecture, "Hopper"},
		{"uuid", g.UUID, "GPU-59004ccb-69e2-277e-c8ce-2872db1ec13e"}, // from /proc: the XML's is redacted
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("GPU %s = %q, want %q", c.field, c.got, c.want)
		}
	}
	// The same host's `nvidia-smi --query-gpu=name,pci.bus_id,memory.total,driver_version,
	// mig.mode.current` is an independent witness of what the XML and /proc gave.
	csv, err := os.ReadFile(filepath.Join(h100Root, "nvidia-smi-query.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(csv)), "\n")
	if len(rows) != 2 {
		t.Fatalf("nvidia-smi-query.csv has %d rows, want a header and one GPU", len(rows))
	}
	q := strings.Split(rows[1], ", ")
	if len(q) < 5 || q[0] != g.Model || NormalizePCIAddress(q[1]) != g.PCIAddress ||
		q[2] != strconv.FormatUint(g.MemoryMiB, 10)+" MiB" || q[3] != g.DriverVersion || strings.ToLower(q[4]) != g.MIGMode {
		t.Errorf("nvidia-smi's query says %q; inventory says %s, %s, %d MiB, %s, %s", q, g.Model, g.PCIAddress, g.MemoryMiB,
			g.DriverVersion, g.MIGMode)
	}
	if g.Link == nil {
		t.Fatal("GPU has no PCIe link")
	}
	if g.Link.CurrentSpeed != "32.0 GT/s PCIe" || g.Link.CurrentWidth != 16 || g.Link.MaxSpeed != "32.0 GT/s PCIe" ||
		g.Link.MaxWidth != 16 || g.Link.CurrentGen != 5 {
		t.Errorf("GPU link = %+v, want 32.0 GT/s PCIe x16 (gen 5), max the same", *g.Link)
	}
}

func TestH100SnapshotMachine(t *testing.T) {
	inv := collectH100(t)
	if inv.CPU.Count != 16 || inv.CPU.Model != "Intel(R) Xeon(R) Processor" || inv.CPU.Vendor != "GenuineIntel" {
		t.Errorf("CPU = %+v, want 16 × Intel(R) Xeon(R) Processor (GenuineIntel)", inv.CPU)
	}
	if want := uint64(131981020) * 1024; inv.Memory.TotalBytes != want {
		t.Errorf("memory = %d bytes, want %d (MemTotal 131981020 kB)", inv.Memory.TotalBytes, want)
	}
	if len(inv.PCIDevices) != 7 {
		t.Errorf("got %d PCI devices, want 7", len(inv.PCIDevices))
	}
	// Names from the embedded pci.ids; the Intel host bridge 8086:0d57 is newer than the
	// database and stays unnamed (its ids are in the JSON).
	names := map[string][3]string{ // address → class, vendor, device name
		"0000:00:00.0": {"Host bridge", "Intel Corporation", ""},
		"0000:00:01.0": {"Mass storage controller", "Red Hat, Inc.", "Virtio 1.0 block device"},
		"0000:00:03.0": {"Ethernet controller", "Red Hat, Inc.", "Virtio 1.0 network device"},
		"0000:00:04.0": {"Unassigned class", "Red Hat, Inc.", "Virtio 1.0 socket"},
		"0000:00:05.0": {"Unassigned class", "Red Hat, Inc.", "Virtio 1.0 RNG"},
		"0000:00:06.0": {"3D controller", "NVIDIA Corporation", "GH100 [H100 SXM5 80GB]"},
	}
	for _, d := range inv.PCIDevices {
		want, ok := names[d.Address]
		if !ok {
			continue
		}
		if got := [3]string{d.ClassName, d.VendorName, d.DeviceName}; got != want {
			t.Errorf("%s names = %q, want %q", d.Address, got, want)
		}
		if d.Address == "0000:00:01.0" && d.Driver != "virtio-pci" {
			t.Errorf("%s driver = %q, want virtio-pci (from driver.name)", d.Address, d.Driver)
		}
	}
	var disks []string
	for _, d := range inv.Disks {
		disks = append(disks, d.Name+" "+strconv.FormatUint(d.SizeBytes, 10)+" "+d.Transport)
	}
	if got, want := strings.Join(disks, ", "), "vda 274877906944 virtio, vdb 318332928 virtio"; got != want {
		t.Errorf("disks = %s, want %s (from lsblk.json; zram0 left out)", got, want)
	}
	labels := NodeLabels(inv)
	want := map[string]string{
		"etoile.io/gpu.vendor":   "nvidia",
		"etoile.io/gpu.model":    "NVIDIA-H100-80GB-HBM3",
		"etoile.io/gpu.count":    "1",
		"nvidia.com/gpu.present": "true",
	}
	if !equalMaps(labels, want) {
		t.Errorf("NodeLabels = %v, want %v", labels, want)
	}
}

func TestH100SnapshotGoldenJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, collectH100(t)); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "h100-vm.json.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./agent/inventory -run Golden -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("JSON differs from %s (if the change is meant, rerun with -update):\n%s", golden, buf.String())
	}
	// The JSON reads back into the same structure: field names are the interface.
	var back Inventory
	if err := json.Unmarshal(want, &back); err != nil || len(back.GPUs) != 1 || back.GPUs[0].MemoryMiB != 81559 {
		t.Errorf("golden JSON does not read back: %v %+v", err, back.GPUs)
	}
}

func TestH100SnapshotTable(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, collectH100(t)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"16 × Intel(R) Xeon(R) Processor", "125.9 GiB",
		"0000:00:06.0  nvidia  NVIDIA H100 80GB HBM3", "81559 MiB", "580.159.04", "disabled", "32.0 GT/s x16",
		"/dev/vda", "Intel Corporation [8086]", "[0d57]"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// This machine's own /sys and /proc: a VM with no GPU must still give a sane inventory.
func TestLiveMachine(t *testing.T) {
	inv, err := Collect(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if inv.CPU.Count < 1 {
		t.Errorf("CPU count = %d, want at least 1", inv.CPU.Count)
	}
	if inv.Memory.TotalBytes == 0 {
		t.Error("memory total is 0")
	}
	if len(inv.PCIDevices) == 0 && dirHasEntries("/sys/bus/pci/devices") {
		t.Error("no PCI devices although /sys/bus/pci/devices lists some")
	}
	for _, d := range inv.Disks {
		if strings.HasPrefix(d.Name, "loop") || strings.HasPrefix(d.Name, "zram") {
			t.Errorf("virtual block device %s listed as a disk", d.Name)
		}
	}
	for _, n := range inv.NICs {
		if n.Name == "lo" {
			t.Error("lo listed as a NIC")
		}
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, inv); err != nil {
		t.Fatal(err)
	}
	t.Logf("this machine:\n%s", buf.String())
}

func TestCollectBadRoot(t *testing.T) {
	_, err := Collect(context.Background(), Options{Root: filepath.Join(t.TempDir(), "missing")})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Collect on a missing root: err = %v, want one naming the folder", err)
	}
}

func dirHasEntries(dir string) bool {
	e, _ := os.ReadDir(dir)
	return len(e) > 0
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func BenchmarkCollectH100Snapshot(b *testing.B) {
	for b.Loop() {
		if _, err := Collect(context.Background(), Options{Root: h100Root}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCollectLive(b *testing.B) {
	for b.Loop() {
		if _, err := Collect(context.Background(), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
