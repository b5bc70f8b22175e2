package join

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/etoile-os/etoile/agent/inventory"
	"github.com/etoile-os/etoile/constellation/api"
)

// TestHostGPUsCountsAsTheInventory: the join's GPU count is the hardware
// inventory's: AMD's MI300X (a processing accelerator, 0x1200) and Intel's
// data-center GPU (display controller 0x0380) count, an SR-IOV virtual
// function of an NVIDIA GPU, a BMC's VGA and Intel's NPU do not.
func TestHostGPUsCountsAsTheInventory(t *testing.T) {
	root := t.TempDir()
	pci := filepath.Join(root, "sys/bus/pci/devices")
	for addr, ids := range map[string][2]string{ // class, vendor
		"0000:02:00.0": {"0x030000", "0x1a03"}, // ASPEED BMC VGA
		"0000:17:00.0": {"0x030200", "0x10de"}, // NVIDIA H100
		"0000:17:00.4": {"0x030200", "0x10de"}, // its SR-IOV virtual function
		"0000:65:00.0": {"0x120000", "0x1002"}, // AMD MI300X
		"0000:9a:00.0": {"0x038000", "0x8086"}, // Intel Data Center GPU Max
		"0000:00:0b.0": {"0x120000", "0x8086"}, // Intel NPU
	} {
		dir := filepath.Join(pci, addr)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]string{"class": ids[0] + "\n", "vendor": ids[1] + "\n", "device": "0x0001\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Symlink("../0000:17:00.0", filepath.Join(pci, "0000:17:00.4/physfn")); err != nil {
		t.Fatal(err)
	}
	want := []api.GPU{{Vendor: "amd", Count: 1}, {Vendor: "intel", Count: 1}, {Vendor: "nvidia", Count: 1}}
	if got := HostGPUs(filepath.Join(root, "sys")); !reflect.DeepEqual(got, want) {
		t.Errorf("HostGPUs = %+v, want %+v", got, want)
	}
	inv, err := inventory.Collect(context.Background(), inventory.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	byVendor := map[string]int{}
	for _, g := range inv.GPUs {
		byVendor[g.Vendor]++
	}
	for _, g := range want {
		if byVendor[g.Vendor] != g.Count {
			t.Errorf("the inventory lists %d %s GPU(s), the join counts %d", byVendor[g.Vendor], g.Vendor, g.Count)
		}
	}

	// The real H100 host: one GPU.
	h100 := filepath.Join("..", "..", "agent", "inventory", "testdata", "h100-vm", "sys")
	if got := HostGPUs(h100); !reflect.DeepEqual(got, []api.GPU{{Vendor: "nvidia", Count: 1}}) {
		t.Errorf("HostGPUs(H100 host) = %+v, want one NVIDIA GPU", got)
	}
	if got := HostGPUs(filepath.Join(root, "missing", "sys")); got != nil {
		t.Errorf("HostGPUs of a missing tree = %+v", got)
	}
}
