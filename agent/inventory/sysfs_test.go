package inventory

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// A made-up server laid out as sysfs lays it out, with real symbolic links: one SATA disk
// installed with Étoile (slots A and B), an NVMe disk, the ISO written to a USB stick, a
// virtio-scsi disk, a loop device; two NICs plus lo and a bridge; two NVIDIA GPUs beside the
// BMC's ASPEED VGA.
func writeServerTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	// libata's IDENTIFY data of the SATA disk (ata1, device 0): its full model.
	ataID, err := os.ReadFile("testdata/ata/WDC-WD10EFRX-68FYTN0.id")
	if err != nil {
		t.Fatal(err)
	}
	const (
		sata  = "sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda"
		nvme  = "sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1"
		usb   = "sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
		vscsi = "sys/devices/pci0000:00/0000:00:05.0/virtio3/host2/target2:0:0/2:0:0:0/block/sdc"
		loop  = "sys/devices/virtual/block/loop0"
		// A dual-port NVMe drive under native multipath: the namespace
		// head sits under its subsystem (virtual), the per-path disk is hidden.
		mpSubsys = "sys/devices/virtual/nvme-subsystem/nvme-subsys1"
		mpHead   = mpSubsys + "/nvme1n1"
		mpPath   = "sys/devices/pci0000:00/0000:00:1c.0/0000:5e:00.0/nvme/nvme1/nvme1c1n1"
		eno1     = "sys/devices/pci0000:00/0000:00:03.0/net/eno1"
		eno2     = "sys/devices/pci0000:00/0000:00:04.0/net/eno2"
		pciDev   = "sys/bus/pci/devices/"
	)
	vpd := string([]byte{0x00, 0x80, 0x00, 0x14}) + "  WD-WCC4N1234567    "
	files := map[string]string{
		sata + "/size": "1953525168", sata + "/removable": "0", sata + "/ro": "0", sata + "/queue/rotational": "1",
		sata + "/device/model": "WDC WD10EFRX-68F", sata + "/device/vpd_pg80": vpd, "sys/class/ata_device/dev1.0/id": string(ataID),
		sata + "/device/wwid":    "naa.50014ee2b5c8f4a1",
		sata + "/sda1/partition": "1", sata + "/sda1/start": "2048", sata + "/sda1/size": "1048576",
		sata + "/sda1/uevent":    "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=ETOILE-ESP\n",
		sata + "/sda2/partition": "2", sata + "/sda2/start": "1050624", sata + "/sda2/size": "4194304",
		sata + "/sda2/uevent":     "PARTN=2\nPARTNAME=ETOILE-A\n",
		sata + "/sda10/partition": "10", sata + "/sda10/start": "5244928", sata + "/sda10/size": "4194304",
		sata + "/sda10/uevent": "PARTN=10\nPARTNAME=ETOILE-STATE\n",
		nvme + "/size":         "1953525168", nvme + "/removable": "0", nvme + "/queue/rotational": "0",
		nvme + "/wwid": "eui.0025388b91c3e1b2", nvme + "/device/model": "Samsung SSD 980 PRO 1TB",
		nvme + "/device/serial": "S5GXNX0R123456",
		mpHead + "/size":        "7501476528", mpHead + "/removable": "0", mpHead + "/queue/rotational": "0",
		mpHead + "/wwid": "eui.36344730529000950025384500000001", mpSubsys + "/model": "SAMSUNG MZWLR7T6HALA-00007",
		mpSubsys + "/serial": "S6EUNA0R500123", mpPath + "/size": "7501476528", mpPath + "/hidden": "1",
		usb + "/size": "61440000", usb + "/removable": "1", usb + "/queue/rotational": "1",
		usb + "/device/model": "Flash Drive", usb + "/device/wwid": "t10.Generic Flash Drive 0123",
		vscsi + "/size": "2097152", vscsi + "/device/model": "QEMU HARDDISK",
		loop + "/size": "0",
		"proc/cpuinfo": "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\nphysical id\t: 0\ncpu cores\t: 96\n\n" +
			"processor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\nphysical id\t: 1\ncpu cores\t: 96\n",
		"sys/devices/system/cpu/online": "0-191\n",
		"proc/meminfo":                  "MemTotal:       792237576 kB\nMemFree: 1 kB\n",
		"sys/class/dmi/id/sys_vendor":   "Supermicro\n", "sys/class/dmi/id/product_name": "AS-4125GS-TNRT\n",
		"sys/class/dmi/id/product_serial": "S123456X\n", "sys/class/dmi/id/product_uuid": "00000000-0000-0000-0000-3cecef123456\n",
		eno1 + "/address": "3c:ec:ef:00:00:01", eno1 + "/speed": "25000", eno1 + "/carrier": "1", eno1 + "/operstate": "up",
		eno2 + "/address": "3c:ec:ef:00:00:02", eno2 + "/speed": "-1", eno2 + "/carrier": "0", eno2 + "/operstate": "down",
		"sys/devices/virtual/net/lo/address": "00:00:00:00:00:00", "sys/devices/virtual/net/br0/address": "3c:ec:ef:00:00:01",
		"proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n" +
			"GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
		"proc/driver/nvidia/gpus/0000:17:00.0/information": "Model: \t\t NVIDIA A100 80GB PCIe\nGPU UUID: \t GPU-aaaa\nBus Location: \t 0000:17:00.0\n",
		"proc/driver/nvidia/gpus/0000:65:00.0/information": "Model: \t\t NVIDIA A100 80GB PCIe\nGPU UUID: \t GPU-bbbb\nBus Location: \t 0000:65:00.0\n",
		"proc/cmdline": "console=ttyS0\n",
	}
	pci := map[string][4]string{ // address → class, vendor, device, driver
		"0000:03:00.0": {"0x030000", "0x1a03", "0x2000", "ast"},
		"0000:17:00.0": {"0x030200", "0x10de", "0x20b5", "nvidia"},
		"0000:65:00.0": {"0x030200", "0x10de", "0x20b5", "nvidia"},
	}
	links := map[string]string{
		"sys/class/block/sda":                        "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
		"sys/class/block/sda1":                       "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1",
		"sys/class/block/nvme0n1":                    "../../devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1",
		"sys/class/block/nvme1n1":                    "../../devices/virtual/nvme-subsystem/nvme-subsys1/nvme1n1",
		mpHead + "/device":                           "../../nvme-subsys1",
		"sys/class/block/nvme1c1n1":                  "../../devices/pci0000:00/0000:00:1c.0/0000:5e:00.0/nvme/nvme1/nvme1c1n1",
		"sys/class/block/sdb":                        "../../devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb",
		"sys/class/block/sdc":                        "../../devices/pci0000:00/0000:00:05.0/virtio3/host2/target2:0:0/2:0:0:0/block/sdc",
		"sys/class/block/loop0":                      "../../devices/virtual/block/loop0",
		"sys/class/net/eno1":                         "../../devices/pci0000:00/0000:00:03.0/net/eno1",
		"sys/class/net/eno2":                         "../../devices/pci0000:00/0000:00:04.0/net/eno2",
		"sys/class/net/lo":                           "../../devices/virtual/net/lo",
		"sys/class/net/br0":                          "../../devices/virtual/net/br0",
		eno1 + "/device":                             "../../../0000:00:03.0",
		eno2 + "/device":                             "../../../0000:00:04.0",
		"sys/devices/pci0000:00/0000:00:03.0/driver": "../../../bus/pci/drivers/ice",
		"sys/devices/pci0000:00/0000:00:04.0/driver": "../../../bus/pci/drivers/ice",
		"dev/disk/by-label/ETOILE":                   "../../sdb",
	}
	for addr, p := range pci {
		d := pciDev + addr + "/"
		files[d+"class"], files[d+"vendor"], files[d+"device"] = p[0], p[1], p[2]
		files[d+"numa_node"] = "0"
		links[d+"driver"] = "../../../../bus/pci/drivers/" + p[3]
		if p[1] == "0x10de" {
			files[d+"current_link_speed"], files[d+"current_link_width"] = "16.0 GT/s PCIe", "16"
			files[d+"max_link_speed"], files[d+"max_link_width"] = "16.0 GT/s PCIe", "16"
		}
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fakeroot.Links(t, root, links)
	return root
}

