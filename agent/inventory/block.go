package inventory

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf16"

	"github.com/etoile-os/etoile/agent/cmdline"
	"github.com/etoile-os/etoile/internal/devread"
	"github.com/etoile-os/etoile/schema"
)

// bootVolumeLabel is the ISO's volume label (issue 2): the medium a live boot came from.
const bootVolumeLabel = "ETOILE"

func (c *collector) disks() error {
	names, err := c.r.list("/sys/class/block")
	if err != nil {
		return fmt.Errorf("list /sys/class/block: %w", err)
	}
	if names == nil && !c.r.live {
		return c.disksFromLsblk()
	}
	byLabel := c.labelsByDevice()
	for _, name := range names {
		d, ok := c.disk(name, byLabel)
		if ok {
			c.inv.Disks = append(c.inv.Disks, d)
		}
	}
	c.inv.Disks = mergePaths(c.inv.Disks)
	c.markBoot()
	return nil
}

// mergePaths lists a disk reached through several paths once: disks with
// the same WWN, serial and size are one LUN (SCSI multipath with no
// multipathd, or a dual-port SAS disk), the first by name kept with the
// others' devices in Paths. NVMe's own multipath lists its namespace once
// already.
func mergePaths(disks []Disk) []Disk {
	type key struct {
		wwn, serial string
		size        uint64
	}
	first := map[key]int{}
	out := disks[:0]
	for _, d := range disks {
		k := key{d.WWN, d.Serial, d.SizeBytes}
		if d.WWN == "" || d.Serial == "" {
			out = append(out, d)
			continue
		}
		if i, ok := first[k]; ok {
			out[i].Paths = append(out[i].Paths, d.Path)
			continue
		}
		first[k] = len(out)
		out = append(out, d)
	}
	return out
}

// isPath reports whether dev (sdb, sdb1) is one of d's other paths or one
// of their partitions.
func (d *Disk) isPath(dev string) bool {
	for _, p := range d.Paths {
		base := strings.TrimPrefix(p, "/dev/")
		rest, ok := strings.CutPrefix(dev, base)
		if ok && strings.Trim(strings.TrimPrefix(rest, "p"), "0123456789") == "" {
			return true
		}
	}
	return false
}

