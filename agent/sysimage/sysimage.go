// Package sysimage finds the system image a node boots: on the Étoile ISO
// (found by its ISO9660 volume id, whether the ISO is a CD or was written raw
// to a USB stick), in a GPT partition named for the booted slot, or over HTTP
// with a mandatory SHA-256.
package sysimage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	// ISOLabel is the volume id the image build gives the ISO.
	ISOLabel = "ETOILE"
	// ISOImagePath is where the system image sits inside the ISO.
	ISOImagePath = "etoile/system.sqfs"
)

// PartLabel is the GPT partition name holding slot's system image ("a" → ETOILE-A).
func PartLabel(slot string) string { return "ETOILE-" + strings.ToUpper(slot) }

// Kinds of source, as printed in the ready line (source=…).
const (
	SourceISO  = "iso"
	SourceDisk = "disk"
	SourceHTTP = "http"
)

// BlockDev is one entry of /sys/class/block, read from its uevent file.
type BlockDev struct {
	Name      string // kernel name: "sr0", "vda2"
	Path      string // the device node: "/dev/vda2" (under --root: DIR/dev/vda2)
	PartName  string // GPT partition name (PARTNAME=), "" if none
	Partition bool   // a partition rather than a whole disk
	Disk      string // a partition's whole disk ("sda" for sda2); the name itself for a disk
	PartN     int    // a partition's number on its disk (PARTN=), 0 if unknown
	// Size in bytes, from sysfs; 0 for an empty drive (a CD tray with no
	// disc), which is never opened: reading it only fills the kernel log
	// with I/O errors.
	Size int64
}

