package inventory

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// An eMMC module and an SD card: MMC cards have no model file; their product name and serial
// are the card's (device/name, device/serial), which a technician reads off the board or the
// card, and udev names /dev/disk/by-id/mmc-DG4032_0x5b4e3c21 from.
func TestMMCCardModelAndSerial(t *testing.T) {
	const (
		emmc = "sys/devices/platform/fe330000.mmc/mmc_host/mmc0/mmc0:0001"
		sd   = "sys/devices/platform/fe320000.mmc/mmc_host/mmc1/mmc1:aaaa"
	)
	root := tree(t, map[string]string{
		emmc + "/name": "DG4032\n", emmc + "/serial": "0x5b4e3c21\n", emmc + "/manfid": "0x000045\n", emmc + "/oemid": "0x0100\n",
		emmc + "/type": "MMC\n", emmc + "/block/mmcblk0/size": "61071360", emmc + "/block/mmcblk0/removable": "0",
		emmc + "/block/mmcblk0/mmcblk0boot0/size": "8192", emmc + "/block/mmcblk0/mmcblk0boot0/ro": "1",
		sd + "/name": "SD64G\n", sd + "/serial": "0x1234abcd\n", sd + "/manfid": "0x000003\n", sd + "/oemid": "0x5344\n",
		sd + "/type": "SD\n", sd + "/block/mmcblk1/size": "124735488", sd + "/block/mmcblk1/removable": "0",
	}, map[string]string{
		"sys/class/block/mmcblk0":      "../../devices/platform/fe330000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0",
		"sys/class/block/mmcblk0boot0": "../../devices/platform/fe330000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0/mmcblk0boot0",
		emmc + "/block/mmcblk0/device": "../../../mmc0:0001",
		"sys/class/block/mmcblk1":      "../../devices/platform/fe320000.mmc/mmc_host/mmc1/mmc1:aaaa/block/mmcblk1",
		sd + "/block/mmcblk1/device":   "../../../mmc1:aaaa",
	})
	inv := collect(t, root)
	type summary struct{ Transport, Model, Serial string }
	got := map[string]summary{}
	for _, d := range inv.Disks {
		got[d.Name] = summary{d.Transport, d.Model, d.Serial}
	}
	want := map[string]summary{
		"mmcblk0": {"mmc", "DG4032", "0x5b4e3c21"}, // the boot area mmcblk0boot0 is firmware's, not listed
		"mmcblk1": {"mmc", "SD64G", "0x1234abcd"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MMC disks:\n got %+v\nwant %+v", got, want)
	}
	if l := lineOf(table(t, inv), "/dev/mmcblk0 "); !strings.Contains(l, "DG4032") || !strings.Contains(l, "0x5b4e3c21") {
		t.Errorf("the eMMC's row lacks its model and serial: %q", l)
	}
}

// The wwn field is lsblk's WWN (udev's ID_WWN) in the kernel's spelling: a SCSI/SATA disk's
// NAA or EUI-64 name, never its t10. vendor id or a SCSI name string; an NVMe namespace's
// wwid whatever its kind. A capture's lsblk.json gives the same values as sysfs.
func TestWWN(t *testing.T) {
	const (
		pci   = "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/"
		sas   = pci + "host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0"
		sasE  = pci + "host0/port-0:1/end_device-0:1/target0:0:1/0:0:1:0"
		usb   = "sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0"
		iscsi = "sys/devices/platform/host7/session1/target7:0:0/7:0:0:0"
		nvme  = "sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/"
	)
	const nvmeID = "nvme.1b36-6465616462656566-51454d55204e564d65204374726c-00000001" // QEMU's NVMe: no EUI-64, NGUID or UUID
	files := map[string]string{
		sas + "/block/sda/size": "100", sas + "/wwid": "naa.5000c500a1b2c3d4\n",
		sasE + "/block/sdb/size": "100", sasE + "/wwid": "eui.0025385b71c0a1b2\n",
		usb + "/block/sdc/size": "100", usb + "/wwid": "t10.Generic Flash Drive 0123\n",
		iscsi + "/block/sdd/size": "100", iscsi + "/wwid": "iqn.2003-01.org.linux-iscsi.target1:lun0\n",
		nvme + "nvme0/nvme0n1/size": "100", nvme + "nvme0/nvme0n1/wwid": "eui.0025388b91c3e1b2\n",
		nvme + "nvme1/nvme1n1/size": "100", nvme + "nvme1/nvme1n1/wwid": "uuid.7e8a9c1e-1111-2222-3333-444455556666\n",
		nvme + "nvme2/nvme2n1/size": "100", nvme + "nvme2/nvme2n1/wwid": nvmeID + "\n",
	}
	links := map[string]string{}
	for name, dir := range map[string]string{"sda": sas, "sdb": sasE, "sdc": usb, "sdd": iscsi} {
		links["sys/class/block/"+name] = "../../" + strings.TrimPrefix(dir, "sys/") + "/block/" + name
		links[dir+"/block/"+name+"/device"] = "../../../" + dir[strings.LastIndex(dir, "/")+1:]
	}
	for _, n := range []string{"0", "1", "2"} {
		links["sys/class/block/nvme"+n+"n1"] = "../../" + strings.TrimPrefix(nvme, "sys/") + "nvme" + n + "/nvme" + n + "n1"
	}
	want := map[string]string{
		"sda":     "naa.5000c500a1b2c3d4",
		"sdb":     "eui.0025385b71c0a1b2",
		"sdc":     "", // vendor, model and serial strings: no WWN
		"sdd":     "", // a SCSI name string: no WWN
		"nvme0n1": "eui.0025388b91c3e1b2",
		"nvme1n1": "uuid.7e8a9c1e-1111-2222-3333-444455556666",
		"nvme2n1": nvmeID,
	}
	inv := collect(t, tree(t, files, links))
	got := map[string]string{}
	for _, d := range inv.Disks {
		got[d.Name] = d.WWN
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("WWNs from sysfs:\n got %q\nwant %q", got, want)
	}

	// What lsblk -J -b said of the same disks: udev's NAA names as 0x…, NVMe's wwid as is.
	lsblk := `{"blockdevices": [
		{"name": "sda", "size": 51200, "type": "disk", "wwn": "0x5000c500a1b2c3d4"},
		{"name": "sdb", "size": 51200, "type": "disk", "wwn": null},
		{"name": "sdc", "size": 51200, "type": "disk", "wwn": null},
		{"name": "sde", "size": 51200, "type": "disk", "wwn": "0x6001405D27E5D898829468B90CE4EF8C"},
		{"name": "nvme0n1", "size": 51200, "type": "disk", "wwn": "eui.0025388b91c3e1b2"},
		{"name": "nvme2n1", "size": 51200, "type": "disk", "wwn": "` + nvmeID + `"}]}`
	disks, err := ParseLsblk([]byte(lsblk))
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]string{}
	for _, d := range disks {
		got[d.Name] = d.WWN
	}
	wantLsblk := map[string]string{
		"sda": want["sda"], "sdb": "", "sdc": "", "sde": "naa.6001405d27e5d898829468b90ce4ef8c",
		"nvme0n1": want["nvme0n1"], "nvme2n1": nvmeID,
	}
	if !reflect.DeepEqual(got, wantLsblk) {
		t.Errorf("WWNs from lsblk.json:\n got %q\nwant %q", got, wantLsblk)
	}
}