func (c *collector) disk(name string, byLabel map[string]string) (Disk, bool) {
	sys := "/sys/class/block/" + name
	st, err := c.r.stat(sys)
	if err != nil {
		// A link that cannot be followed (a loop, a target the copy left out or outside
		// it) has no attribute to read: listed, it would be a disk of 0 bytes that is not
		// there. A live machine's entry vanishes so when its device is unplugged meanwhile.
		if !isVirtualBlockName(name) && !(c.r.live && errors.Is(err, fs.ErrNotExist)) {
			c.warn("disks: %s cannot be followed (%v): skipped; copy /sys/class/block again with the devices its links lead to", c.r.path(sys), unwrapPathError(err))
		}
		return Disk{}, false
	}
	if !st.IsDir() {
		c.warn("disks: %s is %s, not a device's folder or a link to one: skipped; copy /sys/class/block again", c.r.path(sys), schema.DescribeMode(st.Mode()))
		return Disk{}, false
	}
	if c.r.exists(sys + "/partition") {
		return Disk{}, false
	}
	devPath := c.r.linkTarget(sys)
	// Virtual block devices are left out, but for an NVMe namespace under
	// native multipath: its disk sits under the (virtual) NVMe subsystem,
	// and its paths (nvme1c1n1) are hidden; and NVMe over fabrics' namespaces,
	// whose controllers are virtual devices (listed as remote).
	if devPath != "" && strings.Contains(devPath, "/devices/virtual/") &&
		!strings.Contains(devPath, "/devices/virtual/nvme-subsystem/") && !strings.Contains(devPath, "/devices/virtual/nvme-fabrics/") {
		return Disk{}, false
	}
	if devPath == "" && isVirtualBlockName(name) {
		return Disk{}, false // a copied tree without links: go by the kernel's names
	}
	if c.r.attr(sys+"/hidden") == "1" || nvmePathRe().MatchString(name) {
		return Disk{}, false // an NVMe multipath path; its namespace head is listed
	}
	if mmcHardwarePartRe().MatchString(name) {
		return Disk{}, false // eMMC boot and RPMB areas: firmware's, not a disk to install on
	}
	d := Disk{
		Name:       name,
		Path:       "/dev/" + strings.ReplaceAll(name, "!", "/"),
		SizeBytes:  sectors(c.r, sys+"/size"),
		Model:      c.diskModel(sys, name),
		Serial:     c.diskSerial(sys),
		WWN:        diskWWN(c.r.attr(sys+"/wwid"), c.r.attr(sys+"/device/wwid")),
		Firmware:   c.r.attr(sys + "/device/firmware_rev"), // NVMe's
		Rotational: c.r.attr(sys+"/queue/rotational") == "1",
		Transport:  Transport(devPath),
		Removable:  c.r.attr(sys+"/removable") == "1",
		ReadOnly:   c.r.attr(sys+"/ro") == "1",
		Partitions: []Partition{},
	}
	if hostRe().MatchString(devPath) { // a SCSI disk's INQUIRY data
		if v := c.r.attr(sys + "/device/vendor"); v != "ATA" {
			d.Vendor = v // libata names every SATA disk's vendor "ATA"
		}
		d.Firmware = c.r.attr(sys + "/device/rev")
	}
	if strings.HasPrefix(d.Transport, "nvme") {
		d.Transport = c.nvmeTransport(devPath, d.Transport)
	}
	if d.Transport == "scsi" && c.onFCHost(devPath) {
		d.Transport = "fc" // a LUN of a Fibre Channel (or FCoE) HBA whose path has no rport
	}
	d.Remote = IsRemoteTransport(d.Transport)
	if id, sat := c.ataIdentify(sys, devPath); id != nil {
		if sat && (d.Transport == "sas" || d.Transport == "scsi") {
			// A SATA disk behind a SAS HBA (or a RAID HBA's pass-through): the HBA
			// translates SCSI to ATA for it, and its ATA Information VPD page says it is one.
			d.Transport = "sata"
		}
		// The SCSI layer's model of a SATA disk is the 16 characters of its emulated
		// INQUIRY data ("Samsung SSD 870" of "Samsung SSD 870 EVO 1TB"); the disk's own
		// IDENTIFY data has all 40.
		if m := id.Model(); m != "" {
			d.Model = m
		}
		d.Serial = firstNonEmpty(d.Serial, id.Serial())
		if f := id.Firmware(); f != "" {
			d.Firmware = f
		}
	}
	if d.Serial == "" && d.Transport == "usb" {
		// usb-storage has no serial VPD page; the USB device's serial is the disk's, as
		// udev's ID_SERIAL_SHORT has it.
		if _, dir := usbPortOf(devPath); dir != "" {
			d.Serial = printable(c.r.attr(dir + "/serial"))
		}
	}
	// An empty card reader or optical drive, a BMC's virtual media without an image.
	d.NoMedium = d.SizeBytes == 0 && d.Removable
	if d.FSLabel = byLabel[name]; d.FSLabel == "" && !d.NoMedium {
		d.FSLabel = c.probeLabel(d.Path)
	}
	children, _ := c.r.list(sys)
	for _, child := range children {
		psys := sys + "/" + child
		if !c.r.exists(psys + "/partition") {
			continue
		}
		n, _ := c.r.attrInt(psys + "/partition")
		uevent := parseUevent(c.r.attr(psys + "/uevent"))
		p := Partition{
			Name:      child,
			Path:      "/dev/" + strings.ReplaceAll(child, "!", "/"),
			Number:    int(n),
			SizeBytes: sectors(c.r, psys+"/size"),
			PartLabel: uevent["PARTNAME"],
			FSLabel:   byLabel[child],
		}
		if start, ok := sectorsOK(c.r, psys+"/start"); ok {
			p.StartBytes = &start
		}
		if p.FSLabel == "" {
			p.FSLabel = c.probeLabel(p.Path)
		}
		d.Partitions = append(d.Partitions, p)
	}
	sort.Slice(d.Partitions, func(i, j int) bool { return d.Partitions[i].Number < d.Partitions[j].Number })
	return d, true
}