// ListBlock reads every block device from sysDir/class/block. Devices are
// returned whole disks first, then by name, so a raw-written ISO is found on
// the disk itself (sda) rather than on the partition the isohybrid table
// lays over it (sda1).
func ListBlock(sysDir, devDir string) ([]BlockDev, error) {
	entries, err := os.ReadDir(filepath.Join(sysDir, "class", "block"))
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var devs []BlockDev
	for _, e := range entries {
		ue, err := readUevent(filepath.Join(sysDir, "class", "block", e.Name(), "uevent"))
		if err != nil {
			continue // gone meanwhile
		}
		name := ue["DEVNAME"]
		if name == "" {
			name = e.Name()
		}
		d := BlockDev{
			Name:      e.Name(),
			Path:      filepath.Join(devDir, name),
			PartName:  ue["PARTNAME"],
			Partition: ue["DEVTYPE"] == "partition",
			Disk:      e.Name(),
			Size:      -1, // unknown: try it
		}
		if d.Partition {
			d.Disk = diskOf(sysDir, e.Name())
			d.PartN, _ = strconv.Atoi(ue["PARTN"])
		}
		if b, err := os.ReadFile(filepath.Join(sysDir, "class", "block", e.Name(), "size")); err == nil {
			if sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				d.Size = sectors * 512 // sysfs counts 512-byte sectors whatever the device's own
			}
		}
		devs = append(devs, d)
	}
	slices.SortFunc(devs, func(a, b BlockDev) int {
		if a.Partition != b.Partition {
			if a.Partition {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return devs, nil
}

func readUevent(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m, sc.Err()
}

// FindPartitions returns every partition whose GPT name is label, in
// devs's order.
func FindPartitions(devs []BlockDev, label string) []BlockDev {
	var out []BlockDev
	for _, d := range devs {
		if d.Partition && d.PartName == label {
			out = append(out, d)
		}
	}
	return out
}

// PartUUID returns a partition's unique GUID read from its disk's GPT, ""
// when it cannot be told.
func PartUUID(devs []BlockDev, part BlockDev) string {
	if !part.Partition || part.PartN < 1 {
		return ""
	}
	for _, d := range devs {
		if !d.Partition && d.Name == part.Disk {
			if ids, err := PartUUIDs(d.Path); err == nil && part.PartN <= len(ids) {
				return ids[part.PartN-1]
			}
		}
	}
	return ""
}

// DisksWithPartUUID returns the whole disks among devs whose GPT holds a
// partition with the unique GUID uuid: one, unless the same image was
// written to several.
func DisksWithPartUUID(devs []BlockDev, uuid string) []BlockDev {
	uuid = strings.ToLower(uuid)
	var out []BlockDev
	for _, d := range devs {
		if d.Partition || skipForISO(d.Name) || d.Size == 0 {
			continue
		}
		ids, err := PartUUIDs(d.Path)
		if err != nil {
			continue
		}
		if slices.Contains(ids, uuid) {
			out = append(out, d)
		}
	}
	return out
}

// skipForISO leaves out devices that cannot hold the boot medium and would
// only slow the search (RAM disks, loop devices, zram).
func skipForISO(name string) bool {
	for _, p := range []string{"ram", "loop", "zram", "dm-", "md"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// FindISO returns the first device whose ISO9660 volume id is label. Devices
// that cannot be read (an empty CD drive), or not in time (DeviceReads: a
// failing disk), are skipped.
func FindISO(devs []BlockDev, label string) (BlockDev, bool) {
	for _, d := range devs {
		if skipForISO(d.Name) || d.Size == 0 {
			continue
		}
		var id string
		err := DeviceReads.Do(d.Path, "its ISO9660 volume id", func() error {
			f, err := os.Open(d.Path)
			if err != nil {
				return err
			}
			defer f.Close()
			id, err = VolumeID(f)
			return err
		})
		if err == nil && id == label {
			return d, true
		}
	}
	return BlockDev{}, false
}

// FindISOs returns every medium whose ISO9660 volume id is label, in
// devs's order (a CD and a USB stick may both be Étoile's). A hybrid ISO
// written to a stick reads as ISO9660 both as the whole disk and as its
// first partition (which starts at byte 0): that is one medium, the disk.
func FindISOs(devs []BlockDev, label string) []BlockDev {
	var found []BlockDev
	for rest := devs; ; {
		d, ok := FindISO(rest, label)
		if !ok {
			break
		}
		found = append(found, d)
		i := slices.IndexFunc(rest, func(x BlockDev) bool { return x.Name == d.Name })
		rest = rest[i+1:]
	}
	var out []BlockDev
	for _, d := range found {
		if d.Partition && slices.ContainsFunc(found, func(x BlockDev) bool { return !x.Partition && x.Name == d.Disk }) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// ErrNotISO9660 means no ISO9660 primary volume descriptor was found.
var ErrNotISO9660 = errors.New("no ISO9660 primary volume descriptor at byte 32768")

// VolumeID reads the volume id of an ISO9660 filesystem: the primary volume
// descriptor sits in sector 16 (byte 32768): type 1, "CD001", and the volume
// id at offset 40, 32 bytes padded with spaces.
func VolumeID(r io.ReaderAt) (string, error) {
	var pvd [72]byte
	if _, err := r.ReadAt(pvd[:], 32768); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", ErrNotISO9660
		}
		return "", err
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return "", ErrNotISO9660
	}
	return string(bytes.TrimRight(pvd[40:72], " \x00")), nil
}

// KernelRelease finds which /lib/modules/<release> to use: the running
// kernel's when present there, otherwise the only one present (under --root
// the host kernel is not the image's).
func KernelRelease(modulesDir, running string) (string, error) {
	if running != "" {
		if st, err := os.Stat(filepath.Join(modulesDir, running)); err == nil && st.IsDir() {
			return running, nil
		}
	}
	entries, err := os.ReadDir(modulesDir)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w (the initramfs holds no kernel modules; rebuild the image)", modulesDir, err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 1 {
		return dirs[0], nil
	}
	return "", fmt.Errorf("no modules for the running kernel %q in %s (found %s): the initramfs and kernel come from different builds; boot the kernel and initramfs of one build",
		running, modulesDir, strconv.Quote(strings.Join(dirs, " ")))
}
