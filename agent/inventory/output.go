package inventory

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the inventory as indented JSON with a final newline.
func WriteJSON(w io.Writer, inv *Inventory) error {
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return fmt.Errorf("encode inventory: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	return nil
}

// WriteTable writes the inventory for people: a summary, then a table per kind of device.
func WriteTable(w io.Writer, inv *Inventory) error {
	var b strings.Builder
	// Each section gets its own tabwriter so that one table's widths do not stretch another's.
	section := func(title string, header []string, rows [][]string) {
		b.WriteString("\n" + title + "\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		if len(rows) == 0 {
			fmt.Fprintln(tw, "(none)")
		}
		_ = tw.Flush() // writes to a strings.Builder, which does not fail
	}

	cpu := fmt.Sprintf("%d × %s", inv.CPU.Count, dash(inv.CPU.Model))
	if inv.CPU.Sockets > 0 {
		cpu += fmt.Sprintf(" (%d socket(s), %d core(s))", inv.CPU.Sockets, inv.CPU.Cores)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Machine\t%s\n", dash(strings.TrimSpace(inv.DMI.Vendor+" "+inv.DMI.Product)))
	fmt.Fprintf(tw, "Serial\t%s\n", dash(inv.DMI.Serial))
	fmt.Fprintf(tw, "SMBIOS UUID\t%s\n", dash(inv.DMI.UUID))
	fmt.Fprintf(tw, "CPU\t%s\n", cpu)
	mem := humanBytes(inv.Memory.TotalBytes)
	if inv.Memory.InstalledBytes > 0 {
		mem += " usable, " + humanBytes(inv.Memory.InstalledBytes) + " installed"
	}
	fmt.Fprintf(tw, "Memory\t%s\n", mem)
	_ = tw.Flush()

	var rows [][]string
	for _, g := range inv.GPUs {
		mem := "-"
		if g.MemoryMiB > 0 {
			mem = strconv.FormatUint(g.MemoryMiB, 10) + " MiB"
		}
		if g.Unreachable {
			mem = "unreachable" // the driver's tool could not reach it; the warnings say more
		}
		if g.Excluded {
			mem = "excluded" // from the driver's use; the warnings say more
		}
		rows = append(rows, []string{g.PCIAddress, g.Vendor, g.Model, mem, dash(g.Driver), dash(g.DriverVersion),
			dash(g.MIGMode), linkString(g.Link)})
	}
	section("GPUs", []string{"ADDRESS", "VENDOR", "MODEL", "MEMORY", "DRIVER", "VERSION", "MIG", "LINK"}, rows)

	rows = nil
	for _, d := range inv.Disks {
		boot := yesNo(d.Boot)
		if d.Boot && d.BootReason != "" {
			boot += " (" + d.BootReason + ")"
		}
		path := d.Path
		if len(d.Paths) > 0 {
			path += " (also " + strings.Join(d.Paths, ",") + ")"
		}
		// The WWN last: it can be long (an NVMe id without an EUI), and
		// the columns before it stay narrow.
		size := humanBytes(d.SizeBytes)
		if d.NoMedium {
			size = "no medium" // not a disk of 0 B
		}
		transport := dash(d.Transport)
		if d.Remote {
			transport += " (remote)"
		}
		model := dash(strings.TrimSpace(d.Vendor + " " + d.Model))
		rows = append(rows, []string{path, size, transport, model, dash(d.Serial),
			yesNo(d.Rotational), yesNo(d.Removable), boot, dash(d.WWN)})
		for _, part := range d.Partitions {
			label := strings.TrimSpace(part.PartLabel + " " + part.FSLabel)
			// Every row as wide as the header: tabwriter aligns a column
			// only over a block of rows that all have it.
			rows = append(rows, []string{"  " + part.Path, humanBytes(part.SizeBytes), "", dash(label), "", "", "", "", ""})
		}
	}
	section("Disks", []string{"PATH", "SIZE", "TRANSPORT", "MODEL/LABEL", "SERIAL", "ROTATIONAL", "REMOVABLE", "BOOT", "WWN"}, rows)

	rows = nil
	for _, n := range inv.NICs {
		speed := "-"
		if n.SpeedMbps > 0 {
			speed = strconv.Itoa(n.SpeedMbps) + " Mb/s"
		}
		bus := n.PCIAddress
		if n.Bus != "" {
			bus = strings.TrimSpace(n.Bus + " " + n.USBPath)
		}
		// Last, as it can be long: the link type and address of a NIC that is not
		// Ethernet (IPoIB's 20 bytes), which has no MAC.
		link := strings.TrimSpace(n.LinkType + " " + n.HWAddress)
		if n.LinkType == "ethernet" {
			link = n.LinkType
		}
		rows = append(rows, []string{n.Name, dash(n.MAC), dash(n.Driver), speed, yesNo(n.Carrier), dash(bus), dash(link)})
	}
	section("NICs", []string{"NAME", "MAC", "DRIVER", "SPEED", "CARRIER", "BUS", "LINK"}, rows)

	rows = nil
	for _, d := range inv.RDMA {
		// One row per port, the device's own columns on its first.
		dev := []string{d.Name, d.PCIAddress, dash(d.Model), dash(d.Driver), dash(d.Firmware), dash(d.NodeGUID)}
		if len(d.Ports) == 0 {
			rows = append(rows, append(dev, "-", "-", "-", "-", "-", "-"))
		}
		for i, p := range d.Ports {
			if i > 0 {
				dev = []string{"", "", "", "", "", ""}
			}
			rows = append(rows, append(dev, strconv.Itoa(p.Number), dash(p.LinkLayer), dash(p.State), dash(p.PhysicalState),
				dash(p.Netdev), dash(p.Rate)))
		}
	}
	section("RDMA", []string{"DEVICE", "ADDRESS", "MODEL", "DRIVER", "FIRMWARE", "NODE GUID", "PORT", "LINK LAYER", "STATE",
		"PHYS STATE", "NETDEV", "RATE"}, rows)

	rows = nil
	for _, d := range inv.PCIDevices {
		rows = append(rows, []string{d.Address, orHex(d.ClassName, d.Class), orHex(d.VendorName, d.VendorID),
			orHex(d.DeviceName, d.DeviceID), dash(d.Driver), strconv.Itoa(d.NUMANode)})
	}
	section("PCI devices", []string{"ADDRESS", "CLASS", "VENDOR", "DEVICE", "DRIVER", "NUMA"}, rows)

	if len(inv.Warnings) > 0 {
		b.WriteString("\n")
		for _, warn := range inv.Warnings {
			b.WriteString("warning: " + warn + "\n")
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orHex(name, id string) string {
	if id == "" {
		return "unknown" // its file was missing or unreadable; the warnings say which
	}
	if name == "" {
		return "[" + id + "]"
	}
	return name + " [" + id + "]"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// linkString writes a PCI Express link as lspci's LnkSta does ("32.0 GT/s x16"). A link with
// no speed and no lanes (sysfs: "Unknown" and 0) is down: a GPU fallen off the bus, whose
// config space reads all ones, or one whose link did not train.
func linkString(l *PCILink) string {
	if l == nil || l.CurrentSpeed == "" {
		return "-"
	}
	if PCIeGen(l.CurrentSpeed) == 0 && l.CurrentWidth == 0 {
		return "link down"
	}
	return fmt.Sprintf("%s x%d", strings.TrimSuffix(l.CurrentSpeed, " PCIe"), l.CurrentWidth)
}

// humanBytes writes a size in binary units, as lsblk does.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
