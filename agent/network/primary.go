package network

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etoile-os/etoile/agent/mount"
)

// The generated host name (etoile-<MAC>) is the K3s node's name: it must be
// the same on every boot of a machine, whatever order its NIC drivers probe
// in and whatever dongle is plugged in. So it comes from the lowest MAC of
// the NICs on the machine's own buses (PCI, virtio), chosen once every such
// NIC with a driver has registered its interface.

// A NIC is a network controller as sysfs lists it, with or without a driver.
type nicDevice struct {
	dir      string // its folder in sysfs
	modalias string
}

// notNetDrivers bind network controllers without making an interface: a
// device passed to a VM (vfio-pci), held back (pci-stub, Xen's pciback),
// or driven from user space (uio).
var notNetDrivers = map[string]bool{"vfio-pci": true, "pci-stub": true, "pciback": true, "xen-pciback": true, "uio_pci_generic": true}

// busNICs lists the PCI Ethernet controllers (class 0200: not Wi-Fi,
// InfiniBand or other network classes), virtio's included, leaving out
// those bound to a driver that makes no interface.
func busNICs(sysDir string) []nicDevice {
	dir := filepath.Join(sysDir, "bus/pci/devices")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []nicDevice
	for _, e := range ents {
		d := filepath.Join(dir, e.Name())
		class, err := os.ReadFile(filepath.Join(d, "class"))
		if c := strings.TrimSpace(string(class)); err != nil || len(c) != 8 || !strings.HasPrefix(c, "0x0200") {
			continue
		}
		if drv, err := os.Readlink(filepath.Join(d, "driver")); err == nil && notNetDrivers[filepath.Base(drv)] {
			continue
		}
		ma, _ := os.ReadFile(filepath.Join(d, "modalias"))
		out = append(out, nicDevice{dir: d, modalias: strings.TrimSpace(string(ma))})
	}
	return out
}

// interfaces lists the network interfaces the device has registered: in its
// net folder, or one level down (a virtio NIC under its PCI function).
func (n nicDevice) interfaces() []string {
	names := dirNames(filepath.Join(n.dir, "net"))
	if len(names) > 0 {
		return names
	}
	subs, _ := os.ReadDir(n.dir)
	for _, s := range subs {
		if s.IsDir() { // child devices; driver and subsystem are links
			names = append(names, dirNames(filepath.Join(n.dir, s.Name(), "net"))...)
		}
	}
	return names
}

func dirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// waitNICs waits until every NIC on the buses for whose modalias hasDriver
// is true (every NIC when hasDriver is nil) has registered an interface, or
// timeout has passed. It returns the PCI addresses of those that had not.
func waitNICs(ctx context.Context, sysDir string, hasDriver func(modalias string) bool, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		release := mount.HoldAPI() // sysfs is not there while the root switches
		for _, n := range busNICs(sysDir) {
			if (hasDriver == nil || hasDriver(n.modalias)) && len(n.interfaces()) == 0 {
				missing = append(missing, filepath.Base(n.dir))
			}
		}
		release()
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return missing
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// namingConfig is what waitNamingNICs reads of a Config (kept apart from
// the netlink code so that it is tested on a copied sysfs).
type namingConfig struct {
	sysDir       string
	hasDriver    func(modalias string) bool
	driversKnown <-chan struct{}
	knownWait    time.Duration // for driversKnown
	wait         time.Duration // for the NICs' interfaces
}

// waitNamingNICs waits until every driver the boot can load is known
// (driversKnown, knownWait at most) — unless every NIC on the buses has its
// interface already — and then, wait at most, until every NIC with a driver
// has registered its interface. It returns the PCI addresses of those that
// had not.
func waitNamingNICs(ctx context.Context, cfg namingConfig) []string {
	if cfg.driversKnown != nil && len(waitNICs(ctx, cfg.sysDir, nil, 0)) > 0 {
		t := time.NewTimer(cfg.knownWait)
		select {
		case <-cfg.driversKnown:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return waitNICs(ctx, cfg.sysDir, cfg.hasDriver, cfg.wait)
}

// nicAddr is a link's name and hardware address.
type nicAddr struct {
	name string
	mac  net.HardwareAddr
}

// removable reports whether the interface's device hangs off USB (a dongle,
// a phone's tethering): such a NIC comes and goes, and must not name the
// machine while a NIC of its own is there.
func removable(sysDir, iface string) bool {
	dev, err := filepath.EvalSymlinks(filepath.Join(sysDir, "class/net", iface, "device"))
	return err == nil && strings.Contains(dev, "/usb")
}

// primaryMAC returns the lowest hardware address among the NICs that are
// not removable, or among all of them if every one is (nil when none has
// an address).
func primaryMAC(sysDir string, nics []nicAddr) net.HardwareAddr {
	defer mount.HoldAPI()()
	var fixed, any net.HardwareAddr
	for _, n := range nics {
		if len(n.mac) == 0 {
			continue
		}
		if any == nil || bytes.Compare(n.mac, any) < 0 {
			any = n.mac
		}
		if !removable(sysDir, n.name) && (fixed == nil || bytes.Compare(n.mac, fixed) < 0) {
			fixed = n.mac
		}
	}
	if fixed != nil {
		return fixed
	}
	return any
}
