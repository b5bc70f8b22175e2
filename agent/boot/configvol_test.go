package boot

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFindVolumeMountsWhatItIs: the ETOILE-CFG volume is told from its
// first bytes and mounted with the filesystem they show (no FAT attempt,
// and no FAT modules loaded, for an ISO9660 volume); other devices are not
// mounted, and a labelled device that does not mount is skipped.
func TestFindVolumeMountsWhatItIs(t *testing.T) {
	dir := t.TempDir()
	iso := make([]byte, 64*1024) // the primary volume descriptor of an ISO9660 volume
	iso[32768] = 1
	copy(iso[32769:], "CD001")
	copy(iso[32768+40:], "ETOILE-CFG"+strings.Repeat(" ", 22))
	other := make([]byte, 64*1024)
	for name, data := range map[string][]byte{"vda": other, "vdb": iso, "vdc": iso} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	devs := []string{filepath.Join(dir, "vda"), filepath.Join(dir, "vdb"), filepath.Join(dir, "vdc")}
	var mounts []string
	dev, err := findVolume(devs, "ETOILE-CFG", func(dev, fstype string) error {
		mounts = append(mounts, filepath.Base(dev)+" "+strings.Join(configFSTypes(fstype), ","))
		if filepath.Base(dev) == "vdb" {
			return errors.New("bad superblock")
		}
		return nil
	})
	if err != nil || filepath.Base(dev) != "vdc" {
		t.Fatalf("findVolume = %q, %v; want vdc", dev, err)
	}
	if want := []string{"vdb iso9660", "vdc iso9660"}; !slices.Equal(mounts, want) {
		t.Errorf("mounts %q, want %q", mounts, want)
	}
	// Only the labelled one that failed: its error, and no volume.
	dev, err = findVolume(devs[:2], "ETOILE-CFG", func(string, string) error { return errors.New("bad superblock") })
	if dev != "" || err == nil || !strings.Contains(err.Error(), "vdb: bad superblock") {
		t.Errorf("findVolume = %q, %v; want none and vdb's error", dev, err)
	}
	if got := configFSTypes(""); !slices.Equal(got, []string{"vfat", "iso9660"}) {
		t.Errorf("an unrecognised volume is tried as %q", got)
	}
}
