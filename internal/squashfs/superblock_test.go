package squashfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestParseMksquashfs reads the superblock of an image mksquashfs (a
// writer other than ours) made: version 4, its compression, its inode
// count, its length (the file is that, padded to 4 KiB), its tables in
// order.
func TestParseMksquashfs(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatal("mksquashfs is missing: install squashfs-tools (make test-deps does)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for _, f := range []string{"a", "b/c", "b/d"} {
		p := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "x.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-comp", "xz", "-noappend", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	// Five inodes: the root, a, b, b/c, b/d.
	if sb.Major != 4 || sb.Compression != XZ || sb.Inodes != 5 || sb.BlockSize != 128<<10 {
		t.Errorf("superblock %+v: want version 4, xz, 5 inodes, 128 KiB blocks", sb)
	}
	if sb.BytesUsed == 0 || (sb.BytesUsed+4095)/4096*4096 != uint64(len(b)) {
		t.Errorf("bytes_used %d in a file of %d bytes (padded to 4 KiB)", sb.BytesUsed, len(b))
	}
	if sb.InodeTableStart < SuperblockLen || sb.DirTableStart <= sb.InodeTableStart || sb.DirTableStart >= sb.BytesUsed {
		t.Errorf("tables at %d (inodes) and %d (folders) of %d bytes", sb.InodeTableStart, sb.DirTableStart, sb.BytesUsed)
	}
	for _, bad := range [][]byte{b[:SuperblockLen-1], append([]byte("sqsh"), b[4:]...)} {
		if _, err := Parse(bad); !errors.Is(err, ErrNoSuperblock) {
			t.Errorf("%d bytes beginning %q: err = %v, want ErrNoSuperblock", len(bad), bad[:4], err)
		}
	}
}