const smiTwoA100 = `<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<nvidia_smi_log>
	<driver_version>535.104.05</driver_version>
	<cuda_version>12.2</cuda_version>
	<gpu id="00000000:17:00.0">
		<product_name>NVIDIA A100 80GB PCIe</product_name>
		<mig_mode><current_mig>Enabled</current_mig><pending_mig>Enabled</pending_mig></mig_mode>
		<pci><pci_bus_id>00000000:17:00.0</pci_bus_id></pci>
		<fb_memory_usage><total>81920 MiB</total></fb_memory_usage>
	</gpu>
	<gpu id="00000000:65:00.0">
		<product_name>NVIDIA A100 80GB PCIe</product_name>
		<mig_mode><current_mig>Disabled</current_mig><pending_mig>Enabled</pending_mig></mig_mode>
		<pci><pci_bus_id>00000000:65:00.0</pci_bus_id></pci>
		<fb_memory_usage><total>81920 MiB</total></fb_memory_usage>
	</gpu>
</nvidia_smi_log>
`

func TestServerTree(t *testing.T) {
	root := writeServerTree(t)
	var ran []string
	run := func(_ context.Context, name string, args ...string) ([]byte, error) {
		ran = append(ran, name+" "+strings.Join(args, " "))
		return []byte(smiTwoA100), nil
	}
	inv, err := Collect(context.Background(), Options{Root: root, Run: run})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Warnings) != 0 {
		t.Errorf("warnings: %q", inv.Warnings)
	}
	if want := []string{"nvidia-smi -q -x"}; !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %q, want %q", ran, want)
	}
	wantDMI := DMI{Vendor: "Supermicro", Product: "AS-4125GS-TNRT", Serial: "S123456X", UUID: "00000000-0000-0000-0000-3cecef123456"}
	if inv.DMI != wantDMI {
		t.Errorf("DMI = %+v, want %+v", inv.DMI, wantDMI)
	}
	wantCPU := CPU{Model: "AMD EPYC 9654 96-Core Processor", Vendor: "AuthenticAMD", Count: 192, Sockets: 2, Cores: 192}
	if inv.CPU != wantCPU {
		t.Errorf("CPU = %+v, want %+v", inv.CPU, wantCPU)
	}
	if inv.Memory.TotalBytes != 792237576*1024 {
		t.Errorf("memory = %d", inv.Memory.TotalBytes)
	}

	type diskSummary struct {
		Name, Transport, Model, Serial, WWN string
		Size                                uint64
		Rotational, Removable, Boot         bool
		Parts                               string
	}
	var disks []diskSummary
	for _, d := range inv.Disks {
		var parts []string
		for _, p := range d.Partitions {
			parts = append(parts, p.Name+"="+p.PartLabel)
		}
		disks = append(disks, diskSummary{d.Name, d.Transport, d.Model, d.Serial, d.WWN, d.SizeBytes,
			d.Rotational, d.Removable, d.Boot, strings.Join(parts, ",")})
	}
	wantDisks := []diskSummary{
		{"nvme0n1", "nvme", "Samsung SSD 980 PRO 1TB", "S5GXNX0R123456", "eui.0025388b91c3e1b2", 1953525168 * 512, false, false, false, ""},
		{"nvme1n1", "nvme", "SAMSUNG MZWLR7T6HALA-00007", "S6EUNA0R500123", "eui.36344730529000950025384500000001", 7501476528 * 512, false, false, false, ""},
		{"sda", "sata", "WDC WD10EFRX-68FYTN0", "WD-WCC4N1234567", "naa.50014ee2b5c8f4a1", 1953525168 * 512, true, false, false,
			"sda1=ETOILE-ESP,sda2=ETOILE-A,sda10=ETOILE-STATE"},
		{"sdb", "usb", "Flash Drive", "", "", 61440000 * 512, true, true, true, ""},
		{"sdc", "scsi", "QEMU HARDDISK", "", "", 2097152 * 512, false, false, false, ""},
	}
	if !reflect.DeepEqual(disks, wantDisks) {
		t.Errorf("disks:\n got %+v\nwant %+v", disks, wantDisks)
	}
	if p := inv.Disks[2].Partitions[1]; p.StartBytes == nil || *p.StartBytes != 1050624*512 || p.SizeBytes != 4194304*512 || p.Number != 2 || p.Path != "/dev/sda2" {
		t.Errorf("sda2 = %+v", p)
	}
	if inv.Disks[3].BootReason != "volume label ETOILE" {
		t.Errorf("sdb boot reason = %q", inv.Disks[3].BootReason)
	}

	wantNICs := []NIC{
		{Name: "eno1", MAC: "3c:ec:ef:00:00:01", Driver: "ice", SpeedMbps: 25000, Carrier: true, OperState: "up", PCIAddress: "0000:00:03.0"},
		{Name: "eno2", MAC: "3c:ec:ef:00:00:02", Driver: "ice", SpeedMbps: 0, Carrier: false, OperState: "down", PCIAddress: "0000:00:04.0"},
	}
	if !reflect.DeepEqual(inv.NICs, wantNICs) {
		t.Errorf("NICs:\n got %+v\nwant %+v", inv.NICs, wantNICs)
	}

	if len(inv.PCIDevices) != 3 {
		t.Errorf("got %d PCI devices, want 3", len(inv.PCIDevices))
	}
	if len(inv.GPUs) != 2 {
		t.Fatalf("got %d GPUs, want 2 (the BMC's VGA is no GPU): %+v", len(inv.GPUs), inv.GPUs)
	}
	for i, want := range []struct{ addr, uuid, mig, pending string }{
		{"0000:17:00.0", "GPU-aaaa", "enabled", "enabled"},
		{"0000:65:00.0", "GPU-bbbb", "disabled", "enabled"},
	} {
		g := inv.GPUs[i]
		if g.PCIAddress != want.addr || g.UUID != want.uuid || g.MIGMode != want.mig || g.MIGModePending != want.pending ||
			g.Model != "NVIDIA A100 80GB PCIe" || g.MemoryMiB != 81920 || g.DriverVersion != "535.104.05" ||
			g.CUDAVersion != "12.2" || g.Driver != "nvidia" || g.Link == nil || g.Link.CurrentGen != 4 {
			t.Errorf("GPU %d = %+v, want %+v", i, g, want)
		}
	}
	wantLabels := map[string]string{
		LabelGPUVendor: "nvidia", LabelGPUModel: "NVIDIA-A100-80GB-PCIe", LabelGPUCount: "2", LabelNvidiaPresent: "true",
	}
	if got := NodeLabels(inv); !reflect.DeepEqual(got, wantLabels) {
		t.Errorf("NodeLabels = %v, want %v", got, wantLabels)
	}
}

