package network

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// sysTree builds a sysfs-shaped tree: PCI functions with a class and a
// modalias, and /sys/class/net links to their interfaces' devices.
type sysTree struct {
	t   *testing.T
	dir string
}

func newSysTree(t *testing.T) sysTree {
	return sysTree{t, t.TempDir()}
}

func (s sysTree) write(rel, content string) {
	s.t.Helper()
	p := filepath.Join(s.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// pci adds a PCI function under devices/ and its bus link.
func (s sysTree) pci(addr, class, modalias string) string {
	s.t.Helper()
	dev := filepath.Join("devices/pci0000:00", addr)
	s.write(filepath.Join(dev, "class"), class+"\n")
	s.write(filepath.Join(dev, "modalias"), modalias+"\n")
	if err := os.MkdirAll(filepath.Join(s.dir, "bus/pci/devices"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(s.dir, dev), filepath.Join(s.dir, "bus/pci/devices", addr)); err != nil {
		s.t.Fatal(err)
	}
	return dev
}

// iface registers interface name under the device folder dev (relative).
func (s sysTree) iface(dev, name string) {
	s.t.Helper()
	s.write(filepath.Join(dev, "net", name, "address"), "00:00:00:00:00:00\n")
	if err := os.MkdirAll(filepath.Join(s.dir, "class/net"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "class/net", name), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(s.dir, dev), filepath.Join(s.dir, "class/net", name, "device")); err != nil {
		s.t.Fatal(err)
	}
}

func mac(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	hw, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

func TestPrimaryMACLeavesRemovableNICsOut(t *testing.T) {
	s := newSysTree(t)
	s.iface(s.pci("0000:00:03.0", "0x020000", "pci:v00008086d0000100Esv00008086sd00001100bc02sc00i00"), "eth0")
	s.iface(s.pci("0000:00:04.0", "0x020000", "pci:v000015B3d0000101Dsv000015B3sd00000017bc02sc00i00"), "eth1")
	s.iface("devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0", "eth2") // a USB dongle
	nics := []nicAddr{
		{"eth0", mac(t, "52:54:00:12:34:99")},
		{"eth1", mac(t, "52:54:00:12:34:10")},
		{"eth2", mac(t, "00:e0:4c:68:00:01")}, // the lowest, but on USB
		{"eth3", nil},
	}
	if got := primaryMAC(s.dir, nics).String(); got != "52:54:00:12:34:10" {
		t.Errorf("primary MAC = %s, want the lowest of the NICs on PCI, 52:54:00:12:34:10", got)
	}
	// The same NICs named the other way round (drivers probed in another order).
	nics[0], nics[1] = nicAddr{"eth1", nics[1].mac}, nicAddr{"eth0", nics[0].mac}
	if got := primaryMAC(s.dir, nics).String(); got != "52:54:00:12:34:10" {
		t.Errorf("primary MAC after renaming = %s", got)
	}
	// A machine whose only NIC is a dongle is named after it.
	if got := primaryMAC(s.dir, nics[2:]).String(); got != "00:e0:4c:68:00:01" {
		t.Errorf("primary MAC with only the USB NIC = %s", got)
	}
	if primaryMAC(s.dir, nil) != nil {
		t.Error("no NICs: want nil")
	}
}

// TestDHCPNamed: the wait for the NICs happens only when the name is
// generated, i.e. when no lease gives one.
func TestDHCPNamed(t *testing.T) {
	if dhcpNamed(nil) || dhcpNamed([]Lease{{Iface: "eth0"}}) {
		t.Error("leases without a host name: the name must be generated")
	}
	if !dhcpNamed([]Lease{{Iface: "eth0"}, {Iface: "eth1", Hostname: "node7"}}) {
		t.Error("a lease with a host name: DHCP names the machine")
	}
}

func TestWaitNICsWaitsForLateDrivers(t *testing.T) {
	s := newSysTree(t)
	const (
		igb  = "pci:v00008086d00001533sv00008086sd00000000bc02sc00i00"
		mlx5 = "pci:v000015B3d0000101Dsv000015B3sd00000017bc02sc00i00"
		odd  = "pci:v0000ABCDd00000001sv00000000sd00000000bc02sc00i00" // no driver in the image
	)
	s.iface(s.pci("0000:01:00.0", "0x020000", igb), "eth0")
	slow := s.pci("0000:41:00.0", "0x020000", mlx5)
	virtio := s.pci("0000:00:05.0", "0x020000", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")
	s.pci("0000:00:1f.2", "0x010601", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01") // AHCI: not a NIC
	s.pci("0000:42:00.0", "0x020000", odd)
	// Never waited for: Wi-Fi and InfiniBand (other network classes), and
	// an Ethernet controller passed to a VM (vfio-pci makes no interface).
	s.pci("0000:03:00.0", "0x028000", "pci:v00008086d00002723sv00008086sd00000084bc02sc80i00")
	s.pci("0000:04:00.0", "0x020700", "pci:v000015B3d0000101Bsv000015B3sd00000007bc02sc07i00")
	vf := s.pci("0000:05:00.0", "0x020000", igb)
	if err := os.MkdirAll(filepath.Join(s.dir, "bus/pci/drivers/vfio-pci"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(s.dir, "bus/pci/drivers/vfio-pci"), filepath.Join(s.dir, vf, "driver")); err != nil {
		t.Fatal(err)
	}
	hasDriver := func(ma string) bool { return ma != odd }

	// mlx5 and the virtio NIC register theirs later, the virtio one a level
	// down (virtio0/net), as virtio_net does.
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.iface(filepath.Join(virtio, "virtio0"), "eth1")
		time.Sleep(100 * time.Millisecond)
		s.iface(slow, "eth2")
	}()
	if missing := waitNICs(context.Background(), s.dir, hasDriver, 10*time.Second); len(missing) > 0 {
		t.Fatalf("waitNICs: missing %v, want none (every NIC with a driver registered within 0.2 s)", missing)
	}

	// A NIC whose driver never registers an interface (its probe failed) is
	// named once the wait is over; without a driver list it counts too.
	if missing := waitNICs(context.Background(), s.dir, nil, 100*time.Millisecond); !slices.Equal(missing, []string{"0000:42:00.0"}) {
		t.Errorf("waitNICs with every NIC counted: missing %v, want [0000:42:00.0]", missing)
	}
}

// TestWaitNamingNICsWaitsForTheImagesDrivers: a NIC whose driver only the
// system image's modules have (an extension's out-of-tree driver) is not
// known to the initramfs's index when the network comes up; the generated
// name waits until the image's modules are indexed, then for that NIC's
// interface, so it counts in every boot alike.
func TestWaitNamingNICsWaitsForTheImagesDrivers(t *testing.T) {
	s := newSysTree(t)
	const (
		igb = "pci:v00008086d00001533sv00008086sd00000000bc02sc00i00"
		ext = "pci:v0000ABCDd00000001sv00000000sd00000000bc02sc00i00" // its driver is in an extension
	)
	s.iface(s.pci("0000:01:00.0", "0x020000", igb), "eth0")
	late := s.pci("0000:42:00.0", "0x020000", ext)
	var merged atomic.Bool
	hasDriver := func(ma string) bool { return ma != ext || merged.Load() }
	known := make(chan struct{})
	go func() {
		time.Sleep(150 * time.Millisecond)
		merged.Store(true) // the image's index merged…
		close(known)
		time.Sleep(100 * time.Millisecond)
		s.iface(late, "eth1") // …and the NIC's driver loaded
	}()
	missing := waitNamingNICs(context.Background(), namingConfig{s.dir, hasDriver, known, 10 * time.Second, 10 * time.Second})
	if len(missing) > 0 {
		t.Fatalf("missing %v, want none", missing)
	}
	if _, err := os.Stat(filepath.Join(s.dir, late, "net/eth1")); err != nil {
		t.Fatal("waitNamingNICs returned before the image's drivers were known: the extension's NIC would not count in this boot's name")
	}

	// The image's drivers never known in time: that wait is bounded, and a
	// NIC with no interface by the end of the NICs' wait is named as missing.
	s2 := newSysTree(t)
	s2.pci("0000:01:00.0", "0x020000", igb)
	missing = waitNamingNICs(context.Background(), namingConfig{s2.dir, hasDriver, make(chan struct{}), 100 * time.Millisecond, 100 * time.Millisecond})
	if !slices.Equal(missing, []string{"0000:01:00.0"}) {
		t.Errorf("missing %v after the whole wait, want [0000:01:00.0]", missing)
	}

	// Every NIC has its interface already: nothing the image adds can name
	// the machine, so the image's drivers are not waited for (a GPU driver's
	// load does not hold the network up).
	s3 := newSysTree(t)
	s3.iface(s3.pci("0000:01:00.0", "0x020000", igb), "eth0")
	res := make(chan []string, 1)
	go func() {
		res <- waitNamingNICs(context.Background(), namingConfig{s3.dir, hasDriver, make(chan struct{}), time.Hour, 10 * time.Second})
	}()
	select {
	case missing := <-res:
		if len(missing) > 0 {
			t.Errorf("missing %v, want none", missing)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("waited for the image's drivers though every NIC has its interface")
	}
}