// Fibre Channel LUNs are a SAN's: transport fc (as lsblk's TRAN), remote. A machine that
// boots from the SAN lists its boot LUN too, marked remote.
func TestFibreChannelLUN(t *testing.T) {
	const (
		hba    = "sys/devices/pci0000:00/0000:00:02.0/0000:04:00.0/"
		lun    = hba + "host3/rport-3:0-0/target3:0:0/3:0:0:1"
		lun2   = hba + "host3/rport-3:0-1/target3:0:1/3:0:1:0"
		fcoe   = "sys/devices/pci0000:00/0000:00:03.0/0000:05:00.0/host4/target4:0:0/4:0:0:0" // a copy that lost the rport
		sas    = "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0"
		fcHost = "sys/devices/pci0000:00/0000:00:03.0/0000:05:00.0/host4/fc_host/host4"
	)
	root := tree(t, map[string]string{
		lun + "/vendor": "PURE    ", lun + "/model": "FlashArray      ", lun + "/block/sdb/size": "2147483648",
		lun + "/wwid":                     "naa.624a9370c1d2e3f4a5b6c7d800011a2b",
		lun + "/block/sdb/sdb1/partition": "1", lun + "/block/sdb/sdb1/uevent": "PARTN=1\nPARTNAME=ETOILE-A\n",
		lun2 + "/vendor": "NETAPP  ", lun2 + "/model": "LUN C-Mode      ", lun2 + "/block/sdc/size": "2147483648",
		fcoe + "/vendor": "3PARdata", fcoe + "/model": "VV              ", fcoe + "/block/sdd/size": "2147483648",
		fcHost + "/port_name": "0x21000024ff5a1b2c",
		sas + "/vendor":       "SEAGATE ", sas + "/model": "ST1200MM0009    ", sas + "/block/sda/size": "2344225968",
		"proc/cmdline": "etoile.slot=a\n",
	}, map[string]string{
		"sys/class/block/sdb":      "../../" + strings.TrimPrefix(lun, "sys/") + "/block/sdb",
		"sys/class/block/sdb1":     "../../" + strings.TrimPrefix(lun, "sys/") + "/block/sdb/sdb1",
		lun + "/block/sdb/device":  "../../../3:0:0:1",
		"sys/class/block/sdc":      "../../" + strings.TrimPrefix(lun2, "sys/") + "/block/sdc",
		lun2 + "/block/sdc/device": "../../../3:0:1:0",
		"sys/class/block/sdd":      "../../" + strings.TrimPrefix(fcoe, "sys/") + "/block/sdd",
		fcoe + "/block/sdd/device": "../../../4:0:0:0",
		"sys/class/fc_host/host4":  "../../" + strings.TrimPrefix(fcHost, "sys/"),
		"sys/class/block/sda":      "../../" + strings.TrimPrefix(sas, "sys/") + "/block/sda",
		sas + "/block/sda/device":  "../../../0:0:0:0",
	})
	inv := collect(t, root)
	type summary struct {
		Transport     string
		Remote, Boot  bool
		Vendor, Model string
		WWN           string
	}
	got := map[string]summary{}
	for _, d := range inv.Disks {
		got[d.Name] = summary{d.Transport, d.Remote, d.Boot, d.Vendor, d.Model, d.WWN}
	}
	want := map[string]summary{
		"sda": {"sas", false, false, "SEAGATE", "ST1200MM0009", ""},                             // a local SAS disk
		"sdb": {"fc", true, true, "PURE", "FlashArray", "naa.624a9370c1d2e3f4a5b6c7d800011a2b"}, // boot from SAN: slot A's partition
		"sdc": {"fc", true, false, "NETAPP", "LUN C-Mode", ""},
		"sdd": {"fc", true, false, "3PARdata", "VV", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("disks:\n got %+v\nwant %+v", got, want)
	}
	if l := lineOf(table(t, inv), "/dev/sdb "); !strings.Contains(l, "fc (remote)") {
		t.Errorf("the FC LUN's row does not say it is remote: %q", l)
	}

	// lsblk's TRAN of a FC LUN is fc.
	disks, err := ParseLsblk([]byte(`{"blockdevices": [{"name": "sdb", "size": 1099511627776, "type": "disk", "tran": "fc"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 1 || disks[0].Transport != "fc" || !disks[0].Remote {
		t.Errorf("lsblk's fc LUN = %+v, want transport fc, remote", disks)
	}
}

// A GPU whose link is down (fallen off the bus: sysfs reads "Unknown" and 0 lanes) says so in
// the table, not "Unknown x0"; the JSON keeps what sysfs read.
func TestGPULinkDown(t *testing.T) {
	const dev = "sys/bus/pci/devices/"
	files := map[string]string{}
	for addr, link := range map[string][2]string{"0000:18:00.0": {"32.0 GT/s PCIe", "16"}, "0000:2a:00.0": {"Unknown", "0"}} {
		files[dev+addr+"/vendor"], files[dev+addr+"/device"], files[dev+addr+"/class"] = "0x10de\n", "0x2330\n", "0x030200\n"
		files[dev+addr+"/current_link_speed"], files[dev+addr+"/current_link_width"] = link[0]+"\n", link[1]+"\n"
		files[dev+addr+"/max_link_speed"], files[dev+addr+"/max_link_width"] = "32.0 GT/s PCIe\n", "16\n"
	}
	inv := collect(t, tree(t, files, nil))
	out := table(t, inv)
	if l := lineOf(out, "0000:2a:00.0 "); !strings.HasSuffix(l, "link down") || strings.Contains(l, "Unknown") {
		t.Errorf("the GPU with its link down: %q, want it to end in \"link down\"", l)
	}
	if l := lineOf(out, "0000:18:00.0 "); !strings.HasSuffix(l, "32.0 GT/s x16") {
		t.Errorf("the healthy GPU: %q, want it to end in \"32.0 GT/s x16\"", l)
	}
	b, err := json.Marshal(inv.GPUs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"current_speed":"Unknown","current_width":0`) {
		t.Errorf("the JSON no longer has what sysfs read: %s", b)
	}
}