// The boot medium: the caller's word first, then the booted slot's partition, then the ISO's
// volume label, so a stick booted beside an older installation is the one marked.
func TestBootMedium(t *testing.T) {
	tests := []struct {
		name       string
		cmdline    string
		bootDevice string
		want       string // disk marked Boot
		reason     string
	}{
		{"live ISO on a stick", "console=ttyS0", "", "sdb", "volume label ETOILE"},
		{"installed, slot a", "etoile.slot=a quiet", "", "sda", "partition ETOILE-A of the booted slot"},
		{"slot b not on any disk falls back to the label", "etoile.slot=b", "", "sdb", "volume label ETOILE"},
		{"caller names a disk", "etoile.slot=a", "/dev/nvme0n1", "nvme0n1", "named by the caller (nvme0n1)"},
		{"caller names a partition", "", "sda2", "sda", "named by the caller (sda2)"},
		// A typo: no disk is named, and none is guessed from the labels.
		{"caller names no device here", "etoile.slot=a", "/dev/vdx", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeServerTree(t)
			if err := os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte(tt.cmdline+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			inv, err := Collect(context.Background(), Options{Root: root, BootDevice: tt.bootDevice,
				Run: func(context.Context, string, ...string) ([]byte, error) { return []byte(smiTwoA100), nil }})
			if err != nil {
				t.Fatal(err)
			}
			var marked []string
			for _, d := range inv.Disks {
				if d.Boot {
					marked = append(marked, d.Name)
					if d.BootReason != tt.reason {
						t.Errorf("%s boot reason = %q, want %q", d.Name, d.BootReason, tt.reason)
					}
				}
			}
			if strings.Join(marked, ",") != tt.want {
				t.Errorf("boot disks = %v, want %s", marked, tt.want)
			}
			if tt.want == "" && !hasWarning(inv, "the boot device "+tt.bootDevice+" is no disk or partition here", "no disk is marked") {
				t.Errorf("warnings = %q, want one naming %s", inv.Warnings, tt.bootDevice)
			}
		})
	}
}

