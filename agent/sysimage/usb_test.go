package sysimage

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fakeSCSIHost writes a scsi_host folder laid out as sysfs has it (the class
// entry's device link replaced by a folder), with disks of the given sizes.
func fakeSCSIHost(t *testing.T, sys, host, proc string, disks map[string]string) {
	t.Helper()
	dir := filepath.Join(sys, "class", "scsi_host", host)
	write := func(p, data string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "proc_name"), proc+"\n")
	write(filepath.Join(dir, "scan"), "")
	n := host[len("host"):]
	for name, size := range disks {
		sdev := filepath.Join(dir, "device", "target"+n+":0:0", n+":0:0:"+name[len(name)-1:])
		write(filepath.Join(sdev, "rescan"), "")
		write(filepath.Join(sdev, "block", name, "size"), size+"\n")
	}
}

func TestUSBHostsAndRescan(t *testing.T) {
	sys := t.TempDir()
	fakeSCSIHost(t, sys, "host0", "ahci", nil)                                      // not USB: never touched
	fakeSCSIHost(t, sys, "host6", "usb-storage", nil)                               // INQUIRY failed: no device
	fakeSCSIHost(t, sys, "host7", "usb-storage", map[string]string{"sda0": "0"})    // medium not present yet
	fakeSCSIHost(t, sys, "host8", "usb-storage", map[string]string{"sdb0": "1184"}) // a stick that is ready
	hosts := USBHosts(sys)
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	if !slices.Equal(names, []string{"host6", "host7", "host8"}) {
		t.Fatalf("USBHosts = %q, want the three usb-storage hosts", names)
	}
	if hosts[0].Devices != 0 || hosts[1].Devices != 1 || len(hosts[1].Empty) != 1 || len(hosts[2].Empty) != 0 {
		t.Fatalf("hosts = %+v", hosts)
	}
	for _, h := range hosts {
		if err := h.Rescan(sys); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(sys, "class", "scsi_host", p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for p, want := range map[string]string{
		"host0/scan": "",
		"host6/scan": "- - -\n",
		"host7/scan": "",
		"host7/device/target7:0:0/7:0:0:0/rescan": "1\n",
		"host8/device/target8:0:0/8:0:0:0/rescan": "",
	} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
}
