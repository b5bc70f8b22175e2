package inventory

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/etoile-os/etoile/agent/inventory/pciids"
)

// TestSystemPCIIDsWhenNewer: a system pci.ids newer than the compiled-in one (an image's,
// the live host's) names the devices; an older one does not replace it.
func TestSystemPCIIDsWhenNewer(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(h100Root)); err != nil {
		t.Fatal(err)
	}
	write := func(p, version, name string) {
		t.Helper()
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		db := "#\n#\tList of PCI ID's\n#\n#\tVersion: " + version + "\n#\tDate:    x\n#\n10de  NVIDIA Corporation\n\t2330  " + name + "\n"
		if err := os.WriteFile(f, []byte(db), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deviceName := func() (string, string) {
		t.Helper()
		inv, err := Collect(context.Background(), Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range inv.PCIDevices {
			if d.DeviceID == "2330" {
				return d.DeviceName, inv.PCIIDs
			}
		}
		t.Fatal("the H100 is not among the PCI devices")
		return "", ""
	}
	embedded := pciids.EmbeddedVersion()
	if embedded == "" {
		t.Fatal("the compiled-in pci.ids has no version")
	}
	if name, from := deviceName(); name != "GH100 [H100 SXM5 80GB]" || from != "embedded "+embedded {
		t.Errorf("without a system pci.ids: %q from %q", name, from)
	}
	write("usr/share/misc/pci.ids", "2020.01.01", "Old name")
	if name, from := deviceName(); name != "GH100 [H100 SXM5 80GB]" || from != "embedded "+embedded {
		t.Errorf("with an older system pci.ids: %q from %q, want the compiled-in one", name, from)
	}
	write("usr/share/hwdata/pci.ids", "2099.12.31", "GH100 [H100 SXM5 80GB] (newer)")
	if name, from := deviceName(); name != "GH100 [H100 SXM5 80GB] (newer)" || from != "/usr/share/hwdata/pci.ids 2099.12.31" {
		t.Errorf("with a newer system pci.ids: %q from %q", name, from)
	}
}
