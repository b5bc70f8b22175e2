package sysimage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// USBHost is a SCSI host of the usb-storage driver (one per USB stick or
// card reader) and what the kernel found on it.
type USBHost struct {
	Name    string   // "host6"
	Devices int      // SCSI devices found on it (0: its scan failed or has not run)
	Empty   []string // folders of its SCSI disks that report no capacity
}

// USBHosts lists the usb-storage SCSI hosts under sysDir/class/scsi_host.
//
// The kernel makes usb-storage wait delay_use seconds (1 by default) before
// it asks a new USB device what it holds, for devices that need time to
// settle after being plugged in; the boot loads it with delay_use=0, since
// the stick it boots from was read by the firmware a moment earlier. A
// stick that does need the time shows up as a host with no devices (its
// INQUIRY failed) or a disk with no capacity ("medium not present"), which
// Rescan asks again.
func USBHosts(sysDir string) []USBHost {
	base := filepath.Join(sysDir, "class", "scsi_host")
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var out []USBHost
	for _, e := range entries {
		proc, err := os.ReadFile(filepath.Join(base, e.Name(), "proc_name"))
		if err != nil || strings.TrimSpace(string(proc)) != "usb-storage" {
			continue
		}
		h := USBHost{Name: e.Name()}
		// host6/device is the host's device folder: target6:0:0/6:0:0:0/…
		sdevs, _ := filepath.Glob(filepath.Join(base, e.Name(), "device", "target*", "*:*:*:*"))
		h.Devices = len(sdevs)
		for _, sdev := range sdevs {
			sizes, _ := filepath.Glob(filepath.Join(sdev, "block", "*", "size"))
			for _, s := range sizes {
				if b, err := os.ReadFile(s); err == nil && strings.TrimSpace(string(b)) == "0" {
					h.Empty = append(h.Empty, sdev)
				}
			}
		}
		slices.Sort(h.Empty)
		out = append(out, h)
	}
	return out
}

// Rescan asks the kernel to look at a USB host again: every target on it
// when it has no devices, else each of its disks with no capacity.
func (h USBHost) Rescan(sysDir string) error {
	if h.Devices == 0 {
		return os.WriteFile(filepath.Join(sysDir, "class", "scsi_host", h.Name, "scan"), []byte("- - -\n"), 0)
	}
	for _, sdev := range h.Empty {
		if err := os.WriteFile(filepath.Join(sdev, "rescan"), []byte("1\n"), 0); err != nil {
			return err
		}
	}
	return nil
}