// isVirtualBlockName tells the kernel's virtual block devices by name, for copied trees in
// which /sys/class/block's links became folders.
func isVirtualBlockName(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "md", "nbd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// sectors reads a size in 512-byte sectors, which sysfs uses whatever the device's own
// sector size.
func sectors(r root, p string) uint64 {
	b, _ := sectorsOK(r, p)
	return b
}

// sectorsOK is sectors, and whether the file held a size.
func sectorsOK(r root, p string) (uint64, bool) {
	n, ok := r.attrInt(p)
	if !ok || n < 0 || n > 1<<54 {
		return 0, false
	}
	return uint64(n) * 512, true
}

// unwrapPathError leaves out a *fs.PathError's operation and path, which the warning names.
func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// ataIdentify returns the ATA IDENTIFY DEVICE data of a SATA disk: libata's
// (/sys/class/ata_device/devN.M/id, found through the ataN in the disk's path and its
// SCSI address), or, for a SATA disk behind a SAS HBA's translation layer, the ATA
// Information VPD page (0x89) that carries it (sat); nil when there is neither.
func (c *collector) ataIdentify(sys, devPath string) (id ATAIdentify, sat bool) {
	if m := ataPortRe().FindStringSubmatch(devPath); m != nil {
		port := m[1]
		// The SCSI address H:C:I:L: libata puts the device number in I, or, behind a
		// port multiplier, the multiplier's port in C.
		if a := scsiAddrRe().FindStringSubmatch(devPath); a != nil {
			candidates := []string{"dev" + port + "." + a[1] + ".0", "dev" + port + "." + a[2]}
			for _, dev := range candidates {
				if b, err := c.r.readFile("/sys/class/ata_device/" + dev + "/id"); err == nil {
					if id := ParseATAIdentify(b); id != nil {
						return id, false
					}
				}
			}
		}
	}
	if c.r.attr(sys+"/device/vendor") == "ATA" {
		if b, err := c.r.readFile(sys + "/device/vpd_pg89"); err == nil {
			if id := ParseATAInformationVPD(b); id != nil {
				return id, true
			}
		}
	}
	return nil, false
}

var (
	ataPortRe  = lazyRegexp(`/ata([0-9]+)/`)
	scsiAddrRe = lazyRegexp(`/[0-9]+:([0-9]+):([0-9]+):[0-9]+/block/`)
)

// ATAIdentify is the 256 words of an ATA IDENTIFY DEVICE answer.
type ATAIdentify []uint16

// ParseATAIdentify reads libata's id file: the 256 words in hex, 8 a line; nil when it is
// not that (a port multiplier's is empty).
func ParseATAIdentify(b []byte) ATAIdentify {
	f := strings.Fields(string(b))
	if len(f) != 256 {
		return nil
	}
	id := make(ATAIdentify, 256)
	for i, w := range f {
		v, err := strconv.ParseUint(w, 16, 16)
		if err != nil {
			return nil
		}
		id[i] = uint16(v)
	}
	return id
}

// ParseATAInformationVPD reads the IDENTIFY data of a SCSI ATA Information VPD page
// (0x89, SAT): 512 bytes at offset 60, the words little-endian.
func ParseATAInformationVPD(b []byte) ATAIdentify {
	const off = 60
	if len(b) < off+512 || b[1] != 0x89 {
		return nil
	}
	id := make(ATAIdentify, 256)
	for i := range id {
		id[i] = binary.LittleEndian.Uint16(b[off+2*i:])
	}
	return id
}

// str is the ATA string in words [from, to): each word holds two characters, the first
// in its high byte.
func (id ATAIdentify) str(from, to int) string {
	if len(id) < to {
		return ""
	}
	b := make([]byte, 0, 2*(to-from))
	for _, w := range id[from:to] {
		b = append(b, byte(w>>8), byte(w))
	}
	return printable(string(b))
}

// Model is the disk's model (words 27–46: 40 characters).
func (id ATAIdentify) Model() string { return id.str(27, 47) }

// Serial is the disk's serial number (words 10–19).
func (id ATAIdentify) Serial() string { return id.str(10, 20) }

// Firmware is the disk's firmware revision (words 23–26).
func (id ATAIdentify) Firmware() string { return id.str(23, 27) }

// diskModel reads the model where each kind of disk puts it: SCSI and NVMe disks' (and an
// NVMe subsystem's) model; an MMC card (eMMC, SD) has none, and its product name (CID's PNM,
// "DG4032", "SD64G") is its model, as udev's ID_NAME has it.
func (c *collector) diskModel(sys, name string) string {
	if m := firstNonEmpty(c.r.attr(sys+"/device/model"), c.r.attr(sys+"/model")); m != "" {
		return m
	}
	if mmcDiskRe().MatchString(name) {
		return printable(c.r.attr(sys + "/device/name"))
	}
	return ""
}

// diskSerial reads the serial where each kind of disk puts it: virtio-blk and NVMe as text,
// an MMC card's (device/serial) as the kernel writes it, in hex ("0x5b4e3c21"), SCSI and SATA (through libata's SCSI layer) only in the unit serial number VPD page.
func (c *collector) diskSerial(sys string) string {
	if s := firstNonEmpty(c.r.attr(sys+"/serial"), c.r.attr(sys+"/device/serial")); s != "" {
		return s
	}
	b, err := c.r.readFile(sys + "/device/vpd_pg80")
	if err != nil {
		return ""
	}
	return ParseVPDSerial(b)
}

// ParseVPDSerial reads a SCSI Unit Serial Number VPD page (0x80): a 4-byte header whose last
// two bytes are the length, then the serial in ASCII, padded with spaces.
func ParseVPDSerial(b []byte) string {
	if len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > len(b)-4 {
		n = len(b) - 4
	}
	return printable(string(b[4 : 4+n]))
}

// printable keeps printable ASCII and trims spaces: device strings come from firmware.
func printable(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if r >= 0x20 && r < 0x7f {
			sb.WriteRune(r)
		}
	}
	return strings.TrimSpace(sb.String())
}

// diskWWN is a disk's WWN as lsblk's WWN column shows it (udev's ID_WWN), in the kernel's
// spelling, from an NVMe namespace's wwid or a SCSI device's (device/wwid):
//   - an NVMe namespace: its wwid as the kernel writes it, which udev copies into ID_WWN:
//     "eui." (EUI-64 or NGUID), "uuid.", or, for a namespace with none of these,
//     "nvme.<vid>-<serial>-<model>-<nsid>" (no WWN proper, but the namespace's id everywhere
//     else: /dev/disk/by-id/nvme-…, dm-multipath);
//   - a SCSI or SATA disk: its wwid (the best designator of its VPD page 0x83) only when that
//     is a NAA or EUI-64 name ("naa.…", "eui.…"), as udev's scsi_id and ata_id take only NAA
//     names (written "0x5000c500…" where the kernel writes "naa.5000c500…"). A "t10." id
//     (vendor, model and serial strings: a USB stick's, a SATA disk's without a WWN) or a
//     SCSI name string ("iqn.…") is no WWN, and is left out.
func diskWWN(nvmeWWID, scsiWWID string) string {
	if nvmeWWID != "" {
		return nvmeWWID
	}
	if strings.HasPrefix(scsiWWID, "naa.") || strings.HasPrefix(scsiWWID, "eui.") {
		return scsiWWID
	}
	return ""
}

