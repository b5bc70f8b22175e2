package media

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func rawOptions(t *testing.T) RawOptions {
	t.Helper()
	sys := filepath.Join(t.TempDir(), "system.sqfs")
	writeFile(t, sys, randomBytes(5<<20+99, 11), 0o644)
	return RawOptions{
		ESPLabel: "ETOILE-ESP", ESPFiles: espFiles(t), ESPVolumeID: 0xe701e,
		Partitions: []Partition{
			{Label: "ETOILE-A", Source: sys},
			{Label: "ETOILE-B", Size: 8 << 20},
		},
		DiskGUID: "6A1C3B2E-4C0D-4E5F-9A8B-7C6D5E4F3A2B",
		Epoch:    1700000000,
	}
}

func TestWriteRaw(t *testing.T) {
	sgdisk := tool(t, "sgdisk", "gdisk")
	fsck := tool(t, "fsck.vfat", "dosfstools")
	opts := rawOptions(t)
	dst := filepath.Join(t.TempDir(), "etoile.raw")
	if err := WriteRaw(dst, opts); err != nil {
		t.Fatal(err)
	}
	if out := run(t, sgdisk, "-v", dst); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	p := run(t, sgdisk, "-p", dst)
	for _, want := range []string{
		"Disk identifier (GUID): 6A1C3B2E-4C0D-4E5F-9A8B-7C6D5E4F3A2B",
		"EF00  ETOILE-ESP", "8300  ETOILE-A", "8300  ETOILE-B",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("sgdisk -p lacks %q:\n%s", want, p)
		}
	}
	// Every partition starts on a 1 MiB boundary (2048 sectors).
	for i := 1; i <= 3; i++ {
		info := run(t, sgdisk, "-i", itoa(i), dst)
		var first int64
		for _, l := range strings.Split(info, "\n") {
			if strings.HasPrefix(l, "First sector: ") {
				first, _ = parseInt(strings.Fields(l)[2])
			}
		}
		if first == 0 || first%2048 != 0 {
			t.Errorf("partition %d starts at sector %d, not on a 1 MiB boundary", i, first)
		}
	}
	// The ESP: fsck clean, files identical.
	esp := filepath.Join(t.TempDir(), "esp.img")
	extract(t, dst, esp, 1<<20, 0)
	if out, err := execEnv(os.Environ(), fsck, "-n", esp).CombinedOutput(); err != nil || strings.Contains(string(out), "Leaving filesystem unchanged") {
		t.Errorf("fsck.vfat -n on the ESP: %v\n%s", err, out)
	}
	checkFATContents(t, dst, 1<<20, opts.ESPFiles, "ETOILE-ESP", 0xe701e)
	// Slot A holds the system image byte for byte at its start.
	info := run(t, sgdisk, "-i", "2", dst)
	var first int64
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "First sector: ") {
			first, _ = parseInt(strings.Fields(l)[2])
		}
	}
	want, _ := os.ReadFile(opts.Partitions[0].Source)
	got := filepath.Join(t.TempDir(), "a")
	extract(t, dst, got, first*512, int64(len(want)))
	gotb, _ := os.ReadFile(got)
	if string(gotb) != string(want) {
		t.Errorf("partition ETOILE-A does not hold the system image")
	}
}

func TestWriteRawReproducible(t *testing.T) {
	opts := rawOptions(t)
	opts.DiskGUID = "" // derived
	a := filepath.Join(t.TempDir(), "a.raw")
	b := filepath.Join(t.TempDir(), "b.raw")
	if err := WriteRaw(a, opts); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	if err := WriteRaw(b, opts); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, a, b)
}

func TestWriteRawBadInput(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	writeFile(t, big, make([]byte, 3<<20), 0o644)
	tests := []struct {
		name string
		opts RawOptions
		want string
	}{
		{"no ESP label", RawOptions{}, "ESPLabel"},
		{"bad GUID", RawOptions{ESPLabel: "E", DiskGUID: "zz"}, "DiskGUID"},
		{"source too big", RawOptions{ESPLabel: "E", Partitions: []Partition{{Label: "A", Source: big, Size: 1 << 20}}}, "larger than Size"},
		{"missing source", RawOptions{ESPLabel: "E", Partitions: []Partition{{Label: "A", Source: filepath.Join(dir, "nope")}}}, "nope"},
		{"no label", RawOptions{ESPLabel: "E", Partitions: []Partition{{Size: 1 << 20}}}, "Label"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(dir, "x.raw")
			err := WriteRaw(dst, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("%s exists after a failed write", dst)
			}
		})
	}
}
