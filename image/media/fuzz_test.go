package media

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzRepairers feeds arbitrary bytes to the functions that parse written
// images in place: they must return errors, never panic or run away.
func FuzzRepairers(f *testing.F) {
	dir := f.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("hello"), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("d/f", filepath.Join(src, "l")); err != nil {
		f.Fatal(err)
	}
	sq := filepath.Join(dir, "s.sqfs")
	if err := WriteSquashfs(sq, src, SquashfsOptions{}); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(sq)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(make([]byte, 40000))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "img")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		_ = fixSquashfsInodes(h, mirrorInfo{targets: []string{"d/f"}})
		_ = rechunkSquashfsDirectories(h)
		_ = normalizeFAT(h, 0, FATOptions{})
		_ = normalizeISO(h, 0)
		_, _, _ = elToritoImages(h)
		_ = checkSquashfsDirectoryGroups(data)
	})
}