// lsblkWWN reads lsblk's WWN column (udev's ID_WWN_WITH_EXTENSION or ID_WWN) into diskWWN's
// spelling: the NAA names of SCSI and SATA disks written "0x5000c500a1b2c3d4" become
// "naa.5000c500a1b2c3d4"; an NVMe namespace's (name nvme…) is its wwid already.
func lsblkWWN(name, id string) string {
	if h, ok := strings.CutPrefix(id, "0x"); ok && (len(h) == 16 || len(h) == 32) && isHex(h) {
		id = "naa." + strings.ToLower(h)
	}
	if strings.HasPrefix(name, "nvme") {
		return diskWWN(id, "")
	}
	return diskWWN("", id)
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return s != ""
}

// onFCHost reports whether the SCSI host of a disk's device path (its last …/hostN/) is a
// Fibre Channel HBA's (or FCoE's): /sys/class/fc_host/hostN.
func (c *collector) onFCHost(devPath string) bool {
	m := scsiHostRe().FindAllStringSubmatch(devPath, -1)
	return len(m) > 0 && c.r.exists("/sys/class/fc_host/"+m[len(m)-1][1])
}

var (
	hostRe     = lazyRegexp(`/host[0-9]+/`)
	scsiHostRe = lazyRegexp(`/(host[0-9]+)/`)
	fcRportRe  = lazyRegexp(`/rport-[0-9]+:[0-9]+-[0-9]+/`)
	ataRe      = lazyRegexp(`/ata[0-9]+/`)
	iscsiRe    = lazyRegexp(`/session[0-9]+/`)
	// sasEndDeviceRe is a SAS end device (…/host0/port-0:1/end_device-0:1/target0:0:1/…,
	// behind an expander …/expander-0:0/port-0:0:4/end_device-0:0:4/…): the class
	// sas_device's devices.
	sasEndDeviceRe = lazyRegexp(`/end_device-[0-9]+:[0-9:]+/`)
	nvmePathRe     = lazyRegexp(`^nvme[0-9]+c[0-9]+n[0-9]+$`)

	mmcHardwarePartRe = lazyRegexp(`^mmcblk[0-9]+(boot[0-9]+|rpmb)$`)
	mmcDiskRe         = lazyRegexp(`^mmcblk[0-9]+$`)
)

// Transport tells how a block device is attached from its path in the sysfs device tree
// (what /sys/class/block/NAME links to): "nvme", "usb", "sata" (libata's), "sas" (a SAS end
// device's: a SATA disk behind a SAS HBA is made "sata" by its ATA VPD page, see disk),
// "mmc", "virtio", "scsi" (another SCSI host: virtio-scsi, a RAID volume, parallel SCSI),
// the network volumes "rbd", "iscsi", "fc" (a Fibre Channel LUN: a SCSI target under a remote
// port, …/host3/rport-3:0-0/target3:0:0/…) and "nvme-of" (NVMe over fabrics, its fabric not
// told by the path), or "" when unknown.
func Transport(devPath string) string {
	switch {
	case devPath == "":
		return ""
	case strings.HasPrefix(devPath, "/sys/devices/rbd/"):
		return "rbd" // Ceph RBD, a CSI driver's volume
	case strings.Contains(devPath, "/devices/virtual/nvme-fabrics/"):
		return "nvme-of"
	case strings.Contains(devPath, "/nvme"):
		return "nvme"
	case iscsiRe().MatchString(devPath) && hostRe().MatchString(devPath):
		return "iscsi" // a SCSI host of an iSCSI session: …/host7/session1/target7:0:0/…
	case fcRportRe().MatchString(devPath) && hostRe().MatchString(devPath):
		return "fc" // lsblk's TRAN too
	case strings.Contains(devPath, "/usb"):
		return "usb" // usb-storage and UAS sit on SCSI hosts too: check USB first
	case ataRe().MatchString(devPath):
		return "sata"
	case sasEndDeviceRe().MatchString(devPath):
		return "sas" // a SAS end device's target; a SATA one behind it is told by its VPD (disk)
	case strings.Contains(devPath, "/mmc"):
		return "mmc"
	case strings.Contains(devPath, "/virtio") && !hostRe().MatchString(devPath):
		return "virtio" // virtio-blk; virtio-scsi has a SCSI host below it
	case hostRe().MatchString(devPath):
		return "scsi"
	}
	return ""
}

// IsRemoteTransport reports whether a disk's transport is a network's: the disk is another
// machine's storage (a Ceph volume, a SAN's LUN over iSCSI, Fibre Channel or NVMe over
// fabrics), never one to install on. A machine that boots from a SAN LUN lists it too, remote.
func IsRemoteTransport(t string) bool {
	return t == "rbd" || t == "iscsi" || t == "fc" || strings.HasPrefix(t, "nvme-")
}

