package inventory

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/etoile-os/etoile/agent/inventory/pciids"
	"github.com/etoile-os/etoile/agent/netkind"
)

var pciAddrRe = lazyRegexp(`^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// usbPortRe is a USB device's folder in sysfs (1-3, 2-1.4), usbIfaceRe one of its
// interfaces (1-3:2.0), usbBusRe a root hub (usb1).
var (
	usbPortRe  = lazyRegexp(`^[0-9]+-[0-9]+(\.[0-9]+)*$`)
	usbIfaceRe = lazyRegexp(`^[0-9]+-[0-9]+(\.[0-9]+)*:[0-9]+\.[0-9]+$`)
	usbBusRe   = lazyRegexp(`^usb[0-9]+$`)
)

// pciAddressOf returns the PCI address nearest to the device at the end of a sysfs device
// path (a virtio NIC sits below its PCI function: …/0000:00:03.0/virtio2/net/eth0); "" for
// a device on USB, whose nearest PCI function is the USB host controller, not the device.
func pciAddressOf(devPath string) string {
	parts := strings.Split(devPath, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if usbBusRe().MatchString(parts[i]) || usbPortRe().MatchString(parts[i]) || usbIfaceRe().MatchString(parts[i]) {
			return ""
		}
		if pciAddrRe().MatchString(parts[i]) {
			return parts[i]
		}
	}
	return ""
}

// usbPortOf returns the path of the USB device (1-3, 2-1.4) a sysfs device path leads
// through, nearest to its end, and that folder's path; "" when it is not on USB.
func usbPortOf(devPath string) (port, dir string) {
	parts := strings.Split(devPath, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if usbPortRe().MatchString(parts[i]) {
			return parts[i], strings.Join(parts[:i+1], "/")
		}
		if pciAddrRe().MatchString(parts[i]) {
			return "", ""
		}
	}
	return "", ""
}

// ARPHRD link types (include/uapi/linux/if_arp.h) by their sysfs "type" number.
var linkTypes = map[int64]string{1: "ethernet", 24: "ieee1394", 32: "infiniband", 280: "can", 519: "rawip", 65534: "none"}

func (c *collector) nics() error {
	names, err := c.r.list("/sys/class/net")
	if err != nil {
		return fmt.Errorf("list /sys/class/net: %w", err)
	}
	if names == nil && !c.r.live {
		// Not an empty list without a word: it would read as a machine without NICs
		// (the H100 host's capture has none, while its PCI list has an Ethernet controller).
		c.warn("nics: not captured: the copied tree has no sys/class/net, so no NIC is listed (the PCI devices may show some); copy /sys/class/net with its links to have them")
	}
	for _, name := range names {
		sys := "/sys/class/net/" + name
		devPath := c.r.linkTarget(sys)
		// Hardware NICs have a device; lo, bridges, veths, bonds and tunnels live under
		// /devices/virtual and have none.
		if name == "lo" || strings.Contains(devPath, "/devices/virtual/") || !c.r.exists(sys+"/device") {
			continue
		}
		// An operator's for pods: SR-IOV virtual functions and switchdev
		// representors (the host side of a pod's VF) are not the machine's NICs.
		if c.r.exists(sys+"/"+netkind.VFMarker) || netkind.Representor([]byte(c.r.attr(sys+"/phys_port_name"))) {
			continue
		}
		// An IPoIB P_Key child (ib0.8001, or any name `ip link add … type ipoib` gave
		// it) sits under its HCA's PCI function like the port's own interface: the
		// kernel gives it, and it only, a parent attribute.
		if ipoibChild(c.r, sys) {
			continue
		}
		n := NIC{
			Name:       name,
			Driver:     c.r.linkBase(sys + "/device/driver"),
			Carrier:    c.r.attr(sys+"/carrier") == "1",
			OperState:  c.r.attr(sys + "/operstate"),
			PCIAddress: pciAddressOf(devPath),
		}
		if port, _ := usbPortOf(devPath); port != "" {
			n.Bus, n.USBPath = "usb", port
		}
		// A bond's member carries the bond's address while enslaved; its own is kept as
		// perm_hwaddr.
		addr := firstNonEmpty(c.r.attr(sys+"/bonding_slave/perm_hwaddr"), c.r.attr(sys+"/address"))
		t, known := c.r.attrInt(sys + "/type")
		switch {
		case known:
			n.LinkType = linkTypes[t]
			if n.LinkType == "" {
				n.LinkType = "type " + strconv.FormatInt(t, 10)
			}
		case strings.Count(addr, ":") == 19:
			n.LinkType = "infiniband" // a copied tree without type: IPoIB's 20-byte address tells
		}
		// Only an Ethernet address is a MAC (what a machine config's MAC match takes); an
		// IPoIB address is 20 bytes, and others have their own forms.
		if (n.LinkType == "ethernet" || n.LinkType == "") && isMAC48(addr) {
			n.MAC = addr
		} else {
			n.HWAddress = addr
		}
		// speed is -1 or unreadable (EINVAL) while the link is down and on virtual NICs.
		if s, ok := c.r.attrInt(sys + "/speed"); ok && s > 0 && s < 1<<31 {
			n.SpeedMbps = int(s)
		}
		c.inv.NICs = append(c.inv.NICs, n)
	}
	return nil
}

// ipoibChild reports whether the interface at sys (/sys/class/net/NAME) is an IPoIB P_Key
// child: a partition of its parent's port, not a NIC of its own (drivers/infiniband/ulp/
// ipoib/ipoib_vlan.c makes the parent attribute, ipoib_main.c none for a port's interface).
func ipoibChild(r root, sys string) bool {
	return r.exists(sys + "/parent")
}

// isMAC48 reports whether s is a 6-byte address written as sysfs does (aa:bb:cc:dd:ee:ff).
func isMAC48(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i%3 == 2 {
			if s[i] != ':' {
				return false
			}
		} else if !strings.ContainsRune("0123456789abcdefABCDEF", rune(s[i])) {
			return false
		}
	}
	return true
}

func (c *collector) pci() error {
	addrs, err := c.r.list("/sys/bus/pci/devices")
	if err != nil {
		return fmt.Errorf("list /sys/bus/pci/devices: %w", err)
	}
	// An id is ok only when its file holds one; an unknown id is "" (shown as unknown,
	// never as 0000, which is an id), and is looked up in no database.
	type pciIDValue struct {
		v  uint64
		ok bool
	}
	type ids struct{ class, vendor, device, subVendor, subDevice pciIDValue }
	var raw []ids
	vendors := map[uint16]bool{}
	for _, addr := range addrs {
		sys := "/sys/bus/pci/devices/" + addr
		var d ids
		d.class.v, d.class.ok = c.pciID(sys+"/class", 24)
		d.vendor.v, d.vendor.ok = c.pciID(sys+"/vendor", 16)
		d.device.v, d.device.ok = c.pciID(sys+"/device", 16)
		d.subVendor.v, d.subVendor.ok = c.pciID(sys+"/subsystem_vendor", 16)
		d.subDevice.v, d.subDevice.ok = c.pciID(sys+"/subsystem_device", 16)
		raw = append(raw, d)
		if d.vendor.ok {
			vendors[uint16(d.vendor.v)] = true
		}
	}
	hex := func(i pciIDValue, digits int) string {
		if !i.ok {
			return ""
		}
		return fmt.Sprintf("%0*x", digits, i.v)
	}
	if len(addrs) == 0 {
		return nil
	}
	// Parse the database only for the vendors present: a few hundred kB instead of megabytes
	// held while the agent runs.
	db, err := c.pciDB(func(v uint16) bool { return vendors[v] })
	if err != nil {
		c.warn("pci names: %v", err)
		db = nil
	}
	for i, addr := range addrs {
		sys := "/sys/bus/pci/devices/" + addr
		id := raw[i]
		d := PCIDevice{
			Address:           addr,
			Class:             hex(id.class, 6),
			VendorID:          hex(id.vendor, 4),
			DeviceID:          hex(id.device, 4),
			SubsystemVendorID: hex(id.subVendor, 4),
			SubsystemDeviceID: hex(id.subDevice, 4),
			Revision:          strings.TrimPrefix(c.r.attr(sys+"/revision"), "0x"),
			Driver:            c.r.linkBase(sys + "/driver"),
			NUMANode:          -1,
			Link:              c.pciLink(sys),
			PhysicalFunction:  c.r.linkBase(sys + "/physfn"),
		}
		if n, ok := c.r.attrInt(sys + "/numa_node"); ok {
			d.NUMANode = int(n)
		}
		if db != nil {
			if id.class.ok {
				d.ClassName, _ = db.Class(uint32(id.class.v))
			}
			if id.vendor.ok {
				d.VendorName, _ = db.Vendor(uint16(id.vendor.v))
				if id.device.ok {
					d.DeviceName, _ = db.Device(uint16(id.vendor.v), uint16(id.device.v))
					if id.subVendor.ok && id.subDevice.ok {
						d.SubsystemName, _ = db.Subsystem(uint16(id.vendor.v), uint16(id.device.v), uint16(id.subVendor.v), uint16(id.subDevice.v))
					}
				}
			}
		}
		c.inv.PCIDevices = append(c.inv.PCIDevices, d)
	}
	return nil
}

// pciID reads a PCI id attribute ("0x10de"; a class "0x030200") of bits bits; ok is false
// when the file is missing or refused (the root says why), and when it holds no such id: a
// damaged copy, said in a warning, as a 300 MB file of 7s once made device ffffffffffffffff.
func (c *collector) pciID(p string, bits int) (uint64, bool) {
	s := c.r.attr(p)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, bits)
	if err != nil {
		c.warn("pci: %s holds %q, not a %d-bit PCI id: the id is shown as unknown (a damaged copy? copy the file again)", c.r.path(p), trimOutput([]byte(s)), bits)
		return 0, false
	}
	return v, true
}

func (c *collector) pciLink(sys string) *PCILink {
	cur := c.r.attr(sys + "/current_link_speed")
	max := c.r.attr(sys + "/max_link_speed")
	if cur == "" && max == "" {
		return nil // not PCI Express, or a host bridge
	}
	l := &PCILink{CurrentSpeed: cur, MaxSpeed: max, CurrentGen: PCIeGen(cur), MaxGen: PCIeGen(max)}
	if w, ok := c.r.attrInt(sys + "/current_link_width"); ok && w > 0 && w <= 32 {
		l.CurrentWidth = int(w)
	}
	if w, ok := c.r.attrInt(sys + "/max_link_width"); ok && w > 0 && w <= 32 {
		l.MaxWidth = int(w)
	}
	return l
}

// PCIeGen returns the PCI Express generation of a sysfs link speed ("32.0 GT/s PCIe",
// older kernels "8 GT/s"); 0 when unknown.
func PCIeGen(speed string) int {
	f := strings.Fields(speed)
	if len(f) < 2 || f[1] != "GT/s" {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	for gen, gt := range []float64{2.5, 5, 8, 16, 32, 64, 128} {
		if v == gt {
			return gen + 1
		}
	}
	return 0
}

// SystemPCIIDs are where a system keeps its pci.ids (Debian's pci.ids package; hwdata's).
var SystemPCIIDs = []string{"/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"}

// pciDB is the newest pci.ids at hand: the system's (an image extension's, the live host's)
// when it is newer than the one compiled in, which names devices newer than its date only by
// number (in 2023's, an H200 is device [2335] in the PCI list and GPU model 10de:2335).
// Inventory.PCIIDs says which was read.
func (c *collector) pciDB(keep func(uint16) bool) (*pciids.DB, error) {
	best, bestVersion := "", pciids.EmbeddedVersion()
	var bestData []byte
	for _, p := range SystemPCIIDs {
		data, err := c.r.readFile(p)
		if err != nil {
			continue
		}
		if v := pciids.Version(data); v > bestVersion {
			best, bestVersion, bestData = p, v, data
		}
	}
	if best == "" {
		c.inv.PCIIDs = "embedded " + bestVersion
		return pciids.Embedded(keep)
	}
	c.inv.PCIIDs = best + " " + bestVersion
	return pciids.Parse(bytes.NewReader(bestData), keep)
}
