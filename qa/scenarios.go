package qa

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// ReadyTimeout bounds a boot to the ready line under TCG before scaling: the
// slowest scenario (OVMF, USB) reaches it in well under a minute on an idle
// core, and 2 VMs share 2 cores with other work.
const ReadyTimeout = 4 * time.Minute

// NetbootAppend is the kernel command line of the netboot scenario, without the
// etoile.system= arguments: the one the default image's boot loader entries
// use (Étoile's consoles, then image/default.yaml's kernel.cmdline).
const NetbootAppend = "console=tty0 console=ttyS0,115200 quiet cryptomgr.notests"

// FloorAppend is the kernel command line of the direct-kernel floor boots: the
// same as the build's boot loader entries.
const FloorAppend = NetbootAppend

// Scenario is one way of booting the build's media, with the ready line it must
// reach. Tests and benchmarks share the list.
type Scenario struct {
	Name     string
	Firmware Device // SeaBIOS{} or OVMF{}
	Boot     string // expected boot= value
	Source   string // expected source= value
	Slot     string // expected slot= value; "" = not checked
	NeedIP   bool   // ip= must not be none
	// BootPCI is the PCI device of the boot medium's controller, which the
	// agent reads from the UEFI firmware's BootCurrent ("" = not checked):
	// QEMU gives q35's built-in AHCI 00:1f.2 and the first added device 00:01.0.
	BootPCI string
	// BootMedium is the disk the inventory must mark as the boot medium
	// (its console line's boot_medium=; "none" for a netboot).
	BootMedium string
	Needs      []string
	// Media returns the devices that carry the build's media (firmware and NIC
	// are added by Devices).
	Media func(tb testing.TB, out string) []Device
}

// Scenarios returns every boot the issue requires.
func Scenarios() []Scenario {
	iso := func(tb testing.TB, out string) []Device { return []Device{CDROM{Path: filepath.Join(out, ISOName)}} }
	usb := func(tb testing.TB, out string) []Device { return []Device{USBStick{Path: filepath.Join(out, ISOName)}} }
	return []Scenario{
		{Name: "iso-cd-bios", Firmware: SeaBIOS{}, Boot: "bios", Source: "iso", BootMedium: "sr0", Needs: []string{ISOName}, Media: iso},
		{Name: "iso-cd-uefi", Firmware: OVMF{}, Boot: "uefi", Source: "iso", BootPCI: "0000:00:1f.2", BootMedium: "sr0", Needs: []string{ISOName}, Media: iso},
		{Name: "iso-usb-bios", Firmware: SeaBIOS{}, Boot: "bios", Source: "iso", BootMedium: "sda", Needs: []string{ISOName}, Media: usb},
		{Name: "iso-usb-uefi", Firmware: OVMF{}, Boot: "uefi", Source: "iso", BootPCI: "0000:00:01.0", BootMedium: "sda", Needs: []string{ISOName}, Media: usb},
		{
			Name: "raw-virtio-uefi", Firmware: OVMF{}, Boot: "uefi", Source: "disk", Slot: "a", BootPCI: "0000:00:01.0", BootMedium: "vda", Needs: []string{RawName},
			Media: func(tb testing.TB, out string) []Device {
				return []Device{VirtioDisk{Path: filepath.Join(out, RawName)}}
			},
		},
		{
			Name: "netboot-http-bios", Firmware: SeaBIOS{}, Boot: "bios", Source: "http", NeedIP: true, BootMedium: "none",
			Needs: []string{KernelName, InitramfsName, SystemName},
			Media: func(tb testing.TB, out string) []Device {
				sum, err := FileSHA256(filepath.Join(out, SystemName))
				if err != nil {
					tb.Fatal(err)
				}
				return []Device{NetbootKernel(tb, out, sum)}
			},
		},
	}
}

// NetbootKernel serves out/ on loopback and returns the direct-kernel device
// that boots the netboot set with etoile.system pointing at it and the given
// expected checksum.
func NetbootKernel(tb testing.TB, out, sha256hex string) Device {
	port := ServeDir(tb, out)
	return DirectKernel{
		Kernel: filepath.Join(out, KernelName),
		Initrd: filepath.Join(out, InitramfsName),
		Append: fmt.Sprintf("%s etoile.system=http://10.0.2.2:%d/%s etoile.system.sha256=%s", NetbootAppend, port, SystemName, sha256hex),
	}
}

// Devices returns the whole VM for the scenario: firmware, media, and a NIC on
// QEMU's user network (the agent brings up every link, as on a real box).
func (s Scenario) Devices(tb testing.TB, out string) []Device {
	devs := []Device{s.Firmware}
	devs = append(devs, s.Media(tb, out)...)
	return append(devs, UserNIC{})
}

// FloorDevices returns the VM that boots qa/floor the way the scenario boots
// the agent, and says how. Preferred is the same media layout (the build's ISO
// or raw image with the initramfs replaced in place, or the netboot set with the
// floor's initramfs); where the image could not be patched, the build's kernel
// and the floor initramfs handed over directly by QEMU under the same firmware.
func (s Scenario) FloorDevices(tb testing.TB, out string, floors FloorSet) ([]Device, string) {
	fw := firmwareName(s.Firmware)
	layout, why := true, ""
	for _, n := range s.Needs {
		if n != ISOName && n != RawName {
			continue
		}
		if !floors.Layout[n] {
			layout, why = false, floors.Why[n]
		}
	}
	if layout {
		return s.Devices(tb, floors.Dir), "same media, " + fw
	}
	return []Device{
		s.Firmware,
		DirectKernel{Kernel: filepath.Join(out, KernelName), Initrd: filepath.Join(floors.Dir, InitramfsName), Append: FloorAppend},
		UserNIC{},
	}, "direct kernel, " + fw + " (media not patched: " + why + ")"
}

func firmwareName(d Device) string {
	switch d.(type) {
	case SeaBIOS:
		return "SeaBIOS"
	case OVMF:
		return "OVMF"
	}
	return fmt.Sprintf("%T", d)
}

// CheckReady reports (without stopping the test) every way the ready line
// differs from what the scenario expects.
func (s Scenario) CheckReady(tb testing.TB, m Match) {
	tb.Helper()
	for _, k := range []string{"version", "boot", "source", "slot", "ip"} {
		if _, ok := m.Fields[k]; !ok {
			tb.Errorf("ready line %q lacks %s=", m.Line, k)
		}
	}
	want := map[string]string{"boot": s.Boot, "source": s.Source, "slot": s.Slot}
	for _, k := range []string{"boot", "source", "slot"} {
		if want[k] != "" && m.Fields[k] != want[k] {
			tb.Errorf("ready line %q: %s=%q, want %s=%s", m.Line, k, m.Fields[k], k, want[k])
		}
	}
	if s.NeedIP && (m.Fields["ip"] == "" || m.Fields["ip"] == "none") {
		tb.Errorf("ready line %q: ip=%q, want an address from QEMU's DHCP", m.Line, m.Fields["ip"])
	}
}