// nvmeTransport tells an NVMe namespace's fabric from its controllers' transport file
// ("pcie", "tcp", "rdma", "fc", "loop"): a namespace under native multipath sits under its
// subsystem, whatever the fabric, and only its controllers say. A namespace whose
// controllers are PCIe, or do not say, keeps the transport of its path.
func (c *collector) nvmeTransport(devPath, t string) string {
	if devPath == "" {
		return t
	}
	// The controller is the namespace's parent (…/nvme/nvme0/nvme0n1,
	// …/nvme-fabrics/ctl/nvme5/nvme5n1); a multipath head's parent is its
	// subsystem, which links its controllers (nvme-subsys3/nvme3).
	dir := path.Dir(devPath)
	ctrls := []string{dir}
	if strings.Contains(devPath, "/nvme-subsystem/") {
		names, _ := c.r.list(dir)
		for _, n := range names {
			if nvmeCtrlRe().MatchString(n) {
				ctrls = append(ctrls, dir+"/"+n)
			}
		}
	}
	for _, ctrl := range ctrls {
		switch tr := c.r.attr(ctrl + "/transport"); tr {
		case "", "pcie":
		default:
			return "nvme-" + tr
		}
	}
	return t
}

var nvmeCtrlRe = lazyRegexp(`^nvme[0-9]+$`)

func parseUevent(s string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok {
			m[k] = v
		}
	}
	return m
}

// labelsByDevice maps device names to filesystem labels through udev's /dev/disk/by-label,
// when udev runs (not in Étoile's initramfs, where probeLabel reads them instead).
func (c *collector) labelsByDevice() map[string]string {
	m := map[string]string{}
	names, _ := c.r.list("/dev/disk/by-label")
	for _, n := range names {
		if dev := c.r.linkBase("/dev/disk/by-label/" + n); dev != "" {
			m[dev] = unescapeUdev(n)
		}
	}
	return m
}

