// Package efivar reads which device the UEFI firmware booted from: the
// BootCurrent variable names the Boot#### load option it used, whose device
// path starts with the PCI path of the controller (PciRoot(0x0)/Pci(0x3,0x0)/…).
// The boot uses it to load that controller's drivers before the others'.
package efivar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// GlobalGUID is the EFI global variable vendor GUID (UEFI spec, 3.3).
const GlobalGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// PCINode is one Pci(device,function) node of a device path.
type PCINode struct{ Device, Function uint8 }

// BootPath is the PCI part of the device path the firmware booted from.
type BootPath struct {
	Option  string    // "Boot0001"
	RootBus uint32    // PciRoot(n): the root bridge's ACPI _UID, often (not always) its bus number
	PCI     []PCINode // root port first, the boot controller last
}

// String renders it the way the UEFI shell does, e.g. "PciRoot(0x0)/Pci(0x3,0x0)".
func (p BootPath) String() string {
	s := fmt.Sprintf("PciRoot(0x%X)", p.RootBus)
	for _, n := range p.PCI {
		s += fmt.Sprintf("/Pci(0x%X,0x%X)", n.Device, n.Function)
	}
	return s
}

// ErrNoPCI is returned when the boot option's device path has no PCI part
// (a boot from a file, a RAM disk or a virtual device).
var ErrNoPCI = errors.New("the boot option's device path has no PCI device")

// Current reads BootCurrent and its load option from dir (efivarfs,
// /sys/firmware/efi/efivars) and returns the PCI path it starts with.
func Current(dir string) (BootPath, error) {
	cur, err := readVar(dir, "BootCurrent")
	if err != nil {
		return BootPath{}, err
	}
	if len(cur) != 2 {
		return BootPath{}, fmt.Errorf("BootCurrent holds %d bytes, want 2", len(cur))
	}
	name := fmt.Sprintf("Boot%04X", binary.LittleEndian.Uint16(cur))
	opt, err := readVar(dir, name)
	if err != nil {
		return BootPath{}, err
	}
	dp, err := loadOptionPath(opt)
	if err != nil {
		return BootPath{}, fmt.Errorf("%s: %w", name, err)
	}
	p, err := pciPath(dp)
	if err != nil {
		return BootPath{}, fmt.Errorf("%s: %w", name, err)
	}
	p.Option = name
	return p, nil
}

// LoaderGUID is the vendor GUID of the Boot Loader Interface's variables,
// which systemd-boot sets.
const LoaderGUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// LoaderDevicePartUUID returns the unique GUID (lower case) of the GPT
// partition systemd-boot was loaded from: the ESP of the disk the machine
// booted, whichever other disks carry the same labels. An error when the
// variable is not set (booted another way: a CD, BIOS, another loader).
func LoaderDevicePartUUID(dir string) (string, error) {
	b, err := readVarGUID(dir, "LoaderDevicePartUUID", LoaderGUID)
	if err != nil {
		return "", err
	}
	// A UTF-16LE string, NUL-terminated.
	var s strings.Builder
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		if c > 0x7f {
			return "", fmt.Errorf("LoaderDevicePartUUID holds a non-ASCII character")
		}
		s.WriteByte(byte(c))
	}
	u := strings.ToLower(s.String())
	if len(u) != 36 || strings.Count(u, "-") != 4 {
		return "", fmt.Errorf("LoaderDevicePartUUID %q is not a GUID", u)
	}
	return u, nil
}

// readVar reads a global variable's data: efivarfs files start with the
// variable's 4-byte attributes.
func readVar(dir, name string) ([]byte, error) { return readVarGUID(dir, name, GlobalGUID) }

func readVarGUID(dir, name, guid string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name+"-"+guid))
	if err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%s: %d bytes, shorter than its attributes", name, len(b))
	}
	return b[4:], nil
}

// loadOptionPath returns the device path of an EFI_LOAD_OPTION: attributes
// (4), the path list's length (2), a NUL-terminated UTF-16 description, then
// the path list (UEFI spec, 3.1.3).
func loadOptionPath(opt []byte) ([]byte, error) {
	if len(opt) < 6 {
		return nil, fmt.Errorf("load option of %d bytes", len(opt))
	}
	n := int(binary.LittleEndian.Uint16(opt[4:6]))
	i := 6
	for ; i+1 < len(opt); i += 2 {
		if opt[i] == 0 && opt[i+1] == 0 {
			break
		}
	}
	i += 2
	if i+n > len(opt) {
		return nil, fmt.Errorf("device path of %d bytes past the option's end", n)
	}
	return opt[i : i+n], nil
}

