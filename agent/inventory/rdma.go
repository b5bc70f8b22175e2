package inventory

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/etoile-os/etoile/agent/netkind"
)

// RDMADevice is an RDMA adapter as the kernel's RDMA core lists it in /sys/class/infiniband:
// an InfiniBand HCA or a RoCE NIC (a ConnectX, mlx5_0). An HCA whose ports run InfiniBand
// has a netdev only with IPoIB (ib_ipoib) loaded: without it, this list and the PCI devices
// are the only places the compute network of a GPU node shows. Software RDMA over an
// ordinary NIC (rxe, siw) is no adapter and is left out.
type RDMADevice struct {
	Name       string `json:"name"`        // the RDMA core's name: mlx5_0
	PCIAddress string `json:"pci_address"` // its PCI function
	Driver     string `json:"driver"`      // the PCI function's driver: mlx5_core
	// Model is pci.ids' name of the PCI function ("MT2910 Family [ConnectX-7]"), else the
	// driver's hca_type ("MT4129"); "" when neither says.
	Model    string `json:"model,omitempty"`
	HCAType  string `json:"hca_type,omitempty"` // the driver's name of the chip: MT4129
	BoardID  string `json:"board_id,omitempty"` // the board's PSID: MT_0000000838
	Firmware string `json:"firmware"`           // fw_ver: 28.39.1002
	NodeGUID string `json:"node_guid"`          // as sysfs writes it: b8ce:f603:00a1:b2c3
	// Ports in their number's order.
	Ports []RDMAPort `json:"ports"`
}

// RDMAPort is one port of an RDMA adapter (/sys/class/infiniband/<dev>/ports/<n>).
type RDMAPort struct {
	Number int `json:"number"` // from 1
	// State is the logical port state as sysfs names it without its number: ACTIVE,
	// DOWN, INIT (the link is up, no subnet manager has configured the port), ARMED.
	State string `json:"state"`
	// PhysicalState is the link's: LinkUp, Polling (no cable or no peer), Disabled, Sleep,
	// LinkErrorRecovery, PortConfigurationTraining.
	PhysicalState string `json:"physical_state"`
	// Rate is as sysfs writes it ("400 Gb/sec (4X NDR)"); RateGbps its number, 0 when the
	// rate is not known.
	Rate     string  `json:"rate"`
	RateGbps float64 `json:"rate_gbps,omitempty"`
	// LinkLayer is InfiniBand or Ethernet (RoCE).
	LinkLayer string `json:"link_layer"`
	// LID is an InfiniBand port's local id as sysfs writes it ("0x1a"; "0x0" until a
	// subnet manager assigns one); "" on an Ethernet port, which has none.
	LID string `json:"lid,omitempty"`
	// Netdev is the port's network interface: a RoCE port's Ethernet NIC, an InfiniBand
	// port's IPoIB interface (ib0); "" when it has none (InfiniBand without ib_ipoib).
	Netdev string `json:"netdev,omitempty"`
}

func (c *collector) rdma() error {
	const class = "/sys/class/infiniband"
	names, err := c.r.list(class)
	if err != nil {
		return fmt.Errorf("list %s: %w", class, err)
	}
	slices.SortFunc(names, naturalCompare) // mlx5_2 before mlx5_10
	for _, name := range names {
		sys := class + "/" + name
		devPath := c.r.linkTarget(sys)
		addr := pciAddressOf(devPath)
		if addr == "" {
			// A copied tree may keep the device link only as its target's name.
			if a := c.r.linkBase(sys + "/device"); pciAddrRe().MatchString(a) {
				addr = a
			}
		}
		// Soft RoCE (rxe) and soft iWARP (siw) ride on an ordinary NIC: the
		// kernel places them under /devices/virtual (no PCI function), or under
		// the NIC's own device, where rxe has a "parent" attribute naming the
		// netdev and both have their tools' default names.
		if addr == "" || c.r.exists(sys+"/parent") || strings.HasPrefix(name, "rxe") || strings.HasPrefix(name, "siw") {
			c.log.Debug("inventory: RDMA device left out: software RDMA, or no PCI function", "device", name, "path", devPath)
			continue
		}
		d := RDMADevice{
			Name:       name,
			PCIAddress: addr,
			Driver:     c.r.linkBase(sys + "/device/driver"),
			HCAType:    c.r.attr(sys + "/hca_type"),
			BoardID:    c.r.attr(sys + "/board_id"),
			Firmware:   c.r.attr(sys + "/fw_ver"),
			NodeGUID:   c.r.attr(sys + "/node_guid"),
			Ports:      []RDMAPort{},
		}
		if i := slices.IndexFunc(c.inv.PCIDevices, func(p PCIDevice) bool { return p.Address == addr }); i >= 0 {
			p := c.inv.PCIDevices[i]
			d.Driver = firstNonEmpty(d.Driver, p.Driver)
			d.Model = p.DeviceName
		}
		d.Model = firstNonEmpty(d.Model, d.HCAType)
		ports, err := c.r.list(sys + "/ports")
		if err != nil {
			c.warn("rdma: list %s/ports: %v", sys, err)
		}
		var numbers []int
		for _, p := range ports {
			if n, err := strconv.Atoi(p); err == nil && n > 0 {
				numbers = append(numbers, n)
			}
		}
		slices.Sort(numbers)
		for _, n := range numbers {
			d.Ports = append(d.Ports, c.rdmaPort(sys, n))
		}
		c.inv.RDMA = append(c.inv.RDMA, d)
	}
	return nil
}