// unescapeUdev decodes udev's \xNN escapes in link names ("My\x20Disk").
func unescapeUdev(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// probeLabel reads a filesystem label from the device node on a live machine (as root);
// "" otherwise. Only the first 64 KiB are read.
func (c *collector) probeLabel(devPath string) string {
	if !c.r.live || c.probeHung {
		return ""
	}
	_, label, hung, err := probeWithin(devPath)
	if err != nil {
		c.warn("reading the label of %s: %v", devPath, err)
	}
	if hung {
		// The inventory (and the GPU labels K3s waits for) goes on
		// without the labels of the devices after it.
		c.probeHung = true
		c.warn("reading the first bytes of %s did not end within %s: the volume labels of the devices after it are not read (a failing disk? the kernel log says more)", devPath, probeWait)
	}
	return label
}

// probeWait bounds the read of one device's first bytes; readFirstBytes
// is what reads them: tests stand in for a disk that hangs.
var (
	probeWait      = 5 * time.Second
	readFirstBytes = probeDeviceNow
)

// probeReads bounds the reads of devices' first bytes (internal/devread):
// a device whose read is still stuck is skipped at once.
var probeReads devread.Reads

// probeWithin is ProbeDevice that gives up after probeWait (hung): a
// failing disk can hold a read for minutes. A panic while the bytes are
// read or parsed (which anyone who had the disk wrote) is its error: the
// agent is PID 1, and it must cost the label, never the machine.
func probeWithin(devPath string) (fstype, label string, hung bool, err error) {
	probeReads.Set(probeWait, nil)
	var t, l string
	err = probeReads.Do(devPath, "its first bytes", func() error {
		t, l = readFirstBytes(devPath)
		return nil
	})
	if _, stuck := errors.AsType[*devread.HungError](err); stuck {
		return "", "", true, nil
	}
	return t, l, false, err
}

// ProbeDevice reads the first 64 KiB of a block device and tells its
// filesystem and label (FSProbe); "", "" when it cannot be read, or not
// within 5 s (a failing disk).
func ProbeDevice(devPath string) (fstype, label string) {
	fstype, label, _, _ = probeWithin(devPath)
	return fstype, label
}

func probeDeviceNow(devPath string) (fstype, label string) {
	// O_NONBLOCK: opening an empty optical drive must fail at once, not wait for a disc.
	f, err := os.OpenFile(devPath, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	buf := make([]byte, 64*1024)
	n, _ := io.ReadFull(f, buf)
	// A FAT or exFAT volume's root directory, which holds its label, is read from
	// the device too, within this read's wait (probeWithin).
	return fsProbe(buf[:n], f)
}

// FSLabel returns the volume label of the filesystem whose first bytes (64 KiB
// are enough) are b: ISO9660, ext2/3/4 or FAT; "" when there is none.
func FSLabel(b []byte) string {
	_, label := FSProbe(b)
	return label
}

// FSProbe tells the filesystem whose first bytes (64 KiB are enough) are b,
// as mount(2) names it ("iso9660", "ext4", "vfat", "exfat"; "" when none of
// these), and its volume label. A FAT volume's label is its root directory's
// when that lies within b (ProbeDevice reads it wherever it is).
func FSProbe(b []byte) (fstype, label string) {
	return fsProbe(b, bytes.NewReader(b))
}

// fsProbe is FSProbe, reading what lies beyond the first bytes b (a FAT or
// exFAT root directory) from dev, the whole device.
func fsProbe(b []byte, dev io.ReaderAt) (fstype, label string) {
	// ISO9660: the primary volume descriptor at 32 KiB: type 1, "CD001", volume id at 40.
	const pvd = 32 * 1024
	if len(b) >= pvd+72 && b[pvd] == 1 && string(b[pvd+1:pvd+6]) == "CD001" {
		return "iso9660", printable(string(b[pvd+40 : pvd+72]))
	}
	// ext2/3/4: superblock at 1 KiB, magic 0xEF53 at 56, volume name at 120.
	if len(b) >= 1024+136 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53 {
		return "ext4", cString(b[1024+120 : 1024+136])
	}
	// FAT: boot sector signature, then the volume label of the FAT32 or FAT12/16 layout,
	// told apart by the file system type string each carries. The label is the root
	// directory's volume label entry, as blkid's LABEL (and so /dev/disk/by-label and
	// cloud-init's NoCloud): Windows (Explorer, label.exe) writes only that one, and
	// leaves the boot sector's "NO NAME" or the name it had before. The boot sector's is
	// taken only when the root directory could not tell (unreadable, or its first
	// cluster read without the entry nor the directory's end).
	if len(b) >= 512 && b[510] == 0x55 && b[511] == 0xAA {
		if string(b[3:11]) == "EXFAT   " {
			// Not read without mounting (the config volume says so); its label is
			// still told, for the config volume's search to find and name it.
			return "exfat", exfatLabel(b, dev)
		}
		var fat32 bool
		switch {
		case bytes.HasPrefix(b[82:], []byte("FAT32")):
			label, fat32 = string(b[71:82]), true
		case bytes.HasPrefix(b[54:], []byte("FAT")):
			label = string(b[43:54])
		default:
			return "", ""
		}
		if root, ok := fatRootLabel(b, dev, fat32); ok {
			label = root
		}
		if label = printable(label); label == "NO NAME" {
			label = ""
		}
		return "vfat", label
	}
	return "", ""
}

// maxRootRead bounds what is read of a FAT or exFAT root directory for its label: the
// first cluster (or FAT12/16's fixed root directory), 64 KiB at most.
const maxRootRead = 64 * 1024

// readRoot reads size bytes (maxRootRead at most) at off of the volume whose first
// bytes are b: from b when they lie within it, else from dev. A short read gives what
// was read.
func readRoot(b []byte, dev io.ReaderAt, off, size uint64) []byte {
	size = min(size, maxRootRead)
	if off+size <= uint64(len(b)) {
		return b[off : off+size]
	}
	if off > math.MaxInt64-size {
		return nil
	}
	buf := make([]byte, size)
	n, _ := dev.ReadAt(buf, int64(off))
	return buf[:n]
}

// fatRootLabel returns the volume label entry of the root directory of the FAT volume
// whose boot sector is b (fat32: the FAT32 layout): an entry with the volume-label
// attribute (0x08) that is neither a long name's part (0x0F) nor deleted (0xE5), before
// the directory's end (an entry starting with 0). known is false when what was read
// does not tell: the boot sector's values are not a FAT's, the read failed, or the
// first 64 KiB or first cluster read hold neither the entry nor the directory's end.
func fatRootLabel(b []byte, dev io.ReaderAt, fat32 bool) (label string, known bool) {
	le16 := func(i int) uint64 { return uint64(binary.LittleEndian.Uint16(b[i:])) }
	bps, spc, reserved, fats := le16(11), uint64(b[13]), le16(14), uint64(b[16])
	switch {
	case bps != 512 && bps != 1024 && bps != 2048 && bps != 4096,
		spc == 0 || spc&(spc-1) != 0, reserved == 0, fats == 0:
		return "", false // not a BPB these values can be trusted from
	}
	var off, size uint64
	if fat32 {
		fatSize, rootCluster := uint64(binary.LittleEndian.Uint32(b[36:])), uint64(binary.LittleEndian.Uint32(b[44:]))
		if fatSize == 0 || rootCluster < 2 {
			return "", false
		}
		off = (reserved + fats*fatSize + (rootCluster-2)*spc) * bps
		size = spc * bps
	} else {
		fatSize, entries := le16(22), le16(17)
		if fatSize == 0 || entries == 0 {
			return "", false
		}
		off = (reserved + fats*fatSize) * bps
		size = entries * 32
	}
	dir := readRoot(b, dev, off, size)
	for e := dir; len(e) >= 32; e = e[32:] {
		switch attr := e[11]; {
		case e[0] == 0:
			return "", true // the directory's end: no label
		case e[0] == 0xE5, attr&0x3F == 0x0F, attr&0x08 == 0, attr&0x10 != 0:
			continue
		}
		name := bytes.Clone(e[:11])
		if name[0] == 0x05 { // a first byte 0xE5 that is not a deleted entry's
			name[0] = 0xE5
		}
		return string(name), true
	}
	// FAT12/16's root directory, whole, without the entry: no label. A FAT32 root
	// directory goes on in other clusters.
	return "", !fat32 && len(dir) > 0 && uint64(len(dir)) == size
}

// exfatLabel returns the label of the exFAT volume whose boot sector is b: its root
// directory's volume label entry (type 0x83: a count, then up to 11 UTF-16 characters),
// in the root directory's first cluster; "" when there is none.
func exfatLabel(b []byte, dev io.ReaderAt) string {
	if len(b) < 512 {
		return ""
	}
	bpsShift, spcShift := uint64(b[108]), uint64(b[109])
	heap, rootCluster := uint64(binary.LittleEndian.Uint32(b[88:])), uint64(binary.LittleEndian.Uint32(b[96:]))
	if bpsShift < 9 || bpsShift > 12 || bpsShift+spcShift > 25 || rootCluster < 2 {
		return ""
	}
	off := (heap + (rootCluster-2)<<spcShift) << bpsShift
	dir := readRoot(b, dev, off, 1<<(bpsShift+spcShift))
	for e := dir; len(e) >= 32; e = e[32:] {
		switch e[0] {
		case 0x00:
			return ""
		case 0x83:
			n := min(int(e[1]), 11)
			u := make([]uint16, n)
			for i := range u {
				u[i] = binary.LittleEndian.Uint16(e[2+2*i:])
			}
			return printable(string(utf16.Decode(u)))
		}
	}
	return ""
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return printable(string(b))
}

// markBoot marks the boot medium: one disk, or none. The first rule that applies decides, so
// a machine booted from a USB stick is not confused with an older installation on its disk:
//  1. the device the caller names (Options.BootDevice): the agent knows where it found the
//     system image; a name that is no disk or partition here marks none, with a warning
//     (the rules below are not tried: a typo must not mark another disk);
//  2. a netboot (etoile.system= on the kernel command line) came from no disk: the boot took
//     the system image from the network and ignored etoile.slot (agent/cmdline), and a disk
//     that holds Étoile's partitions or its ISO is not what the machine runs from; no disk
//     is marked, and the rules below do not apply;
//  3. the disk holding the partition of the booted slot (kernel argument etoile.slot=a|b, GPT
//     partition label ETOILE-A or ETOILE-B);
//  4. the live medium: volume label ETOILE (the ISO, on CD or written to a stick).
//
// A rule that several disks match (two installed disks, a stick of the ISO beside its CD)
// marks none, and a warning names them: an installer choosing a target leaves the boot
// medium alone, and a guess could give it the disk the machine runs from. The rules after it
// are not tried either (the ISO's label beside two installed slots is no better a guess).
func (c *collector) markBoot() {
	// mark marks the disk that matches, when one does; decided is false when none does
	// (the next rule is tried), true when one or several do (none marked, and said).
	mark := func(match func(d *Disk) bool, reason string) (decided bool) {
		var found []int
		for i := range c.inv.Disks {
			if match(&c.inv.Disks[i]) {
				found = append(found, i)
			}
		}
		switch len(found) {
		case 0:
			return false
		case 1:
			c.inv.Disks[found[0]].Boot = true
			c.inv.Disks[found[0]].BootReason = reason
			return true
		}
		var names []string
		for _, i := range found {
			names = append(names, c.inv.Disks[i].Path)
		}
		c.warn("disks: several disks look like the boot medium (%s: %s): none is marked; name the one booted from (etoile-agent inventory --boot-device DEV), or remove Étoile's partitions or ISO from the others before an install chooses its target", strings.Join(names, ", "), reason)
		return true
	}
	if dev := strings.TrimPrefix(c.opts.BootDevice, "/dev/"); dev != "" {
		if mark(func(d *Disk) bool {
			return d.Name == dev || d.hasPartition(func(p Partition) bool { return p.Name == dev }) || d.isPath(dev)
		},
			"named by the caller ("+dev+")") {
			return
		}
		// A name that is no device here (a typo, a stick pulled out) must not give
		// way to the label rules: they could mark another disk, which an installer
		// choosing its target would then leave alone, or take for the machine's.
		c.warn("disks: the boot device %s is no disk or partition here: no disk is marked as the boot medium; name one the disk list shows (etoile-agent inventory --boot-device sda, or nvme0n1p2), or leave --boot-device out to detect it from labels", c.opts.BootDevice)
		return
	}
	args := cmdline.Parse(c.r.attr("/proc/cmdline"))
	if _, netboot := args.Raw["etoile.system"]; netboot {
		return
	}
	if args.Slot != "" {
		label := "ETOILE-" + strings.ToUpper(args.Slot)
		if mark(func(d *Disk) bool { return d.hasPartition(func(p Partition) bool { return p.PartLabel == label }) },
			"partition "+label+" of the booted slot") {
			return
		}
	}
	mark(func(d *Disk) bool {
		return d.FSLabel == bootVolumeLabel || d.hasPartition(func(p Partition) bool { return p.FSLabel == bootVolumeLabel })
	}, "volume label "+bootVolumeLabel)
}

func (d *Disk) hasPartition(f func(Partition) bool) bool {
	for _, p := range d.Partitions {
		if f(p) {
			return true
		}
	}
	return false
}

// lsblkJSON is the part of `lsblk -J -b` output read from a capture. Older lsblk versions
// write numbers and booleans as strings, hence the flexible types.
type lsblkJSON struct {
	BlockDevices []lsblkDev `json:"blockdevices"`
}

type lsblkDev struct {
	Name      string     `json:"name"`
	Size      flexUint   `json:"size"`
	Model     *string    `json:"model"`
	Serial    *string    `json:"serial"`
	WWN       *string    `json:"wwn"`
	Type      string     `json:"type"`
	Rota      flexBool   `json:"rota"`
	Tran      *string    `json:"tran"`
	RM        flexBool   `json:"rm"`
	RO        flexBool   `json:"ro"`
	Label     *string    `json:"label"`
	PartLabel *string    `json:"partlabel"`
	PartN     flexUint   `json:"partn"` // newer lsblk's PARTN
	Start     *flexUint  `json:"start"` // START, in sectors, when asked for
	Children  []lsblkDev `json:"children"`
}

type flexUint uint64

func (f *flexUint) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" || s == "" {
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not a size: %s", b)
	}
	*f = flexUint(v)
	return nil
}

