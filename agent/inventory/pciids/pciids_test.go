package pciids

import (
	"strings"
	"testing"
)

// The H100 host snapshot's devices, named by the embedded database as lspci would.
func TestEmbeddedNamesSnapshotDevices(t *testing.T) {
	db, err := Embedded(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		vendor, device uint16
		wantVendor     string
		wantDevice     string // "" when the database does not know the device
	}{
		{0x10de, 0x2330, "NVIDIA Corporation", "GH100 [H100 SXM5 80GB]"},
		{0x1af4, 0x1041, "Red Hat, Inc.", "Virtio 1.0 network device"},
		{0x1af4, 0x1042, "Red Hat, Inc.", "Virtio 1.0 block device"},
		{0x1af4, 0x1044, "Red Hat, Inc.", "Virtio 1.0 RNG"},
		{0x1af4, 0x1053, "Red Hat, Inc.", "Virtio 1.0 socket"},
		{0x8086, 0x0d57, "Intel Corporation", ""}, // not in the database
		// The GPUs of the database's day, which Debian 12's (2023.04.10) names only by id.
		{0x10de, 0x2335, "NVIDIA Corporation", "GH100 [H200 SXM 141GB]"},
		{0x10de, 0x2901, "NVIDIA Corporation", "GB100 [B200]"},
		{0x10de, 0x2941, "NVIDIA Corporation", "GB100 [HGX GB200]"},
	}
	for _, tt := range tests {
		v, ok := db.Vendor(tt.vendor)
		if !ok || v != tt.wantVendor {
			t.Errorf("Vendor(%04x) = %q, %v; want %q", tt.vendor, v, ok, tt.wantVendor)
		}
		d, ok := db.Device(tt.vendor, tt.device)
		if d != tt.wantDevice || ok != (tt.wantDevice != "") {
			t.Errorf("Device(%04x, %04x) = %q, %v; want %q", tt.vendor, tt.device, d, ok, tt.wantDevice)
		}
	}
	classes := []struct {
		code uint32
		want string
	}{
		{0x030200, "3D controller"},
		{0x020000, "Ethernet controller"},
		{0x060000, "Host bridge"},
		{0x018000, "Mass storage controller"},
		{0xffff00, "Unassigned class"},
	}
	for _, tt := range classes {
		if got, _ := db.Class(tt.code); got != tt.want {
			t.Errorf("Class(%06x) = %q, want %q", tt.code, got, tt.want)
		}
	}
	if got, _ := db.ProgIf(0x010802); got != "NVM Express" {
		t.Errorf("ProgIf(010802) = %q, want NVM Express", got)
	}
}

func TestParse(t *testing.T) {
	const ids = `# comment
10de  NVIDIA Corporation
	2330  GH100[H100 SXM5 80GB]
		10de 16c1  H100 SXM5 80GB
	bad!  skipped line
1af4  Red Hat, Inc.
	1041  Virtio 1.0 network device
zzzz  not a vendor
C 03  Display controller
	02  3D controller
		00  nothing
`
	tests := []struct {
		name string
		keep func(uint16) bool
		want map[string]string
	}{
		{"all vendors", nil, map[string]string{
			"vendor 10de": "NVIDIA Corporation",
			"device 2330": "GH100[H100 SXM5 80GB]",
			"sub 16c1":    "H100 SXM5 80GB",
			"device 1041": "Virtio 1.0 network device",
			"class":       "3D controller",
			"progif":      "nothing",
		}},
		{"only NVIDIA kept", func(v uint16) bool { return v == 0x10de }, map[string]string{
			"vendor 10de": "NVIDIA Corporation",
			"device 2330": "GH100[H100 SXM5 80GB]",
			"sub 16c1":    "H100 SXM5 80GB",
			"device 1041": "", // vendor name kept, devices dropped
			"class":       "3D controller",
			"progif":      "nothing",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Parse(strings.NewReader(ids), tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			got["vendor 10de"], _ = db.Vendor(0x10de)
			got["device 2330"], _ = db.Device(0x10de, 0x2330)
			got["sub 16c1"], _ = db.Subsystem(0x10de, 0x2330, 0x10de, 0x16c1)
			got["device 1041"], _ = db.Device(0x1af4, 0x1041)
			got["class"], _ = db.Class(0x030200)
			got["progif"], _ = db.ProgIf(0x030200)
			for k, w := range tt.want {
				if got[k] != w {
					t.Errorf("%s = %q, want %q", k, got[k], w)
				}
			}
			if _, ok := db.Vendor(0x7a7a); ok {
				t.Error("a line that is not hex became a vendor")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("10de  NVIDIA Corporation\n\t2330  GH100\n\t\t10de 16c1  H100\n")
	f.Add("C 03  Display\n\t02  3D\n\t\t00  x\n")
	f.Add("\t\t\t\n\tzz\nC \n\t\t1\n")
	f.Fuzz(func(t *testing.T, s string) {
		db, err := Parse(strings.NewReader(s), nil)
		if err != nil {
			return
		}
		db.Vendor(0x10de)
		db.Device(0x10de, 0x2330)
		db.Subsystem(0x10de, 0x2330, 0x10de, 0x16c1)
		db.Class(0x030200)
		db.ProgIf(0x030200)
	})
}

func BenchmarkEmbedded(b *testing.B) {
	for b.Loop() {
		if _, err := Embedded(nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVersion(t *testing.T) {
	if v := EmbeddedVersion(); v != "2026.07.31" {
		t.Errorf("EmbeddedVersion() = %q, want the header's 2026.07.31 (update pciids.go's comment with the file)", v)
	}
	for _, tc := range []struct{ data, want string }{
		{"#\n#\tVersion: 2025.01.20\n#\tDate:    2025-01-20 03:15:01\n#\n0001  SafeNet\n", "2025.01.20"},
		{"0001  SafeNet\n#\tVersion: 2025.01.20\n", ""}, // past the header
		{"", ""},
	} {
		if got := Version([]byte(tc.data)); got != tc.want {
			t.Errorf("Version(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}
