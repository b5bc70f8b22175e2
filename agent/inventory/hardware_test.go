package inventory

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// Trees shaped as a reviewer's hand-made ones were (/tmp/audit-inv/t1…t5): real servers'
// sysfs layouts for what a VM does not have: arm64 CPUs, SATA and SAS disks, network
// volumes, BMC virtual media, InfiniBand, a BMC's USB NIC, a bond.

// tree writes files and relative symbolic links (path → target) under a new folder, with a
// CPU and memory, and the folders of disks and NICs (a copied tree without them is warned
// of), so that Collect has a machine.
func tree(t *testing.T, files, links map[string]string) string {
	t.Helper()
	root := t.TempDir()
	all := map[string]string{"proc/cpuinfo": "processor\t: 0\nmodel name\t: X\n", "proc/meminfo": "MemTotal: 1000 kB\n"}
	for k, v := range files {
		all[k] = v
	}
	fakeroot.Write(t, root, all)
	fakeroot.Links(t, root, links)
	for _, dir := range []string{"sys/class/block", "sys/class/net"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func collect(t *testing.T, root string) *Inventory {
	t.Helper()
	inv, err := Collect(context.Background(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func disk(t *testing.T, inv *Inventory, name string) Disk {
	t.Helper()
	i := slices.IndexFunc(inv.Disks, func(d Disk) bool { return d.Name == name })
	if i < 0 {
		t.Fatalf("no disk %s in %+v", name, inv.Disks)
	}
	return inv.Disks[i]
}

func nic(t *testing.T, inv *Inventory, name string) NIC {
	t.Helper()
	i := slices.IndexFunc(inv.NICs, func(n NIC) bool { return n.Name == name })
	if i < 0 {
		t.Fatalf("no NIC %s in %+v", name, inv.NICs)
	}
	return inv.NICs[i]
}

func table(t *testing.T, inv *Inventory) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTable(&buf, inv); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// lineOf returns the table's line that starts with prefix.
func lineOf(out, prefix string) string {
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

const graceCPU = "processor\t: %d\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm\nCPU implementer\t: 0x41\n" +
	"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd4f\nCPU revision\t: 0\n\n"

// armTree is a two-socket arm64 server (a Grace Hopper pair's CPUs, cut to 4 cores): cpuinfo
// names the cores by MIDR number only; sysfs's topology has the sockets and cores.
func armTree(t *testing.T, cpuinfo string) string {
	files := map[string]string{"proc/cpuinfo": cpuinfo, "sys/devices/system/cpu/online": "0-3\n"}
	for cpu, pkg := range []string{"0", "0", "1", "1"} {
		d := "sys/devices/system/cpu/cpu" + string(rune('0'+cpu)) + "/topology/"
		files[d+"physical_package_id"] = pkg + "\n"
		files[d+"core_id"] = string(rune('0'+cpu)) + "\n"
	}
	return tree(t, files, nil)
}

func TestARM64CPU(t *testing.T) {
	var grace string
	for i := range 4 {
		grace += strings.Replace(graceCPU, "%d", string(rune('0'+i)), 1)
	}
	inv := collect(t, armTree(t, grace))
	if want := (CPU{Model: "Neoverse-V2", Vendor: "ARM", Count: 4, Sockets: 2, Cores: 4}); inv.CPU != want {
		t.Errorf("Grace: CPU = %+v, want %+v", inv.CPU, want)
	}
	if out := table(t, inv); !strings.Contains(out, "4 × Neoverse-V2 (2 socket(s), 4 core(s))") {
		t.Errorf("table lacks the CPU line:\n%s", out)
	}

	// A part the table does not know: named by its numbers, never empty…
	unknown := strings.ReplaceAll(grace, "0xd4f", "0xd99")
	inv = collect(t, armTree(t, unknown))
	if inv.CPU.Model != "0x41/0xd99" || inv.CPU.Vendor != "ARM" || inv.CPU.Sockets != 2 {
		t.Errorf("unknown part: CPU = %+v, want model 0x41/0xd99 of ARM, 2 sockets", inv.CPU)
	}
	// …or by the firmware's SMBIOS processor record when there is one.
	root := armTree(t, strings.ReplaceAll(unknown, "0x41", "0xc2"))
	rec := []byte{4, 0x30, 0, 0}
	rec = append(rec, make([]byte, 0x30-4)...)
	rec[4], rec[7], rec[0x10] = 1, 2, 3 // socket, manufacturer, version: strings 1, 2, 3
	rec = append(rec, "CPU 1\x00Example Silicon\x00Example-64 A1 @ 3.0GHz\x00\x00"...)
	fakeroot.Write(t, root, map[string]string{"sys/firmware/dmi/entries/4-0/raw": string(rec)})
	inv = collect(t, root)
	if inv.CPU.Model != "Example-64 A1 @ 3.0GHz" || inv.CPU.Vendor != "Example Silicon" {
		t.Errorf("unknown implementer with SMBIOS: CPU = %+v, want the SMBIOS record's names", inv.CPU)
	}

	// x86 too takes sockets and cores from the topology: two hyperthreads of one core.
	root = tree(t, map[string]string{
		"proc/cpuinfo": "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n\nprocessor\t: 1\n",
		"sys/devices/system/cpu/cpu0/topology/physical_package_id": "0", "sys/devices/system/cpu/cpu0/topology/core_id": "0",
		"sys/devices/system/cpu/cpu1/topology/physical_package_id": "0", "sys/devices/system/cpu/cpu1/topology/core_id": "0",
	}, nil)
	if cpu := collect(t, root).CPU; cpu.Sockets != 1 || cpu.Cores != 1 || cpu.Count != 2 {
		t.Errorf("x86 with topology: CPU = %+v, want 2 CPUs on 1 core of 1 socket", cpu)
	}
}

func TestParseCPUInfoARM(t *testing.T) {
	bigLittle := "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n"
	altra := "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
	ampereOne := "processor\t: 0\nCPU implementer\t: 0xc0\nCPU part\t: 0xac3\n"
	for in, want := range map[string][2]string{
		bigLittle: {"Cortex-A55 + Cortex-A76", "ARM"},
		altra:     {"Neoverse-N1", "ARM"},
		ampereOne: {"Ampere-1", "Ampere"},
		"processor\t: 0\nCPU implementer\t: 0x4e\nCPU part\t: 0x004\n": {"Carmel", "NVIDIA"},
		"processor\t: 0\nCPU implementer\t: 0x48\nCPU part\t: 0xd01\n": {"TaiShan-v110", "HiSilicon"},
		"processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0xc00\n": {"Falkor", "Qualcomm"},
		"processor\t: 0\nCPU implementer\t: 0x99\nCPU part\t: 0x123\n": {"0x99/0x123", "0x99"},
	} {
		if got := ParseCPUInfo([]byte(in)); got.Model != want[0] || got.Vendor != want[1] {
			t.Errorf("ParseCPUInfo(%q) = %q of %q, want %q of %q", in, got.Model, got.Vendor, want[0], want[1])
		}
	}
}

// The SATA disk's model as its IDENTIFY data has it, all 40 characters, where the SCSI
// layer (sysfs's device/model) keeps 16.
func TestParseATAIdentify(t *testing.T) {
	for file, want := range map[string][3]string{
		"WDC-WD10EFRX-68FYTN0.id":    {"WDC WD10EFRX-68FYTN0", "WD-WCC4N1234567", "82.00A82"},
		"Samsung-SSD-870-EVO-1TB.id": {"Samsung SSD 870 EVO 1TB", "S6PTNZ0R123456A", "SVT02B6Q"},
	} {
		b, err := os.ReadFile(filepath.Join("testdata/ata", file))
		if err != nil {
			t.Fatal(err)
		}
		id := ParseATAIdentify(b)
		if got := [3]string{id.Model(), id.Serial(), id.Firmware()}; got != want {
			t.Errorf("%s: model, serial, firmware = %q, want %q", file, got, want)
		}
	}
	if ParseATAIdentify([]byte("")) != nil || ParseATAIdentify([]byte("zzzz")) != nil {
		t.Error("ParseATAIdentify took what is not IDENTIFY data")
	}
}

// vpd89 is the SCSI ATA Information VPD page a SAS HBA's translation layer answers for a
// SATA disk behind it: the IDENTIFY data at byte 60, words little-endian.
func vpd89(t *testing.T, idFile string) string {
	b, err := os.ReadFile(filepath.Join("testdata/ata", idFile))
	if err != nil {
		t.Fatal(err)
	}
	id := ParseATAIdentify(b)
	page := make([]byte, 60+512)
	page[1], page[2], page[3] = 0x89, 0x02, 0x38
	for i, w := range id {
		page[60+2*i], page[61+2*i] = byte(w), byte(w>>8)
	}
	return string(page)
}

func TestSATAAndSASDisks(t *testing.T) {
	const (
		sata    = "sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0"
		sasSATA = "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0"
		sas     = "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host0/port-0:1/end_device-0:1/target0:0:1/0:0:1:0"
	)
	id, err := os.ReadFile("testdata/ata/Samsung-SSD-870-EVO-1TB.id")
	if err != nil {
		t.Fatal(err)
	}
	root := tree(t, map[string]string{
		sata + "/block/sda/size": "1953525168", sata + "/vendor": "ATA     ", sata + "/model": "Samsung SSD 870 ", sata + "/rev": "2B6Q",
		"sys/class/ata_device/dev3.0/id": string(id),
		sasSATA + "/block/sdf/size":      "7814037168", sasSATA + "/vendor": "ATA     ", sasSATA + "/model": "WDC WD10EFRX-68F",
		sasSATA + "/vpd_pg89":   vpd89(t, "WDC-WD10EFRX-68FYTN0.id"),
		sas + "/block/sdg/size": "2344225968", sas + "/vendor": "SEAGATE ", sas + "/model": "ST1200MM0009    ", sas + "/rev": "N003",
	}, map[string]string{
		"sys/class/block/sda":         "../../devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda",
		sata + "/block/sda/device":    "../../../2:0:0:0",
		"sys/class/block/sdf":         "../../" + strings.TrimPrefix(sasSATA, "sys/") + "/block/sdf",
		sasSATA + "/block/sdf/device": "../../../0:0:0:0",
		"sys/class/block/sdg":         "../../" + strings.TrimPrefix(sas, "sys/") + "/block/sdg",
		sas + "/block/sdg/device":     "../../../0:0:1:0",
	})
	inv := collect(t, root)
	type summary struct{ Transport, Vendor, Model, Serial, Firmware string }
	for name, want := range map[string]summary{
		"sda": {"sata", "", "Samsung SSD 870 EVO 1TB", "S6PTNZ0R123456A", "SVT02B6Q"},
		"sdf": {"sata", "", "WDC WD10EFRX-68FYTN0", "WD-WCC4N1234567", "82.00A82"}, // SATA behind a SAS HBA: its VPD page 0x89
		"sdg": {"sas", "SEAGATE", "ST1200MM0009", "", "N003"},                      // under a SAS end device
	} {
		d := disk(t, inv, name)
		if got := (summary{d.Transport, d.Vendor, d.Model, d.Serial, d.Firmware}); got != want {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	if l := lineOf(table(t, inv), "/dev/sdg "); !strings.Contains(l, "SEAGATE ST1200MM0009") {
		t.Errorf("the SAS disk's row lacks its vendor and model: %q", l)
	}
}

// t1's shapes: network volumes (Ceph RBD, iSCSI, NVMe over fabrics) beside local disks, and a
// BMC's virtual floppy with no image in it.
func TestRemoteDisksAndNoMedium(t *testing.T) {
	const (
		nvme   = "sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0"
		iscsi  = "sys/devices/platform/host7/session1/target7:0:0/7:0:0:1"
		usb    = "sys/devices/pci0000:00/0000:00:14.0/usb1/1-4"
		floppy = usb + "/1-4:1.0/host8/target8:0:0/8:0:0:0"
		fabric = "sys/devices/virtual/nvme-fabrics/ctl/nvme3"
		subsys = "sys/devices/virtual/nvme-subsystem/nvme-subsys3"
		ctl5   = "sys/devices/virtual/nvme-fabrics/ctl/nvme5"
	)
	root := tree(t, map[string]string{
		nvme + "/model": "Samsung", nvme + "/serial": "S1", nvme + "/transport": "pcie", nvme + "/nvme0n1/size": "1953525168",
		iscsi + "/model": "VIRTUAL-DISK", iscsi + "/block/sdd/size": "20971520",
		floppy + "/model": "Virtual Floppy", floppy + "/block/sde/size": "0", floppy + "/block/sde/removable": "1",
		usb + "/serial":                     "0123456789ABCDEF\n",
		"sys/devices/rbd/0/block/rbd0/size": "20971520", "sys/devices/rbd/0/block/rbd0/removable": "0",
		// NVMe/TCP under native multipath: the head under its subsystem, the path hidden.
		fabric + "/transport": "tcp\n", fabric + "/nvme3c3n1/size": "20971520", fabric + "/nvme3c3n1/hidden": "1",
		subsys + "/model": "SPDK bdev Controller", subsys + "/serial": "SPDK00000000000001",
		subsys + "/nvme3n1/size": "20971520", subsys + "/nvme3n1/wwid": "uuid.7e8a9c1e-1111-2222-3333-444455556666",
		// NVMe/RDMA without multipath: the namespace under its (virtual) controller.
		ctl5 + "/transport": "rdma\n", ctl5 + "/nvme5n1/size": "100",
	}, map[string]string{
		"sys/class/block/nvme0n1":    "../../devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1",
		nvme + "/nvme0n1/device":     "../../nvme0",
		"sys/class/block/sdd":        "../../devices/platform/host7/session1/target7:0:0/7:0:0:1/block/sdd",
		iscsi + "/block/sdd/device":  "../../../7:0:0:1",
		"sys/class/block/sde":        "../../devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4:1.0/host8/target8:0:0/8:0:0:0/block/sde",
		floppy + "/block/sde/device": "../../../8:0:0:0",
		"sys/class/block/rbd0":       "../../devices/rbd/0/block/rbd0",
		"sys/class/block/nvme3n1":    "../../devices/virtual/nvme-subsystem/nvme-subsys3/nvme3n1",
		"sys/class/block/nvme3c3n1":  "../../devices/virtual/nvme-fabrics/ctl/nvme3/nvme3c3n1",
		subsys + "/nvme3n1/device":   "../../nvme-subsys3",
		subsys + "/nvme3":            "../../nvme-fabrics/ctl/nvme3",
		"sys/class/block/nvme5n1":    "../../devices/virtual/nvme-fabrics/ctl/nvme5/nvme5n1",
	})
	inv := collect(t, root)
	type summary struct {
		Transport        string
		Remote, NoMedium bool
		Serial           string
	}
	got := map[string]summary{}
	for _, d := range inv.Disks {
		got[d.Name] = summary{d.Transport, d.Remote, d.NoMedium, d.Serial}
	}
	want := map[string]summary{
		"nvme0n1": {"nvme", false, false, "S1"},
		"nvme3n1": {"nvme-tcp", true, false, "SPDK00000000000001"},
		"nvme5n1": {"nvme-rdma", true, false, ""},
		"rbd0":    {"rbd", true, false, ""},
		"sdd":     {"iscsi", true, false, ""},
		"sde":     {"usb", false, true, "0123456789ABCDEF"}, // the USB device's serial: usb-storage has no VPD
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("disks:\n got %+v\nwant %+v", got, want)
	}
	out := table(t, inv)
	if l := lineOf(out, "/dev/sdd "); !strings.Contains(l, "iscsi (remote)") {
		t.Errorf("the iSCSI volume's row does not say it is remote: %q", l)
	}
	if l := lineOf(out, "/dev/sde "); !strings.Contains(l, "no medium") || strings.Contains(l, "0 B") {
		t.Errorf("the empty floppy's row shows a size, not that it has no medium: %q", l)
	}
}

// t2's shapes: an InfiniBand port (IPoIB's 20-byte address is no MAC), a BMC's USB NIC (no
// PCI address of its own), the two members of a bond (their own MACs, not the bond's).
func TestNICKinds(t *testing.T) {
	const (
		ib    = "sys/devices/pci0000:00/0000:00:02.0/0000:3b:00.0"
		idrac = "sys/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:2.0"
		f0    = "sys/devices/pci0000:00/0000:00:03.0/0000:18:00.0"
		f1    = "sys/devices/pci0000:00/0000:00:03.0/0000:18:00.1"
	)
	const ibAddr = "00:00:10:87:fe:80:00:00:00:00:00:00:b8:ce:f6:03:00:a1:b2:c3"
	root := tree(t, map[string]string{
		ib + "/net/ib0/address": ibAddr + "\n", ib + "/net/ib0/type": "32\n", ib + "/net/ib0/speed": "400000\n",
		idrac + "/net/idrac/address": "10:98:36:af:00:01\n", idrac + "/net/idrac/type": "1\n",
		f0 + "/net/ens1f0/address": "3c:ec:ef:00:00:01\n", f0 + "/net/ens1f0/type": "1\n",
		f0 + "/net/ens1f0/bonding_slave/perm_hwaddr": "3c:ec:ef:00:00:01\n",
		f1 + "/net/ens1f1/address":                   "3c:ec:ef:00:00:01\n", f1 + "/net/ens1f1/type": "1\n",
		f1 + "/net/ens1f1/bonding_slave/perm_hwaddr": "3c:ec:ef:00:00:02\n",
		"sys/devices/virtual/net/bond0/address":      "3c:ec:ef:00:00:01\n",
	}, map[string]string{
		"sys/class/net/ib0":         "../../devices/pci0000:00/0000:00:02.0/0000:3b:00.0/net/ib0",
		ib + "/net/ib0/device":      "../../../0000:3b:00.0",
		ib + "/driver":              "../../../../bus/pci/drivers/mlx5_core",
		"sys/class/net/idrac":       "../../devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:2.0/net/idrac",
		idrac + "/net/idrac/device": "../../../1-3:2.0",
		idrac + "/driver":           "../../../../../../bus/usb/drivers/cdc_ether",
		"sys/class/net/ens1f0":      "../../devices/pci0000:00/0000:00:03.0/0000:18:00.0/net/ens1f0",
		f0 + "/net/ens1f0/device":   "../../../0000:18:00.0",
		"sys/class/net/ens1f1":      "../../devices/pci0000:00/0000:00:03.0/0000:18:00.1/net/ens1f1",
		f1 + "/net/ens1f1/device":   "../../../0000:18:00.1",
		"sys/class/net/bond0":       "../../devices/virtual/net/bond0",
	})
	inv := collect(t, root)
	want := []NIC{
		{Name: "ens1f0", MAC: "3c:ec:ef:00:00:01", LinkType: "ethernet", PCIAddress: "0000:18:00.0"},
		{Name: "ens1f1", MAC: "3c:ec:ef:00:00:02", LinkType: "ethernet", PCIAddress: "0000:18:00.1"},
		{Name: "ib0", LinkType: "infiniband", HWAddress: ibAddr, Driver: "mlx5_core", SpeedMbps: 400000, PCIAddress: "0000:3b:00.0"},
		{Name: "idrac", MAC: "10:98:36:af:00:01", LinkType: "ethernet", Driver: "cdc_ether", Bus: "usb", USBPath: "1-3"},
	}
	if !reflect.DeepEqual(inv.NICs, want) {
		t.Errorf("NICs:\n got %+v\nwant %+v", inv.NICs, want)
	}
	out := table(t, inv)
	if l := lineOf(out, "ib0 "); len(strings.Fields(l)) < 2 || strings.Fields(l)[1] != "-" || !strings.HasSuffix(l, "infiniband "+ibAddr) {
		t.Errorf("the IB port's row: %q, want no MAC and its address as infiniband's", l)
	}
	if l := lineOf(out, "idrac "); !strings.Contains(l, "usb 1-3") || strings.Contains(l, "0000:00:14.0") {
		t.Errorf("the USB NIC's row: %q, want usb 1-3 and not the host controller's PCI address", l)
	}
}

func TestInstalledMemory(t *testing.T) {
	files := map[string]string{
		"proc/meminfo": "MemTotal:       500000 kB\n",
		"sys/devices/system/memory/block_size_bytes": "8000000\n", // 128 MiB
	}
	for i, state := range []string{"online", "online", "online", "offline"} {
		files["sys/devices/system/memory/memory"+string(rune('0'+i))+"/state"] = state
	}
	files["sys/devices/system/memory/auto_online_blocks"] = "online\n"
	inv := collect(t, tree(t, files, nil))
	if inv.Memory.TotalBytes != 500000*1024 || inv.Memory.InstalledBytes != 4*128<<20 {
		t.Errorf("memory = %+v, want MemTotal 500000 kB and 512 MiB installed (4 blocks of 128 MiB, one offline)", inv.Memory)
	}
	if l := lineOf(table(t, inv), "Memory "); !strings.Contains(l, "488.3 MiB usable, 512.0 MiB installed") {
		t.Errorf("memory line = %q", l)
	}
}

func TestDMIWarnings(t *testing.T) {
	const d = "sys/class/dmi/id/"
	root := tree(t, map[string]string{
		d + "sys_vendor": "ASRockRack\n", d + "product_name": "Default string\n", d + "product_serial": "To Be Filled By O.E.M.\n",
		d + "product_uuid": "03000200-0400-0500-0006-000700080009\n", d + "board_name": "ROMED8-2T\n",
	}, nil)
	inv := collect(t, root)
	if want := (DMI{Vendor: "ASRockRack", BoardName: "ROMED8-2T"}); inv.DMI != want {
		t.Errorf("DMI = %+v, want %+v (placeholders left out)", inv.DMI, want)
	}
	if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], `product_serial "To Be Filled By O.E.M."`) ||
		!strings.Contains(inv.Warnings[0], "product_uuid") || !strings.Contains(inv.Warnings[0], `product_name "Default string"`) {
		t.Errorf("warnings = %q, want one naming the placeholders", inv.Warnings)
	}
	for uuid, placeholder := range map[string]bool{
		"00000000-0000-0000-0000-000000000000": true, "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF": true,
		"00000000-0000-0000-0000-3cecef123456": false, "4c4c4544-0042-3510-8052-b4c04f4b4d32": false,
	} {
		if isPlaceholderUUID(uuid) != placeholder {
			t.Errorf("isPlaceholderUUID(%s) = %v", uuid, !placeholder)
		}
	}

	// No DMI at all.
	inv = collect(t, tree(t, nil, nil))
	if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "/sys/class/dmi/id is missing") {
		t.Errorf("warnings without DMI = %q", inv.Warnings)
	}

	// A serial that cannot be read (a folder in its place stands in for any error; as
	// non-root, the file's mode too).
	root = tree(t, map[string]string{d + "sys_vendor": "Dell Inc.\n", d + "product_serial/x": "", d + "product_uuid": "4c4c4544-0042-3510-8052-b4c04f4b4d32\n"}, nil)
	inv = collect(t, root)
	if inv.DMI.Serial != "" || len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "product_serial cannot be read") {
		t.Errorf("unreadable serial: DMI %+v, warnings %q", inv.DMI, inv.Warnings)
	}
	if os.Geteuid() != 0 {
		p := filepath.Join(root, d, "product_uuid")
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		inv = collect(t, root)
		if !slices.ContainsFunc(inv.Warnings, func(w string) bool { return strings.Contains(w, "product_uuid is readable by root only") }) {
			t.Errorf("root-only UUID: warnings %q", inv.Warnings)
		}
	}
}

// TestProbePanicIsAnError: a panic while a device's first bytes are read or parsed
// (a goroutine of PID 1's: it would end the agent) is an error for that device.
func TestProbePanicIsAnError(t *testing.T) {
	defer func(w time.Duration, p func(string) (string, string)) { probeWait, readFirstBytes = w, p }(probeWait, readFirstBytes)
	probeWait = 5 * time.Second
	readFirstBytes = func(string) (string, string) {
		var b []byte
		return string(b[10:20]), "" // what a parser's slip does
	}
	start := time.Now()
	fstype, label, hung, err := probeWithin("/dev/sdx")
	if fstype != "" || label != "" || hung || err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("probeWithin = %q, %q, hung %v, %v; want an error saying it panicked", fstype, label, hung, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("the panic cost a wait of %s", time.Since(start))
	}
	if f, l := ProbeDevice("/dev/sdx"); f != "" || l != "" {
		t.Errorf("ProbeDevice = %q, %q", f, l)
	}
}
