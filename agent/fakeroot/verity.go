package fakeroot

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/etoile-os/etoile/image/verity"
)

// VeritySquashfs writes a stand-in system image of size bytes (a squashfs
// superblock's magic and bytes_used, the rest fill: the agent reads no other
// field) with its dm-verity hash tree appended by the build's writer, and
// returns its path and tree (Root, Salt, DataBlocks, Cmdline).
func VeritySquashfs(t testing.TB, size int, fill byte) (string, verity.Tree) {
	t.Helper()
	b := bytes.Repeat([]byte{fill}, size)
	copy(b, "hsqs")
	binary.LittleEndian.PutUint64(b[40:], uint64(size))
	p := filepath.Join(t.TempDir(), "system.sqfs")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tree, err := verity.Append(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, tree
}
