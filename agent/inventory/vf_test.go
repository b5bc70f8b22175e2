package inventory

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// vfTree is the H100 snapshot with what real servers add: an SR-IOV
// virtual function of the GPU (a share of it for a VM), a NIC with a
// virtual function and a switchdev representor (a pod's), and a link that
// leads out of the tree (an absolute one to a NIC elsewhere).
func vfTree(t *testing.T) (root, outside string) {
	t.Helper()
	root = t.TempDir()
	if err := os.CopyFS(root, os.DirFS(h100Root)); err != nil {
		t.Fatal(err)
	}
	pci := "sys/bus/pci/devices/"
	fakeroot.Write(t, root, map[string]string{
		pci + "0000:00:07.0/vendor": "0x10de\n", pci + "0000:00:07.0/device": "0x2330\n", pci + "0000:00:07.0/class": "0x030200\n",
		pci + "0000:00:08.0/vendor": "0x15b3\n", pci + "0000:00:08.0/device": "0x101d\n", pci + "0000:00:08.0/class": "0x020000\n",
		pci + "0000:00:08.1/vendor": "0x15b3\n", pci + "0000:00:08.1/device": "0x101e\n", pci + "0000:00:08.1/class": "0x020000\n",
		"sys/class/net/ens8f0/address": "0c:42:a1:00:00:01\n", "sys/class/net/ens8f0/phys_port_name": "p0\n",
		"sys/class/net/ens8f0v0/address": "00:00:00:00:00:00\n",
		"sys/class/net/ens8f0r0/address": "0c:42:a1:00:00:02\n", "sys/class/net/ens8f0r0/phys_port_name": "pf0vf0\n",
	})
	for link, target := range map[string]string{
		pci + "0000:00:07.0/physfn":     "../0000:00:06.0",
		pci + "0000:00:08.1/physfn":     "../0000:00:08.0",
		"sys/class/net/ens8f0/device":   "../../../bus/pci/devices/0000:00:08.0",
		"sys/class/net/ens8f0v0/device": "../../../bus/pci/devices/0000:00:08.1",
		"sys/class/net/ens8f0r0/device": "../../../bus/pci/devices/0000:00:08.0",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	outside = t.TempDir()
	fakeroot.Write(t, outside, map[string]string{"address": "02:fc:00:00:00:01\n", "dev/vendor": "0x1af4\n"})
	if err := os.Symlink("dev", filepath.Join(outside, "device")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "sys/class/net/eth9")); err != nil {
		t.Fatal(err)
	}
	return root, outside
}

// TestVirtualFunctionsAreNotDevicesOfTheirOwn: a GPU's SR-IOV virtual
// function is in the PCI list, naming its physical function, but is no
// second GPU (nor counted in the node's labels); a NIC's virtual function
// and its switchdev representor (pods' interfaces) are not listed as NICs.
func TestVirtualFunctionsAreNotDevicesOfTheirOwn(t *testing.T) {
	root, _ := vfTree(t)
	inv, err := Collect(context.Background(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.GPUs) != 1 || inv.GPUs[0].PCIAddress != "0000:00:06.0" {
		t.Errorf("GPUs = %+v, want the H100 alone", inv.GPUs)
	}
	if got := NodeLabels(inv)[LabelGPUCount]; got != "1" {
		t.Errorf("gpu.count = %q, want 1", got)
	}
	vf := slices.IndexFunc(inv.PCIDevices, func(d PCIDevice) bool { return d.Address == "0000:00:07.0" })
	if vf < 0 || inv.PCIDevices[vf].PhysicalFunction != "0000:00:06.0" {
		t.Errorf("the GPU's virtual function in the PCI list: %+v", inv.PCIDevices)
	}
	var nics []string
	for _, n := range inv.NICs {
		nics = append(nics, n.Name)
	}
	if !slices.Equal(nics, []string{"ens8f0"}) {
		t.Errorf("NICs = %q, want ens8f0 alone (not its VF ens8f0v0, its representor ens8f0r0, nor eth9 outside the tree)", nics)
	}
	if !HasGPU(root, "nvidia") {
		t.Error("HasGPU lost the H100")
	}
}

// TestRootNeverReadsOutsideTheTree: a link in a copied tree that leads out
// of it reads as missing — never the machine's own file.
func TestRootNeverReadsOutsideTheTree(t *testing.T) {
	root, outside := vfTree(t)
	r := newRoot(root)
	defer r.close()
	if got := r.attr("/sys/class/net/eth9/address"); got != "" {
		t.Errorf("read %q through a link out of the tree (%s)", got, outside)
	}
	if r.exists("/sys/class/net/eth9/device") {
		t.Error("a path through a link out of the tree exists")
	}
	if got := r.attr("/sys/class/net/ens8f0/address"); got != "0c:42:a1:00:00:01" {
		t.Errorf("a file in the tree reads %q", got)
	}
}