type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch strings.Trim(string(b), `"`) {
	case "true", "1":
		*f = true
	case "false", "0", "null", "":
		*f = false
	default:
		return fmt.Errorf("not a boolean: %s", b)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

// ParseLsblk reads `lsblk -J -b` output into disks (whole disks and optical drives, as the
// kernel lists them; virtual ones left out). A partition's number is lsblk's PARTN column,
// or its name's (sda2, nvme0n1p2); its start is its START column, when there is one (in
// 512-byte sectors, whatever -b says), and unknown otherwise.
func ParseLsblk(b []byte) ([]Disk, error) {
	var l lsblkJSON
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("lsblk JSON: %w", err)
	}
	disks := []Disk{}
	for _, bd := range l.BlockDevices {
		devPath, ok := devNode(bd.Name)
		if bd.Type != "disk" && bd.Type != "rom" || isVirtualBlockName(bd.Name) || !ok {
			continue
		}
		tran := lsblkTransport(deref(bd.Tran))
		d := Disk{
			Name:       bd.Name,
			Path:       devPath,
			SizeBytes:  uint64(bd.Size),
			Model:      deref(bd.Model),
			Serial:     deref(bd.Serial),
			WWN:        lsblkWWN(bd.Name, deref(bd.WWN)),
			Rotational: bool(bd.Rota),
			Transport:  tran,
			Remote:     IsRemoteTransport(tran),
			NoMedium:   bd.Size == 0 && bool(bd.RM),
			Removable:  bool(bd.RM),
			ReadOnly:   bool(bd.RO),
			FSLabel:    deref(bd.Label),
			Partitions: []Partition{},
		}
		for _, ch := range bd.Children {
			chPath, ok := devNode(ch.Name)
			if ch.Type != "part" || !ok {
				continue
			}
			p := Partition{
				Name: ch.Name, Path: chPath, Number: int(ch.PartN), SizeBytes: uint64(ch.Size),
				PartLabel: deref(ch.PartLabel), FSLabel: deref(ch.Label),
			}
			if p.Number <= 0 {
				p.Number = partitionNumber(bd.Name, ch.Name)
			}
			if ch.Start != nil && *ch.Start <= 1<<54 {
				start := uint64(*ch.Start) * 512
				p.StartBytes = &start
			}
			d.Partitions = append(d.Partitions, p)
		}
		sort.SliceStable(d.Partitions, func(i, j int) bool { return d.Partitions[i].Number < d.Partitions[j].Number })
		disks = append(disks, d)
	}
	return disks, nil
}