// nvidia-smi failing (a GPU in a bad state, a driver mismatch) costs only its extra details.
func TestNvidiaSMIFails(t *testing.T) {
	root := writeServerTree(t)
	inv, err := Collect(context.Background(), Options{Root: root,
		Run: func(context.Context, string, ...string) ([]byte, error) {
			return nil, errors.New("Failed to initialize NVML: Driver/library version mismatch")
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "run nvidia-smi -q -x: Failed") || !strings.Contains(inv.Warnings[0], "mismatch") {
		t.Errorf("warnings = %q, want one naming nvidia-smi and its error", inv.Warnings)
	}
	if len(inv.GPUs) != 2 || inv.GPUs[0].DriverVersion != "535.104.05" || inv.GPUs[0].Model != "NVIDIA A100 80GB PCIe" ||
		inv.GPUs[0].MemoryMiB != 0 || inv.GPUs[0].MIGMode != "" {
		t.Errorf("GPUs = %+v, want both, with /proc's model and version and no memory or MIG", inv.GPUs)
	}
}

// A copied tree whose links became folders (cp -rL) still gives disks and leaves the virtual
// ones (and eMMC boot areas) out by name.
func TestCopiedTreeWithoutLinks(t *testing.T) {
	root := t.TempDir()
	for name, content := range map[string]string{
		"sys/class/block/vda/size":           "2048",
		"sys/class/block/vda/vda1/partition": "1",
		"sys/class/block/vda/vda1/size":      "1024",
		"sys/class/block/loop0/size":         "8",
		"sys/class/block/zram0/size":         "8",
		"sys/class/block/mmcblk0boot0/size":  "8192",
		"proc/cpuinfo":                       "processor : 0\nmodel name : X\n",
		"proc/meminfo":                       "MemTotal: 1024 kB\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := Collect(context.Background(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Disks) != 1 || inv.Disks[0].Name != "vda" || len(inv.Disks[0].Partitions) != 1 || inv.Disks[0].Transport != "" {
		t.Errorf("disks = %+v, want vda with one partition and unknown transport", inv.Disks)
	}
	if inv.CPU.Count != 1 || inv.Memory.TotalBytes != 1024*1024 || len(inv.GPUs) != 0 || len(NodeLabels(inv)) != 0 {
		t.Errorf("inventory = %+v", inv)
	}
}

// RunTool is what runs nvidia-smi on a live machine; its errors carry the program's own words,
// which nvidia-smi writes to stdout.
func TestExecRun(t *testing.T) {
	out, err := RunTool(context.Background(), nil, nil, "sh", "-c", "echo '<x/>'")
	if err != nil || string(out) != "<x/>\n" {
		t.Errorf("RunTool = %q, %v", out, err)
	}
	_, err = RunTool(context.Background(), nil, nil, "sh", "-c", "echo NVIDIA-SMI has failed because it could not communicate; exit 9")
	if err == nil || !strings.Contains(err.Error(), "exit status 9") || !strings.Contains(err.Error(), "NVIDIA-SMI has failed") {
		t.Errorf("RunTool error = %v, want the exit status and nvidia-smi's words", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunTool(ctx, nil, nil, "sleep", "5"); err == nil {
		t.Error("RunTool ran on after its context was cancelled")
	}
	// As PID 1, the reaper starts it and gets its pid back after the Wait.
	var started, released int
	start := func(c *exec.Cmd) error {
		err := c.Start()
		if err == nil {
			started = c.Process.Pid
		}
		return err
	}
	out, err = RunTool(context.Background(), start, func(pid int) { released = pid }, "sh", "-c", "echo '<y/>'")
	if err != nil || string(out) != "<y/>\n" || started == 0 || released != started {
		t.Errorf("RunTool through a reaper = %q, %v; started %d, released %d", out, err, started, released)
	}
}

// TestExecRunGivesUpOnAProcessThatDoesNotDie: nvidia-smi stuck in the
// driver (a GPU off the bus) survives SIGKILL, and waiting for it would
// never end; RunTool gives up on it and says so. The stand-in for such a
// process is one whose kill at the deadline is not sent.
func TestExecRunGivesUpOnAProcessThatDoesNotDie(t *testing.T) {
	defer func(d time.Duration) { stuckGrace = d }(stuckGrace)
	stuckGrace = 200 * time.Millisecond
	var proc *os.Process
	start := func(c *exec.Cmd) error {
		c.Cancel = func() error { return nil } // the kill does not take
		err := c.Start()
		proc = c.Process
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := RunTool(ctx, start, nil, "sleep", "30")
	if proc != nil {
		defer proc.Kill()
	}
	if err == nil || !strings.Contains(err.Error(), "did not exit when killed") || !strings.Contains(err.Error(), "stuck in the kernel") {
		t.Errorf("RunTool = %v, want it to give up on the process", err)
	}
}

// TestMultipathDiskListedOnce: a SAS disk reached through two paths (sda,
// and sdd through the second port: the same WWN, serial and size; no
// multipathd on the node) is one disk with its other path named, and a boot
// from a partition through that path marks it.
func TestMultipathDiskListedOnce(t *testing.T) {
	root := writeServerTree(t)
	const second = "sys/devices/pci0000:00/0000:00:1f.3/host9/target9:0:0/9:0:0:0/block/sdd"
	vpd := string([]byte{0x00, 0x80, 0x00, 0x14}) + "  WD-WCC4N1234567    "
	files := map[string]string{
		second + "/size": "1953525168", second + "/removable": "0", second + "/ro": "0", second + "/queue/rotational": "1",
		second + "/device/model": "WDC WD10EFRX-68F", second + "/device/vpd_pg80": vpd, second + "/device/wwid": "naa.50014ee2b5c8f4a1",
		second + "/sdd2/partition": "2", second + "/sdd2/start": "1050624", second + "/sdd2/size": "4194304",
		second + "/sdd2/uevent": "PARTN=2\nPARTNAME=ETOILE-A\n",
	}
	fakeroot.Write(t, root, files)
	if err := os.Symlink("../../devices/pci0000:00/0000:00:1f.3/host9/target9:0:0/9:0:0:0/block/sdd", filepath.Join(root, "sys/class/block/sdd")); err != nil {
		t.Fatal(err)
	}
	inv, err := Collect(context.Background(), Options{Root: root, BootDevice: "/dev/sdd2"})
	if err != nil {
		t.Fatal(err)
	}
	var sda *Disk
	for i, d := range inv.Disks {
		switch d.Name {
		case "sdd":
			t.Errorf("the second path is listed as a disk of its own: %+v", d)
		case "sda":
			sda = &inv.Disks[i]
		}
	}
	if sda == nil || !reflect.DeepEqual(sda.Paths, []string{"/dev/sdd"}) || !sda.Boot {
		t.Errorf("sda = %+v, want its other path /dev/sdd named and it marked as the boot disk", sda)
	}
}

// TestProbeLabelDoesNotHangOnAFailingDisk: a disk whose read does not end
// (a failing one; a stand-in that blocks here) costs the inventory one
// bounded wait, says so, and the devices after it are not read.
func TestProbeLabelDoesNotHangOnAFailingDisk(t *testing.T) {
	defer func(w time.Duration, p func(string) (string, string)) { probeWait, readFirstBytes = w, p }(probeWait, readFirstBytes)
	block := make(chan struct{})
	defer close(block)
	var calls atomic.Int32
	probeWait = 100 * time.Millisecond
	readFirstBytes = func(string) (string, string) { calls.Add(1); <-block; return "", "" }
	c := &collector{r: root{dir: "/", live: true}, log: slog.New(slog.DiscardHandler), inv: &Inventory{}}
	if got := c.probeLabel("/dev/sdx"); got != "" || !c.probeHung {
		t.Fatalf("probeLabel of a hung disk = %q, hung %v", got, c.probeHung)
	}
	if len(c.inv.Warnings) != 1 || !strings.Contains(c.inv.Warnings[0], "/dev/sdx did not end within 100ms") {
		t.Errorf("warnings = %q", c.inv.Warnings)
	}
	c.probeLabel("/dev/sdy")
	if n := calls.Load(); n != 1 {
		t.Errorf("%d devices read after one hung, want none", n-1)
	}
}
