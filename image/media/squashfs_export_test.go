package media

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// checkSquashfsExportTable reads the export table and checks that entry i
// points at the inode numbered i+1 (as the kernel's NFS export code reads
// it: block << 16 | offset).
func checkSquashfsExportTable(t *testing.T, img string) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	le16, le32, le64 := binary.LittleEndian.Uint16, binary.LittleEndian.Uint32, binary.LittleEndian.Uint64
	inodes := int(le32(b[4:]))
	inodeStart, export := le64(b[64:]), le64(b[88:])
	if export == ^uint64(0) {
		t.Fatal("image has no export table")
	}
	if export+uint64(8*((inodes+1023)/1024)) > uint64(len(b)) {
		t.Fatalf("export table index at %d runs past the image", export)
	}
	// metadata returns n bytes of the table at start from its logical
	// offset (block's position, offset), following blocks.
	metadata := func(start, block uint64, offset, n int) []byte {
		var out []byte
		pos := start + block
		for len(out) < offset+n {
			if pos+2 > uint64(len(b)) || pos+2+uint64(le16(b[pos:])&0x7fff) > uint64(len(b)) {
				t.Fatalf("metadata block at %d (table at %d, block %d, offset %d) lies past the image", pos, start, block, offset)
			}
			h := le16(b[pos:])
			if h&0x8000 == 0 || h&0x7fff > 8192 {
				t.Fatalf("metadata block at %d: header %#x", pos, h)
			}
			out = append(out, b[pos+2:pos+2+uint64(h&0x7fff)]...)
			pos += 2 + uint64(h&0x7fff)
		}
		return out[offset : offset+n]
	}
	for i := 0; i < inodes; i++ {
		blockAt := le64(b[export+uint64(8*(i/1024)):])
		ref := le64(metadata(blockAt, 0, 8*(i%1024), 8))
		header := metadata(inodeStart, ref>>16, int(ref&0xffff), 16)
		if got := int(le32(header[12:])); got != i+1 {
			t.Errorf("export table entry %d (%#x) points at inode %d", i, ref, got)
			return
		}
	}
}

// checkOpenByHandle opens every entry of the image by its file handle in a
// fresh mount, as an NFS server does: the kernel then finds the inode
// through the export table, and must find the same entry.
func checkOpenByHandle(t *testing.T, img string) {
	t.Helper()
	type entry struct {
		path   string
		handle unix.FileHandle
		st     unix.Stat_t
	}
	var entries []entry
	first, unmount := mountSquashfs(t, img)
	err := filepath.WalkDir(first, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, p, 0)
		if err != nil {
			return err
		}
		e := entry{path: p, handle: h}
		if err := unix.Lstat(p, &e.st); err != nil {
			return err
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A second mount, once the first is gone, has its own superblock (mount
	// would share the loop device of a mounted image): no inode is cached.
	unmount()
	second, _ := mountSquashfs(t, img)
	root, err := unix.Open(second, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	for _, e := range entries {
		fd, err := unix.OpenByHandleAt(root, e.handle, unix.O_PATH|unix.O_NOFOLLOW)
		if err != nil {
			t.Errorf("open %s by its handle: %v", e.path, err)
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		if st.Ino != e.st.Ino || st.Mode != e.st.Mode || st.Size != e.st.Size || st.Nlink != e.st.Nlink {
			t.Errorf("%s by its handle: inode %d mode %o size %d links %d, want inode %d mode %o size %d links %d",
				e.path, st.Ino, st.Mode, st.Size, st.Nlink, e.st.Ino, e.st.Mode, e.st.Size, e.st.Nlink)
		}
	}
}

// TestWriteSquashfsExportTable checks the export table (NFS file handles):
// go-diskfs v1.9.4 writes each entry's offset where readers take it for the
// high bits of the block, so a handle opened the wrong inode.
func TestWriteSquashfsExportTable(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dst := filepath.Join(t.TempDir(), "system.sqfs")
	if err := WriteSquashfs(dst, squashfsSource(t), SquashfsOptions{Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	checkSquashfsExportTable(t, dst)
	checkOpenByHandle(t, dst)
}
