package inventory

import "testing"

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
