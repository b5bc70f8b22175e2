package media

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sgdiskProtectiveMBR returns the 0xEE record sgdisk writes on an empty
// disk of size bytes.
func sgdiskProtectiveMBR(t *testing.T, size int64) []byte {
	t.Helper()
	sgdisk := tool(t, "sgdisk", "gdisk")
	p := filepath.Join(t.TempDir(), "empty.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, sgdisk, "-o", p)
	b := make([]byte, 16)
	f, err = os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, 446); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProtectiveMBREntry: the 0xEE record follows UEFI §5.2.3 — start CHS
// 0x000200, end CHS the last sector's (255 heads, 63 sectors) or 0xFFFFFF,
// size capped at 0xFFFFFFFF — byte for byte as sgdisk writes it.
func TestProtectiveMBREntry(t *testing.T) {
	for _, size := range []int64{100 << 20, 600 << 20, 10 << 30} {
		got, want := protectiveMBREntry(size/512), sgdiskProtectiveMBR(t, size)
		if !bytes.Equal(got, want) {
			t.Errorf("%d-byte disk: protective MBR record %x, sgdisk writes %x", size, got, want)
		}
	}
	// Past 2 TiB the size saturates (go-diskfs truncated it to 32 bits).
	if got := protectiveMBREntry(3 << 40 / 512); !bytes.Equal(got, []byte{0, 0, 2, 0, 0xee, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}) {
		t.Errorf("3 TiB disk: protective MBR record %x", got)
	}
}

// TestWriteRawProtectiveMBR: the raw disk's protective MBR has the CHS
// values UEFI asks for (go-diskfs writes 0/0), as sgdisk would write them
// for a disk of its size, and sgdisk still finds nothing wrong.
func TestWriteRawProtectiveMBR(t *testing.T) {
	sgdisk := tool(t, "sgdisk", "gdisk")
	dst := filepath.Join(t.TempDir(), "etoile.raw")
	if err := WriteRaw(dst, rawOptions(t)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	got := b[446:462]
	if want := sgdiskProtectiveMBR(t, int64(len(b))); !bytes.Equal(got, want) {
		t.Errorf("protective MBR record %x, sgdisk writes %x for a disk of this size", got, want)
	}
	if got[1] != 0 || got[2] != 2 || got[3] != 0 {
		t.Errorf("protective MBR start CHS %x, want 000200", got[1:4])
	}
	if !bytes.Equal(b[462:510], make([]byte, 48)) || b[510] != 0x55 || b[511] != 0xaa {
		t.Errorf("protective MBR: other records or signature wrong: %x", b[462:512])
	}
	if out := run(t, sgdisk, "-v", dst); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
}

// TestWriteRawESPHiddenSectors: the ESP's boot sector and its backup
// (sector 6) give the partition's start LBA as hidden sectors, as mkfs.vfat
// writes on a partition (go-diskfs writes 0); fsck.vfat finds nothing to
// fix; a whole-device FAT image keeps 0.
func TestWriteRawESPHiddenSectors(t *testing.T) {
	fsck := tool(t, "fsck.vfat", "dosfstools")
	dst := filepath.Join(t.TempDir(), "etoile.raw")
	if err := WriteRaw(dst, rawOptions(t)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	esp := b[1<<20:]
	backup := int(binary.LittleEndian.Uint16(esp[50:]))
	if backup != 6 {
		t.Fatalf("backup boot sector at %d, want 6", backup)
	}
	for _, s := range []int{0, backup} {
		if got := binary.LittleEndian.Uint32(esp[s*512+0x1c:]); got != 2048 {
			t.Errorf("boot sector %d: hidden sectors %d, want the ESP's start LBA 2048", s, got)
		}
	}
	if !bytes.Equal(esp[:512], esp[backup*512:backup*512+512]) {
		t.Errorf("the backup boot sector differs from the boot sector")
	}
	img := filepath.Join(t.TempDir(), "esp.img")
	extract(t, dst, img, 1<<20, 0)
	out, err := execEnv(os.Environ(), fsck, "-n", "-v", img).CombinedOutput()
	if err != nil || strings.Contains(string(out), "differ") || strings.Contains(string(out), "Leaving filesystem unchanged") {
		t.Errorf("fsck.vfat -n on the ESP: %v\n%s", err, out)
	}

	fat := filepath.Join(t.TempDir(), "efiboot.img")
	if err := WriteFAT(fat, MinFATSize, espFiles(t), FATOptions{Label: "ETOILE-EFI", VolumeID: 1, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	fb, err := os.ReadFile(fat)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []int{0, 6} {
		if got := binary.LittleEndian.Uint32(fb[s*512+0x1c:]); got != 0 {
			t.Errorf("whole-device FAT image, boot sector %d: hidden sectors %d, want 0", s, got)
		}
	}
}
