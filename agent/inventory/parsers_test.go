package inventory

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

func TestParseNvidiaVersion(t *testing.T) {
	real, err := os.ReadFile(filepath.Join(h100Root, "nvidia-driver-version.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
	}{
		{"open module (H100 host)", string(real), "580.159.04"},
		{"proprietary module", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\nGCC version: 12\n", "535.104.05"},
		{"arm64 open module", "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  570.86.15  Release Build  (dvs-builder@U16)\n", "570.86.15"},
		{"two-part version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  390.157  Wed Oct 12 09:19:07 UTC 2022\n", "390.157"},
		{"no version line", "GCC version: gcc 12.2.0\n", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseNvidiaVersion([]byte(tt.in)); got != tt.want {
				t.Errorf("ParseNvidiaVersion = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseNvidiaInformation(t *testing.T) {
	real, err := os.ReadFile(filepath.Join(h100Root, "nvidia-gpus-information.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		want []NvidiaProcGPU
	}{
		{"H100 host", string(real), []NvidiaProcGPU{{Model: "NVIDIA H100 80GB HBM3",
			UUID: "GPU-59004ccb-69e2-277e-c8ce-2872db1ec13e", VBIOS: "96.00.da.00.0c", BusLocation: "0000:00:06.0", Firmware: "580.159.04"}}},
		{"two concatenated", "Model: \t A\nBus Location: \t 0000:17:00.0\nModel: \t B\nBus Location: \t 0000:65:00.0\n",
			[]NvidiaProcGPU{{Model: "A", BusLocation: "0000:17:00.0"}, {Model: "B", BusLocation: "0000:65:00.0"}}},
		{"lines before the first model are ignored", "GPU UUID: x\n", nil},
		{"excluded (NVreg_ExcludedGpus)", "Model: \t A\nBus Location: \t 0000:17:00.0\nGPU Excluded:\t Yes\nModel: \t B\nGPU Excluded:\t No\n",
			[]NvidiaProcGPU{{Model: "A", BusLocation: "0000:17:00.0", Excluded: true}, {Model: "B"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseNvidiaInformation([]byte(tt.in))
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("GPU %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseNvidiaSMI(t *testing.T) {
	real, err := os.ReadFile(filepath.Join(h100Root, "nvidia-smi-q.xml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr bool
		driver  string
		gpus    []NvidiaSMIGPU
	}{
		{name: "H100 host", in: string(real), driver: "580.159.04", gpus: []NvidiaSMIGPU{{
			PCIAddress: "0000:00:06.0", ProductName: "NVIDIA H100 80GB HBM3", Architecture: "Hopper",
			VBIOS: "96.00.DA.00.0C", MemoryMiB: 81559, MIGMode: "disabled", MIGModePending: "disabled", Persistence: "enabled"}}},
		{name: "MIG not supported, id only in the attribute", in: `<nvidia_smi_log><driver_version>550.54</driver_version>
			<gpu id="00000000:01:00.0"><product_name>NVIDIA GeForce RTX 4090</product_name><persistence_mode>Disabled</persistence_mode>
			<mig_mode><current_mig>N/A</current_mig><pending_mig>N/A</pending_mig></mig_mode>
			<fb_memory_usage><total>24564 MiB</total></fb_memory_usage></gpu></nvidia_smi_log>`,
			driver: "550.54", gpus: []NvidiaSMIGPU{{PCIAddress: "0000:01:00.0", ProductName: "NVIDIA GeForce RTX 4090", MemoryMiB: 24564, Persistence: "disabled"}}},
		{name: "no GPU", in: `<nvidia_smi_log><driver_version>550.54</driver_version><attached_gpus>0</attached_gpus></nvidia_smi_log>`,
			driver: "550.54"},
		{name: "not XML", in: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", wantErr: true},
		{name: "cut short", in: string(real[:len(real)/2]), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNvidiaSMI([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error for %q", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.DriverVersion != tt.driver || len(got.GPUs) != len(tt.gpus) {
				t.Fatalf("got %+v, want driver %s and %+v", got, tt.driver, tt.gpus)
			}
			for i := range got.GPUs {
				if got.GPUs[i] != tt.gpus[i] {
					t.Errorf("GPU %d = %+v, want %+v", i, got.GPUs[i], tt.gpus[i])
				}
			}
		})
	}
}

func TestNormalizePCIAddress(t *testing.T) {
	for in, want := range map[string]string{
		"00000000:00:06.0": "0000:00:06.0",
		"0000:3B:00.0":     "0000:3b:00.0",
		"00010000:01:00.1": "10000:01:00.1", // VMD domains are 5 digits in sysfs too
		"garbage":          "garbage",
		"zz:00:00.0":       "zz:00:00.0",
	} {
		if got := NormalizePCIAddress(in); got != want {
			t.Errorf("NormalizePCIAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCPUInfo(t *testing.T) {
	real, err := os.ReadFile(filepath.Join(h100Root, "cpuinfo-head.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		want CPUInfo
	}{
		{"H100 host (cut after two CPUs)", string(real), CPUInfo{Model: "Intel(R) Xeon(R) Processor", Vendor: "GenuineIntel",
			Processors: 2, Sockets: 1, Cores: 16}},
		{"arm64 (no model name)", "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\nprocessor\t: 1\n",
			CPUInfo{Model: "Neoverse-N1", Vendor: "ARM", Processors: 2, Implementer: "0x41", Part: "0xd0c"}},
		{"POWER", "processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n", CPUInfo{Model: "POWER9 (raw), altivec supported", Processors: 1}},
		{"empty", "", CPUInfo{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCPUInfo([]byte(tt.in)); got != tt.want {
				t.Errorf("ParseCPUInfo = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"0-15", 16, false},
		{"0", 1, false},
		{"0-3,8-11\n", 8, false},
		{"0,2,4", 3, false},
		{"", 0, false},
		{"3-1", 0, true},
		{"a-b", 0, true},
		{"0-99999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseCPUList(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseCPUList(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"MemTotal:       131981020 kB\nMemFree: 1 kB\n", 131981020 * 1024, false},
		{"MemFree: 1 kB\n", 0, true},
		{"MemTotal: lots kB\n", 0, true},
		{"MemTotal: 5 MB\n", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseMemTotal([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseMemTotal(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestTransport(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1", "nvme"},
		{"/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1", "nvme"},
		{"/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", "sata"},
		{"/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb", "usb"},
		{"/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "virtio"},
		{"/sys/devices/pci0000:00/0000:00:05.0/virtio3/host2/target2:0:0/2:0:0:0/block/sdc", "scsi"},
		{"/sys/devices/pci0000:00/0000:18:00.0/host0/target0:2:0/0:2:0:0/block/sda", "scsi"},
		{"/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host0/port-0:1/end_device-0:1/target0:0:1/0:0:1:0/block/sdg", "sas"},
		{"/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host0/port-0:0/expander-0:0/port-0:0:4/end_device-0:0:4/target0:0:4/0:0:4:0/block/sdh", "sas"},
		{"/sys/devices/platform/fe310000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0", "mmc"},
		{"/sys/devices/rbd/0/block/rbd0", "rbd"},
		{"/sys/devices/platform/host7/session1/target7:0:0/7:0:0:1/block/sdd", "iscsi"},
		{"/sys/devices/pci0000:00/0000:5e:00.0/host3/session2/target3:0:0/3:0:0:0/block/sdb", "iscsi"}, // offloaded (qedi)
		{"/sys/devices/virtual/nvme-fabrics/ctl/nvme5/nvme5n1", "nvme-of"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Transport(tt.path); got != tt.want {
			t.Errorf("Transport(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestParseVPDSerial(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{append([]byte{0, 0x80, 0, 8}, "  ABC123"...), "ABC123"},
		{append([]byte{0, 0x80, 0, 50}, "short"...), "short"}, // length past the end
		{append([]byte{0, 0x83, 0, 5}, "ident"...), ""},       // another page
		{append([]byte{0, 0x80, 0, 4}, 'A', 0, 'B', 7), "AB"}, // control bytes dropped
		{[]byte{0, 0x80}, ""},
	}
	for _, tt := range tests {
		if got := ParseVPDSerial(tt.in); got != tt.want {
			t.Errorf("ParseVPDSerial(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fsImage builds the first 64 KiB of a filesystem with the given label where each format
// keeps it.
func fsImage(kind, label string) []byte {
	b := make([]byte, 64*1024)
	switch kind {
	case "iso":
		b[32768] = 1
		copy(b[32769:], "CD001")
		copy(b[32768+40:32768+72], label+strings.Repeat(" ", 32-len(label)))
	case "ext4":
		binary.LittleEndian.PutUint16(b[1024+56:], 0xEF53)
		copy(b[1024+120:], label)
	case "fat32":
		copy(b[71:82], label+strings.Repeat(" ", 11-len(label)))
		copy(b[82:], "FAT32   ")
		b[510], b[511] = 0x55, 0xAA
	case "fat16":
		copy(b[43:54], label+strings.Repeat(" ", 11-len(label)))
		copy(b[54:], "FAT16   ")
		b[510], b[511] = 0x55, 0xAA
	}
	return b
}

func TestFSLabel(t *testing.T) {
	tests := []struct {
		name       string
		in         []byte
		want, kind string
	}{
		{"ISO9660", fsImage("iso", "ETOILE"), "ETOILE", "iso9660"},
		{"ext4", fsImage("ext4", "ETOILE-STATE"), "ETOILE-STATE", "ext4"},
		{"FAT32", fsImage("fat32", "ETOILE-CFG"), "ETOILE-CFG", "vfat"},
		{"FAT16", fsImage("fat16", "ETOILE-ESP"), "ETOILE-ESP", "vfat"},
		{"FAT without a label", fsImage("fat32", "NO NAME"), "", "vfat"},
		{"zeros", make([]byte, 64*1024), "", ""},
		{"short read", []byte{1, 2, 3}, "", ""},
	}
	for _, tt := range tests {
		if got := FSLabel(tt.in); got != tt.want {
			t.Errorf("%s: FSLabel = %q, want %q", tt.name, got, tt.want)
		}
		if kind, label := FSProbe(tt.in); kind != tt.kind || label != tt.want {
			t.Errorf("%s: FSProbe = %q, %q; want %q, %q", tt.name, kind, label, tt.kind, tt.want)
		}
	}
}

func TestParseLsblk(t *testing.T) {
	real, err := os.ReadFile(filepath.Join(h100Root, "lsblk.json"))
	if err != nil {
		t.Fatal(err)
	}
	disks, err := ParseLsblk(real)
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 2 || disks[0].Name != "vda" || disks[0].SizeBytes != 274877906944 || !disks[0].Rotational ||
		disks[1].Name != "vdb" || disks[1].Transport != "virtio" {
		t.Errorf("disks = %+v", disks)
	}
	// Older lsblk writes numbers and booleans as strings.
	old := `{"blockdevices": [{"name": "sda", "size": "512", "type": "disk", "rota": "1", "rm": "0", "tran": "sata",
		"children": [{"name": "sda1", "size": "256", "type": "part", "partlabel": "ETOILE-ESP", "label": "ESP"}]}]}`
	disks, err = ParseLsblk([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 1 || disks[0].SizeBytes != 512 || !disks[0].Rotational || len(disks[0].Partitions) != 1 ||
		disks[0].Partitions[0].PartLabel != "ETOILE-ESP" || disks[0].Partitions[0].FSLabel != "ESP" {
		t.Errorf("disks = %+v", disks)
	}
	if _, err := ParseLsblk([]byte(`{"blockdevices": [{"name": "sda", "size": "big"}]}`)); err == nil {
		t.Error("no error for a size that is not a number")
	}
}

// TestParseLsblkROMPartitionsAndTransport: t6's shapes. An optical drive (TYPE rom: a BMC's
// virtual CD of the ISO) is listed, and is the boot medium by its label; a partition's
// number comes from its name when lsblk has no PARTN column, and its start is left out
// when lsblk has no START column (never 0: a partition may start there); lsblk's transport
// words are the sysfs path's.
func TestParseLsblkROMPartitionsAndTransport(t *testing.T) {
	const capture = `{"blockdevices":[
 {"name":"sr0","size":734003200,"model":"Virtual CDROM","type":"rom","rota":true,"tran":"usb","rm":true,"ro":true,"label":"ETOILE"},
 {"name":"sda","size":960197124096,"model":"SAMSUNG MZ7LH960","type":"disk","tran":"sas",
  "children":[{"name":"sda1","size":536870912,"type":"part","partlabel":"ETOILE-ESP"},{"name":"sda12","size":512,"type":"part"}]},
 {"name":"nvme0n1","size":3840755982336,"type":"disk","tran":"nvme",
  "children":[{"name":"nvme0n1p2","size":1048576,"type":"part","start":2048},{"name":"nvme0n1p1","size":1048576,"type":"part","start":0}]},
 {"name":"sdc","size":512,"type":"disk","tran":"ata"}, {"name":"sdd","size":512,"type":"disk","tran":"spi"},
 {"name":"sde","size":512,"type":"disk","tran":"fcoe"}, {"name":"sdf","size":512,"type":"disk","tran":"sata"}
]}`
	disks, err := ParseLsblk([]byte(capture))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range disks {
		got = append(got, d.Name+" "+d.Transport)
	}
	if want := "sr0 usb, sda sas, nvme0n1 nvme, sdc sata, sdd scsi, sde fc, sdf sata"; strings.Join(got, ", ") != want {
		t.Errorf("disks = %s, want %s", strings.Join(got, ", "), want)
	}
	if len(disks) != 7 || !disks[0].Removable || !disks[0].ReadOnly || disks[0].FSLabel != "ETOILE" || !disks[5].Remote {
		t.Fatalf("disks = %+v, want sr0 removable, read-only, labelled ETOILE; sde (FCoE) remote", disks)
	}
	b, err := json.Marshal([]any{disks[1].Partitions, disks[2].Partitions})
	if err != nil {
		t.Fatal(err)
	}
	want := `[[{"name":"sda1","path":"/dev/sda1","number":1,"size_bytes":536870912,"part_label":"ETOILE-ESP","fs_label":""},` +
		`{"name":"sda12","path":"/dev/sda12","number":12,"size_bytes":512,"part_label":"","fs_label":""}],` +
		`[{"name":"nvme0n1p1","path":"/dev/nvme0n1p1","number":1,"start_bytes":0,"size_bytes":1048576,"part_label":"","fs_label":""},` +
		`{"name":"nvme0n1p2","path":"/dev/nvme0n1p2","number":2,"start_bytes":1048576,"size_bytes":1048576,"part_label":"","fs_label":""}]]`
	if string(b) != want {
		t.Errorf("partitions:\n got %s\nwant %s", b, want)
	}

	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{"proc/cpuinfo": "processor\t: 0\n", "proc/meminfo": "MemTotal: 1000 kB\n",
		"lsblk.json": capture, "sys/class/net/lo/address": "00:00:00:00:00:00"})
	inv, err := Collect(context.Background(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Disks) != 7 || !inv.Disks[0].Boot || inv.Disks[0].BootReason != "volume label ETOILE" {
		t.Errorf("disks from lsblk.json = %+v, want sr0 listed and marked as the boot medium", inv.Disks)
	}
}

func TestPCIeGen(t *testing.T) {
	for in, want := range map[string]int{
		"2.5 GT/s PCIe": 1, "5.0 GT/s PCIe": 2, "8.0 GT/s PCIe": 3, "16.0 GT/s PCIe": 4,
		"32.0 GT/s PCIe": 5, "64.0 GT/s PCIe": 6, "8 GT/s": 3, "Unknown": 0, "": 0, "2.5 GT/s x": 1,
	} {
		if got := PCIeGen(in); got != want {
			t.Errorf("PCIeGen(%q) = %d, want %d", in, got, want)
		}
	}
}

// Fuzz tests: every parser of text from firmware, drivers or captures must not panic, and
// what it returns must stay printable where people read it.

func FuzzParseNvidiaInformation(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(h100Root, "nvidia-gpus-information.txt")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("Model: A\nBus Location: 00000000:01:00.0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, g := range ParseNvidiaInformation(b) {
			_ = g.BusLocation
		}
	})
}

func FuzzParseNvidiaVersion(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(h100Root, "nvidia-driver-version.txt")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("NVRM version: 1.2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v := ParseNvidiaVersion(b); v != "" && !driverVersionRe().MatchString(v) {
			t.Errorf("version %q is not shaped like one", v)
		}
	})
}

func FuzzParseNvidiaSMI(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(h100Root, "nvidia-smi-q.xml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(smiTwoA100))
	f.Add([]byte("<nvidia_smi_log><gpu id=\"x\"><fb_memory_usage><total>1 MiB</total></fb_memory_usage></gpu></nvidia_smi_log>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		smi, err := ParseNvidiaSMI(b)
		if err != nil {
			return
		}
		for _, g := range smi.GPUs {
			if g.MIGMode != "" && g.MIGMode != "enabled" && g.MIGMode != "disabled" {
				t.Errorf("MIG mode %q", g.MIGMode)
			}
			if v := LabelValue(g.ProductName); len(v) > 63 {
				t.Errorf("label value %q too long", v)
			}
		}
	})
}

func FuzzParseCPUInfo(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(h100Root, "cpuinfo-head.txt")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("processor: 0\nphysical id: 0\ncpu cores: 4\nphysical id: 1\ncpu cores: 99999999999\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info := ParseCPUInfo(b)
		if info.Cores < 0 || info.Processors < 0 {
			t.Errorf("negative counts: %+v", info)
		}
	})
}

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0-15", "0-3,8-11", "", "1-0", "0-2147483647"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCPUList(s)
		if err == nil && (n < 0 || n > 1<<20) {
			t.Errorf("ParseCPUList(%q) = %d", s, n)
		}
	})
}

func FuzzFSLabel(f *testing.F) {
	f.Add(fsImage("iso", "ETOILE"))
	f.Add(fsImage("fat32", "X")[:600])
	f.Add(fsImage("ext4", "Y")[:1200])
	f.Fuzz(func(t *testing.T, b []byte) {
		if l := FSLabel(b); !utf8.ValidString(l) || strings.ContainsAny(l, "\x00\n") {
			t.Errorf("label %q", l)
		}
		_ = ParseVPDSerial(b)
	})
}

func FuzzParseLsblk(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(h100Root, "lsblk.json")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		disks, err := ParseLsblk(b)
		if err != nil {
			return
		}
		for _, d := range disks {
			if strings.Contains(d.Path, "..") {
				t.Errorf("disk path %q leaves /dev", d.Path)
			}
		}
	})
}

// TestNA: what nvidia-smi writes for a value it could not read is no value
// (a failing GPU's "[Unknown Error]" is not its product name).
func TestNA(t *testing.T) {
	for in, want := range map[string]string{"N/A": "", "[N/A]": "", "[Not Supported]": "", "Not Supported": "", "[Unknown Error]": "",
		"[GPU requires reset]": "", " NVIDIA H100 80GB HBM3 ": "NVIDIA H100 80GB HBM3", "Enabled": "Enabled", "[x": "[x"} {
		if got := na(in); got != want {
			t.Errorf("na(%q) = %q, want %q", in, got, want)
		}
	}
}
