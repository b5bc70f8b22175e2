package inventory

import (
	"os"
	"path/filepath"
	"testing"
)

func TestIsGPU(t *testing.T) {
	tests := []struct {
		vendor, class string
		want          bool
	}{
		{"nvidia", "030200", true},  // 3D controller (H100)
		{"nvidia", "030000", true},  // VGA (GeForce)
		{"amd", "038000", true},     // display controller (Instinct)
		{"amd", "120000", true},     // processing accelerator
		{"intel", "030000", true},   // integrated graphics
		{"intel", "120000", false},  // NPU
		{"nvidia", "068000", false}, // NVSwitch bridge
		{"nvidia", "040300", false}, // the GPU's HDMI audio function
	}
	for _, tt := range tests {
		if got := isGPU(tt.vendor, tt.class); got != tt.want {
			t.Errorf("isGPU(%s, %s) = %v, want %v", tt.vendor, tt.class, got, tt.want)
		}
	}
}

// TestHasGPU: the H100 host has one; a machine with only QEMU's emulated VGA and a virtio
// NIC has none.
func TestHasGPU(t *testing.T) {
	if !HasGPU(h100Root, "") || !HasGPU(h100Root, "nvidia") || HasGPU(h100Root, "amd") {
		t.Errorf("HasGPU(%s) does not find exactly an NVIDIA GPU: the snapshot holds an H100", h100Root)
	}
	root := t.TempDir()
	for addr, files := range map[string]map[string]string{
		"0000:00:01.0": {"vendor": "0x1234\n", "class": "0x030000\n"}, // bochs VGA
		"0000:00:02.0": {"vendor": "0x1af4\n", "class": "0x020000\n"}, // virtio NIC
		"0000:00:1f.2": {"vendor": "0x8086\n", "class": "0x010601\n"}, // AHCI
	} {
		dir := filepath.Join(root, "sys/bus/pci/devices", addr)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if HasGPU(root, "") {
		t.Errorf("HasGPU = true for a VM with an emulated VGA only")
	}
	// An edge box's integrated Intel GPU is a GPU, but not one the node's labels (NVIDIA's) wait for.
	igpu := filepath.Join(root, "sys/bus/pci/devices/0000:00:02.1")
	if err := os.MkdirAll(igpu, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"vendor": "0x8086\n", "class": "0x030000\n"} {
		if err := os.WriteFile(filepath.Join(igpu, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !HasGPU(root, "") || !HasGPU(root, "intel") || HasGPU(root, "nvidia") {
		t.Errorf("an Intel iGPU: HasGPU any=%v intel=%v nvidia=%v, want true true false", HasGPU(root, ""), HasGPU(root, "intel"), HasGPU(root, "nvidia"))
	}
	if HasGPU(filepath.Join(root, "missing"), "") {
		t.Errorf("HasGPU = true for a root without sysfs")
	}
}
