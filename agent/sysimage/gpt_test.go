package sysimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestPartUUIDsMatchSgdisk reads a GPT that gdisk's sgdisk wrote.
func TestPartUUIDsMatchSgdisk(t *testing.T) {
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk is needed: apt-get install -y gdisk (make test installs it)")
	}
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 8<<20); err != nil {
		t.Fatal(err)
	}
	want := []string{"0f6a1c2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "9e8d7c6b-5a49-4837-a625-14131211100f"}
	out, err := exec.Command("sgdisk", "-n", "1:2048:4095", "-c", "1:ETOILE-ESP", "-u", "1:"+want[0],
		"-n", "2:4096:8191", "-c", "2:ETOILE-A", "-u", "2:"+want[1], disk).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	got, err := PartUUIDs(disk)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("PartUUIDs = %q, %v; want %q", got, err, want)
	}
	// A disk without a GPT: nothing, no error.
	blank := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(blank, make([]byte, 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := PartUUIDs(blank); err != nil || len(got) != 0 {
		t.Errorf("blank disk: %q, %v", got, err)
	}
}

func TestDiskOf(t *testing.T) {
	for part, disk := range map[string]string{"sda2": "sda", "vdb1": "vdb", "nvme0n1p2": "nvme0n1", "mmcblk0p1": "mmcblk0"} {
		if got := diskOf(t.TempDir(), part); got != disk {
			t.Errorf("diskOf(%s) = %s, want %s", part, got, disk)
		}
	}
}
