package inventory

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
)

// dirEntry is a 32-byte directory entry: an 8.3 name (11 bytes, padded) and attributes.
func dirEntry(name string, attr byte) []byte {
	e := make([]byte, 32)
	copy(e, name+strings.Repeat(" ", 11-len(name)))
	e[11] = attr
	return e
}

// fatVolume writes, to a sparse file in t.TempDir(), a FAT volume as mkfs.fat lays it out
// (FAT16: 4 sectors per cluster, 256-sector FATs, 512 root entries; FAT32: 8 sectors per
// cluster, 1024-sector FATs, root directory at cluster 2): its root directory lies past the
// first 64 KiB. The boot sector carries bootLabel, the root directory the entries given.
func fatVolume(t *testing.T, fat32 bool, bootLabel string, root ...[]byte) string {
	t.Helper()
	b := make([]byte, 512)
	copy(b, []byte{0xEB, 0x3C, 0x90})
	copy(b[3:], "mkfs.fat")
	binary.LittleEndian.PutUint16(b[11:], 512) // bytes per sector
	b[16] = 2                                  // FATs
	b[21] = 0xF8
	var rootOff int64
	label := []byte(bootLabel + strings.Repeat(" ", 11-len(bootLabel)))
	if fat32 {
		b[13] = 8
		binary.LittleEndian.PutUint16(b[14:], 32)
		binary.LittleEndian.PutUint32(b[32:], 1<<20) // sectors
		binary.LittleEndian.PutUint32(b[36:], 1024)  // sectors per FAT
		binary.LittleEndian.PutUint32(b[44:], 2)     // root directory's cluster
		b[66] = 0x29
		copy(b[71:82], label)
		copy(b[82:], "FAT32   ")
		rootOff = (32 + 2*1024) * 512
	} else {
		b[13] = 4
		binary.LittleEndian.PutUint16(b[14:], 4)
		binary.LittleEndian.PutUint16(b[17:], 512) // root entries
		binary.LittleEndian.PutUint32(b[32:], 1<<18)
		binary.LittleEndian.PutUint16(b[22:], 256)
		b[38] = 0x29
		copy(b[43:54], label)
		copy(b[54:], "FAT16   ")
		rootOff = (4 + 2*256) * 512
	}
	b[510], b[511] = 0x55, 0xAA
	p := filepath.Join(t.TempDir(), "vol")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	for i, e := range root {
		if _, err := f.WriteAt(e, rootOff+int64(32*i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(rootOff + 1<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

// exfatVolume writes an exFAT volume whose root directory (cluster 4, past the first
// 64 KiB) has a volume label entry for label, none when it is "".
func exfatVolume(t *testing.T, label string) string {
	t.Helper()
	b := make([]byte, 512)
	copy(b, []byte{0xEB, 0x76, 0x90})
	copy(b[3:], "EXFAT   ")
	binary.LittleEndian.PutUint32(b[80:], 128) // FAT offset
	binary.LittleEndian.PutUint32(b[84:], 64)  // FAT length
	binary.LittleEndian.PutUint32(b[88:], 256) // cluster heap offset, in sectors
	binary.LittleEndian.PutUint32(b[96:], 4)   // root directory's cluster
	b[108], b[109] = 9, 3                      // 512-byte sectors, 8 per cluster
	b[510], b[511] = 0x55, 0xAA
	rootOff := int64(256+2*8) * 512
	var root []byte
	// An allocation bitmap entry, then the label, as mkfs.exfat writes them.
	bitmap := make([]byte, 32)
	bitmap[0] = 0x81
	root = append(root, bitmap...)
	if label != "" {
		e := make([]byte, 32)
		e[0] = 0x83
		u := utf16.Encode([]rune(label))
		e[1] = byte(len(u))
		for i, c := range u {
			binary.LittleEndian.PutUint16(e[2+2*i:], c)
		}
		root = append(root, e...)
	}
	p := filepath.Join(t.TempDir(), "vol")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(root, rootOff); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(rootOff + 1<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFATLabelOfTheRootDirectory: a FAT volume's label is its root directory's, as blkid's
// LABEL and Windows read it. A stick renamed ETOILE-CFG in Windows's Explorer (which writes
// only the root directory's entry, leaving the boot sector's NO NAME) is found as the config
// volume; one renamed away from it, or whose label Windows removed (its entry deleted, the
// boot sector left as it was), is not. When the root directory does not tell (its first
// cluster full of files without the entry) the boot sector's label is taken. An exFAT
// volume is told as exfat, with its label, for the config volume's search to say it does
// not read it.
func TestFATLabelOfTheRootDirectory(t *testing.T) {
	file := dirEntry("CONFIG  YAM", 0x20)
	lfn := dirEntry("Aconfig", 0x0F)
	deleted := dirEntry("\xe5LD-LABEL", 0x08)
	var fullCluster [][]byte // 8 sectors of 16 entries
	for range 8 * 16 {
		fullCluster = append(fullCluster, file)
	}
	tests := []struct {
		name, dev           string
		wantType, wantLabel string
	}{
		{"FAT32 renamed ETOILE-CFG by Windows", fatVolume(t, true, "NO NAME", lfn, file, dirEntry("ETOILE-CFG", 0x08)), "vfat", "ETOILE-CFG"},
		{"FAT16 renamed ETOILE-CFG by Windows", fatVolume(t, false, "NO NAME", file, dirEntry("ETOILE-CFG", 0x28)), "vfat", "ETOILE-CFG"},
		{"FAT16 renamed away from ETOILE-CFG", fatVolume(t, false, "ETOILE-CFG", dirEntry("PHOTOS", 0x08), file), "vfat", "PHOTOS"},
		{"FAT32 whose label Windows removed", fatVolume(t, true, "ETOILE-CFG", deleted, lfn, file), "vfat", ""},
		{"FAT16 whose label Windows removed", fatVolume(t, false, "ETOILE-CFG", file, deleted), "vfat", ""},
		{"FAT32 without any label", fatVolume(t, true, "NO NAME", file), "vfat", ""},
		{"FAT32, a first cluster of files only", fatVolume(t, true, "ETOILE-CFG", fullCluster...), "vfat", "ETOILE-CFG"},
		{"exFAT", exfatVolume(t, "ETOILE-CFG"), "exfat", "ETOILE-CFG"},
		{"exFAT without a label", exfatVolume(t, ""), "exfat", ""},
	}
	for _, tt := range tests {
		if fstype, label := ProbeDevice(tt.dev); fstype != tt.wantType || label != tt.wantLabel {
			t.Errorf("%s: ProbeDevice = %q, %q; want %q, %q", tt.name, fstype, label, tt.wantType, tt.wantLabel)
		}
	}
}