// pciPath walks device path nodes (type, subtype, 2-byte length, data)
// up to the first end node, taking the ACPI PciRoot and the Pci nodes that
// follow it.
func pciPath(dp []byte) (BootPath, error) {
	var p BootPath
	root := false
	for len(dp) >= 4 {
		typ, sub, n := dp[0], dp[1], int(binary.LittleEndian.Uint16(dp[2:4]))
		if n < 4 || n > len(dp) {
			return BootPath{}, fmt.Errorf("device path node of length %d in %d bytes", n, len(dp))
		}
		data := dp[4:n]
		switch {
		case typ == 0x7f: // end of the path (or of one instance)
			dp = nil
			continue
		case typ == 0x02 && sub == 0x01 && len(data) >= 8: // ACPI: HID, UID
			hid := binary.LittleEndian.Uint32(data[0:4])
			if hid == 0x0a0341d0 || hid == 0x0a0841d0 { // PNP0A03, PNP0A08: a PCI root bridge
				root, p.RootBus = true, binary.LittleEndian.Uint32(data[4:8])
			}
		case typ == 0x01 && sub == 0x01 && len(data) >= 2 && root: // hardware: PCI function, device
			p.PCI = append(p.PCI, PCINode{Device: data[1], Function: data[0]})
		}
		dp = dp[n:]
	}
	if len(p.PCI) == 0 {
		return BootPath{}, ErrNoPCI
	}
	return p, nil
}

// SysfsDevice finds the boot controller's folder under sysDir/devices: the
// root bus (rootBusDir), then each Pci node's device below the one before
// it (a bridge's children sit in its folder, on the bus it gives them).
func (p BootPath) SysfsDevice(sysDir string) (string, error) {
	dir := rootBusDir(sysDir, p.RootBus)
	for _, n := range p.PCI {
		suffix := fmt.Sprintf(":%02x.%x", n.Device, n.Function)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "", err
		}
		next := ""
		for _, e := range entries {
			// PCI device folders are named DDDD:BB:dd.f.
			if name := e.Name(); strings.HasSuffix(name, suffix) && strings.Count(name, ":") == 2 {
				next = filepath.Join(dir, name)
				break
			}
		}
		if next == "" {
			return "", fmt.Errorf("no PCI device %s under %s", suffix[1:], dir)
		}
		dir = next
	}
	return dir, nil
}

// rootBusDir is the sysfs folder (pciDDDD:BB) of the PCI root bridge whose
// ACPI _UID is uid. PciRoot's number is that UID, not the bus: servers
// with several root bridges (buses 0x00, 0x16, 0x30…, UIDs 0, 1, 2…, or
// other PCI segments) number them apart, so the bridge is looked up among
// the ACPI devices (PNP0A08 for PCI Express, PNP0A03 for PCI; their uid
// file, their physical_node link to the bus's folder). Without a match
// (no ACPI in sysfs, a UID that is not a number) the UID is taken for the
// bus number of segment 0, which it is on most single-root machines.
func rootBusDir(sysDir string, uid uint32) string {
	for _, hid := range []string{"PNP0A08", "PNP0A03"} {
		adevs, _ := filepath.Glob(filepath.Join(sysDir, "bus", "acpi", "devices", hid+":*"))
		for _, adev := range adevs {
			b, err := os.ReadFile(filepath.Join(adev, "uid"))
			if err != nil {
				continue
			}
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err != nil || uint32(n) != uid {
				continue
			}
			to, err := os.Readlink(filepath.Join(adev, "physical_node"))
			if bus := filepath.Base(to); err == nil && isRootBus(bus) {
				return filepath.Join(sysDir, "devices", bus)
			}
		}
	}
	return filepath.Join(sysDir, "devices", fmt.Sprintf("pci0000:%02x", uid))
}

// isRootBus reports whether name is a root bus's sysfs folder name:
// pci, a segment of 4 or more hex digits, a colon, a bus of 2.
func isRootBus(name string) bool {
	seg, bus, ok := strings.Cut(strings.TrimPrefix(name, "pci"), ":")
	return ok && strings.HasPrefix(name, "pci") && len(seg) >= 4 && len(bus) == 2 && isLowerHex(seg) && isLowerHex(bus)
}

func isLowerHex(s string) bool {
	return strings.Trim(s, "0123456789abcdef") == ""
}
