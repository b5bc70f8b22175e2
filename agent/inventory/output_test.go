package inventory

import (
	"bytes"
	"strings"
	"testing"
)

// TestWriteTableDiskWWN: the disks table shows each disk's WWN (what
// install.disk can match, with path, model and serial), "-" for a disk
// without one, in a column aligned under its header.
func TestWriteTableDiskWWN(t *testing.T) {
	inv := &Inventory{Disks: []Disk{
		{Path: "/dev/sda", SizeBytes: 480 << 30, Transport: "sata", Model: "SAMSUNG MZ7L3480", Serial: "S6KMNX0T123456",
			WWN: "naa.5002538f4312a3b4", Partitions: []Partition{{Path: "/dev/sda1", SizeBytes: 1 << 30, PartLabel: "ESP"}}},
		{Path: "/dev/vda", SizeBytes: 20 << 30, Transport: "virtio"},
	}}
	var buf bytes.Buffer
	if err := WriteTable(&buf, inv); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		for _, k := range []string{"PATH ", "/dev/sda ", "/dev/vda ", "  /dev/sda1 "} {
			if strings.HasPrefix(l, k) {
				lines[k] = l
			}
		}
	}
	header, sda, vda := lines["PATH "], lines["/dev/sda "], lines["/dev/vda "]
	col := strings.Index(header, "WWN")
	if col < 0 || !strings.HasSuffix(header, "WWN") {
		t.Fatalf("disks header lacks a WWN column:\n%s", out)
	}
	if got := strings.Index(sda, "naa.5002538f4312a3b4"); got != col {
		t.Errorf("the WWN of /dev/sda is at column %d, want %d under its header:\n%s", got, col, out)
	}
	if len(vda) <= col || strings.TrimSpace(vda[col:]) != "-" {
		t.Errorf("/dev/vda, without a WWN, shows %q under WWN, want -:\n%s", vda[min(col, len(vda)):], out)
	}
	if part := lines["  /dev/sda1 "]; strings.Contains(part, "naa.") {
		t.Errorf("a partition row repeats its disk's WWN: %q", part)
	}
}