func (c *collector) rdmaPort(sys string, n int) RDMAPort {
	dir := fmt.Sprintf("%s/ports/%d", sys, n)
	p := RDMAPort{
		Number:        n,
		State:         stateWord(c.r.attr(dir + "/state")),
		PhysicalState: stateWord(c.r.attr(dir + "/phys_state")),
		Rate:          c.r.attr(dir + "/rate"),
		LinkLayer:     c.r.attr(dir + "/link_layer"),
	}
	p.RateGbps = ParseRDMARate(p.Rate)
	if p.LinkLayer != "Ethernet" {
		p.LID = c.r.attr(dir + "/lid")
	}
	// A RoCE port's GID table names its netdev; an InfiniBand port's does not (the read
	// fails), and its IPoIB interface, when there is one, sits under the PCI function with
	// dev_port = port - 1.
	p.Netdev = c.r.attr(dir + "/gid_attrs/ndevs/0")
	if p.Netdev == "" {
		p.Netdev = c.portNetdev(sys+"/device/net", n)
	}
	return p
}

// portNetdev returns the interface under a PCI function's net folder that is port n's: its
// dev_port is n-1 (0 when it is not said). A switchdev representor (a VF's host side) and a
// child interface (an IPoIB P_Key's ib0.8001) are not the port's own.
func (c *collector) portNetdev(netDir string, n int) string {
	names, _ := c.r.list(netDir)
	for _, name := range names {
		if strings.Contains(name, ".") || ipoibChild(c.r, netDir+"/"+name) || netkind.Representor([]byte(c.r.attr(netDir+"/"+name+"/phys_port_name"))) {
			continue
		}
		port, ok := c.r.attrInt(netDir + "/" + name + "/dev_port")
		if !ok {
			port = 0
		}
		if int(port) == n-1 {
			return name
		}
	}
	return ""
}

// stateWord drops the number sysfs writes before a port state: "4: ACTIVE" is ACTIVE.
func stateWord(s string) string {
	if _, word, ok := strings.Cut(s, ":"); ok {
		return strings.TrimSpace(word)
	}
	return s
}

// ParseRDMARate returns the Gb/s of an RDMA port's rate as sysfs writes it ("400 Gb/sec (4X
// NDR)", "2.5 Gb/sec (1X SDR)", "100 Gb/sec (2X HDR)"); 0 when it is not of that form.
func ParseRDMARate(s string) float64 {
	f := strings.Fields(s)
	if len(f) < 2 || f[1] != "Gb/sec" {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 || v > 1e6 {
		return 0
	}
	return v
}

// naturalCompare orders names by their text, then by the number they end in: mlx5_2
// before mlx5_10.
func naturalCompare(a, b string) int {
	pa, na := splitNumber(a)
	pb, nb := splitNumber(b)
	if pa == pb && na >= 0 && nb >= 0 && na != nb {
		return cmp.Compare(na, nb)
	}
	return strings.Compare(a, b)
}

// splitNumber splits a name into its text and the number it ends in (-1 when none).
func splitNumber(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) || len(s)-i > 9 {
		return s, -1
	}
	n, _ := strconv.Atoi(s[i:])
	return s[:i], n
}