// partitionNumber reads a partition's number from its name as the kernel makes it: the
// disk's name, then the number, after a "p" when the disk's name ends in a digit (sda2,
// nvme0n1p2, mmcblk0p1); the name's last digits otherwise; 0 when it has none.
func partitionNumber(disk, part string) int {
	rest, ok := strings.CutPrefix(part, disk)
	if ok && rest != "" && disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		rest, ok = strings.CutPrefix(rest, "p")
	}
	if !ok {
		rest = part[len(strings.TrimRight(part, "0123456789")):]
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n <= 0 || n > 1<<20 {
		return 0
	}
	return n
}

// lsblkTransport maps lsblk's TRAN column to the words Transport gives for the same disk:
// lsblk's "ata" (libata without SATA: PATA) is "sata", as every libata device's sysfs path
// reads; its "spi" (parallel SCSI) and "sbp" (FireWire) are "scsi"; "fcoe" is "fc". Other
// words (sata, sas, usb, nvme, virtio, mmc, iscsi, fc) are the same. lsblk says "sas" of a
// SATA disk behind a SAS HBA, which its sysfs path calls "sata" (its ATA VPD page is not in
// the capture); an unknown word is kept.
func lsblkTransport(t string) string {
	t = strings.ToLower(t)
	switch t {
	case "ata":
		return "sata"
	case "spi", "sbp":
		return "scsi"
	case "fcoe":
		return "fc"
	}
	return t
}

// devNode returns /dev/NAME for a device name read from a capture; false when the name
// would lead out of /dev.
func devNode(name string) (string, bool) {
	p := path.Join("/dev", name)
	return p, strings.HasPrefix(p, "/dev/")
}

func (c *collector) disksFromLsblk() error {
	b, err := c.r.readFile("/lsblk.json")
	if errors.Is(err, fs.ErrNotExist) {
		// Not an empty list without a word: it would read as a machine without disks.
		c.warn("disks: not captured: the copied tree has neither sys/class/block nor lsblk.json, so no disk is listed; copy /sys/class/block with its links, or save `lsblk -J -b` as lsblk.json")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read capture lsblk.json: %w", err)
	}
	disks, err := ParseLsblk(b)
	if err != nil {
		return fmt.Errorf("capture lsblk.json: %w", err)
	}
	c.inv.Disks = disks
	c.markBoot()
	return nil
}
