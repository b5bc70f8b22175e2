package inventory

import (
	"reflect"
	"strings"
	"testing"
)

func TestNodeLabels(t *testing.T) {
	gpu := func(vendor, model string) GPU { return GPU{Vendor: vendor, Model: model, ModelSource: "driver"} }
	chip := func(model string) GPU { return GPU{Vendor: "nvidia", Model: model, ModelSource: "pci.ids"} }
	tests := []struct {
		name string
		gpus []GPU
		want map[string]string
	}{
		{"no GPU", nil, map[string]string{}},
		{"AMD and Intel only: no labels yet", []GPU{gpu("amd", "Instinct MI300X"), gpu("intel", "UHD Graphics 770")}, map[string]string{}},
		{"one H100", []GPU{gpu("nvidia", "NVIDIA H100 80GB HBM3")}, map[string]string{
			"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.model": "NVIDIA-H100-80GB-HBM3",
			"etoile.io/gpu.count": "1", "nvidia.com/gpu.present": "true"}},
		{"eight, beside an Intel iGPU", append(repeat(gpu("nvidia", "NVIDIA H200"), 8), gpu("intel", "UHD")), map[string]string{
			"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.model": "NVIDIA-H200",
			"etoile.io/gpu.count": "8", "nvidia.com/gpu.present": "true"}},
		{"mixed models: the most common", []GPU{gpu("nvidia", "NVIDIA L4"), gpu("nvidia", "NVIDIA A2"), gpu("nvidia", "NVIDIA L4")},
			map[string]string{"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.model": "NVIDIA-L4",
				"etoile.io/gpu.count": "3", "nvidia.com/gpu.present": "true"}},
		{"mixed models, tie: sorted first", []GPU{gpu("nvidia", "NVIDIA L4"), gpu("nvidia", "NVIDIA A2")},
			map[string]string{"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.model": "NVIDIA-A2",
				"etoile.io/gpu.count": "2", "nvidia.com/gpu.present": "true"}},
		{"before the driver loads: no model (pci.ids names the chip, not the product)", []GPU{chip("GH100[H100 SXM5 80GB]")},
			map[string]string{"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.count": "1", "nvidia.com/gpu.present": "true"}},
		{"half with the driver: the driver's name, all counted", append(repeat(gpu("nvidia", "NVIDIA H100 80GB HBM3"), 4), repeat(chip("GH100[H100 SXM5 80GB]"), 4)...),
			map[string]string{"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.model": "NVIDIA-H100-80GB-HBM3",
				"etoile.io/gpu.count": "8", "nvidia.com/gpu.present": "true"}},
		{"unknown to pci.ids and no driver: no model", []GPU{{Vendor: "nvidia", Model: "10de:2335", ModelSource: "ids"}},
			map[string]string{"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.count": "1", "nvidia.com/gpu.present": "true"}},
		{"a GPU excluded from the driver is not counted", []GPU{gpu("nvidia", "NVIDIA L4"),
			{Vendor: "nvidia", Model: "NVIDIA A2", ModelSource: "driver", Excluded: true}},
			map[string]string{"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.model": "NVIDIA-L4",
				"etoile.io/gpu.count": "1", "nvidia.com/gpu.present": "true"}},
		{"every GPU excluded: no labels", []GPU{{Vendor: "nvidia", Model: "NVIDIA A2", ModelSource: "driver", Excluded: true}},
			map[string]string{}},
		{"model with nothing label-safe: no model label", []GPU{gpu("nvidia", "™™")},
			map[string]string{"etoile.io/gpu.vendor": "nvidia", "etoile.io/gpu.count": "1", "nvidia.com/gpu.present": "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NodeLabels(&Inventory{GPUs: tt.gpus})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("NodeLabels = %v, want %v", got, tt.want)
			}
		})
	}
	if got := NodeLabels(nil); len(got) != 0 {
		t.Errorf("NodeLabels(nil) = %v", got)
	}
}

func TestNodeLabelList(t *testing.T) {
	got := NodeLabelList(NodeLabels(&Inventory{GPUs: []GPU{{Vendor: "nvidia", Model: "NVIDIA H100 80GB HBM3", ModelSource: "driver"}}}))
	want := []string{"etoile.io/gpu.count=1", "etoile.io/gpu.model=NVIDIA-H100-80GB-HBM3", "etoile.io/gpu.vendor=nvidia",
		"nvidia.com/gpu.present=true"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NodeLabelList = %q, want %q", got, want)
	}
	if got := NodeLabelList(nil); len(got) != 0 {
		t.Errorf("NodeLabelList(nil) = %q", got)
	}
}

func repeat(g GPU, n int) []GPU {
	out := make([]GPU, n)
	for i := range out {
		out[i] = g
	}
	return out
}

func TestLabelValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3"},
		{"NVIDIA GeForce RTX 4090", "NVIDIA-GeForce-RTX-4090"},
		{"Tesla V100-SXM2-16GB", "Tesla-V100-SXM2-16GB"},
		{"  (weird) model/name ", "weird-model-name"},
		{"a.b_c", "a.b_c"},
		{"-._x_.-", "x"},
		{"", ""},
		{"GPU™ Ünïcode", "GPU-n-code"},
		{strings.Repeat("A", 70), strings.Repeat("A", 63)},
		{strings.Repeat("A", 62) + " B", strings.Repeat("A", 62)}, // cut on the dash, then trimmed
	}
	for _, tt := range tests {
		if got := LabelValue(tt.in); got != tt.want {
			t.Errorf("LabelValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzLabelValue(f *testing.F) {
	f.Add("NVIDIA H100 80GB HBM3")
	f.Add(strings.Repeat("é-", 40))
	f.Fuzz(func(t *testing.T, s string) {
		v := LabelValue(s)
		if len(v) > 63 {
			t.Fatalf("%q: %d characters", v, len(v))
		}
		for i, r := range v {
			alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
			if !alnum && r != '.' && r != '_' && r != '-' {
				t.Fatalf("%q holds %q", v, r)
			}
			if (i == 0 || i == len(v)-1) && !alnum {
				t.Fatalf("%q does not begin and end with a letter or digit", v)
			}
		}
	})
}
