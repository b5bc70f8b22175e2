package sysimage

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestCheckVerity: the image the root hash was made for passes, with the
// data blocks the build counted; another build's image is a mismatch naming
// both hashes; inside an ISO the file's extent is found.
func TestCheckVerity(t *testing.T) {
	img, tree := fakeroot.VeritySquashfs(t, 3*4096+100, 1)
	other, otherTree := fakeroot.VeritySquashfs(t, 3*4096+100, 2)
	root, salt := hex.EncodeToString(tree.Root[:]), hex.EncodeToString(tree.Salt[:])
	blocks, err := CheckVerity(img, false, root, salt)
	if err != nil || blocks != tree.DataBlocks || blocks != 4 {
		t.Fatalf("CheckVerity = %d, %v; want %d (the build's data blocks)", blocks, err, tree.DataBlocks)
	}
	_, err = CheckVerity(other, false, root, salt)
	me, ok := errors.AsType[*VerityMismatchError](err)
	if !ok || me.Want != root || me.Got == root || !strings.Contains(err.Error(), "another build's image") {
		t.Fatalf("another image: err = %v, want a mismatch naming both root hashes", err)
	}
	// The same image with its own root hash but the wrong salt: a mismatch too.
	if _, err := CheckVerity(other, false, hex.EncodeToString(otherTree.Root[:]), salt); err == nil {
		t.Errorf("a salt not the image's: no error")
	}

	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	iso := isoImage(t, map[string]string{ISOImagePath: string(data), "etoile/other": "x"})
	if blocks, err := CheckVerity(iso, true, root, salt); err != nil || blocks != 4 {
		t.Errorf("in an ISO: CheckVerity = %d, %v", blocks, err)
	}
	if _, err := CheckVerity(iso, true, hex.EncodeToString(otherTree.Root[:]), hex.EncodeToString(otherTree.Salt[:])); err == nil {
		t.Errorf("in an ISO, another image's root hash: no error")
	}
	if _, err := CheckVerity(img, true, root, salt); !errors.Is(err, ErrNotISO9660) {
		t.Errorf("a partition's image read as an ISO: err = %v, want ErrNotISO9660", err)
	}
	for _, bad := range [][2]string{{"abc", salt}, {root, "zz"}} {
		if _, err := CheckVerity(img, false, bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), "etoile.verity=") {
			t.Errorf("root %q salt %q: err = %v, want one naming etoile.verity=", bad[0], bad[1], err)
		}
	}
}

// TestVerityDataBlocks: a superblock's bytes_used that leaves no room for
// the tree's block is refused, whatever it says: near 2^64 it once wrapped
// round and passed.
func TestVerityDataBlocks(t *testing.T) {
	sb := func(used uint64) []byte {
		b := make([]byte, 96)
		copy(b, "hsqs")
		binary.LittleEndian.PutUint64(b[40:], used)
		return b
	}
	const size = 1 << 30
	for _, c := range []struct {
		used uint64
		want uint64 // 0: an error
	}{
		{1, 1}, {4096, 1}, {4097, 2}, {size - 4096, size/4096 - 1},
		{0, 0}, {size - 4095, 0}, {size, 0}, {math.MaxUint64 - 100, 0}, {math.MaxUint64, 0}, {math.MaxInt64 + 1, 0},
	} {
		got, err := VerityDataBlocks(sb(c.used), size)
		if c.want == 0 && err == nil || c.want != 0 && (err != nil || got != c.want) {
			t.Errorf("bytes_used %d in %d bytes: %d, %v; want %d (0: an error)", c.used, size, got, err, c.want)
		}
	}
	if _, err := VerityDataBlocks([]byte("nope"+strings.Repeat("\x00", 92)), size); err == nil {
		t.Errorf("no squashfs magic: no error")
	}
}
