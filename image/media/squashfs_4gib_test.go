package media

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// craftedLargeSquashfs writes, sparsely, the superblock and inode table
// go-diskfs v1.9.4 would write for a root folder and files of the given
// sizes (128 KiB blocks, uncompressed, tails in fragments): each file's data
// follows the previous one's from byte 96, and a basic inode keeps the low
// 32 bits of its start. The data itself is a hole; fixSquashfsInodes reads
// only the inode table.
func craftedLargeSquashfs(t *testing.T, sizes ...uint64) *os.File {
	t.Helper()
	le := binary.LittleEndian
	count := uint32(1 + len(sizes))
	header := func(b []byte, typ uint16, perm uint16, number uint32) []byte {
		b = le.AppendUint16(b, typ)
		b = le.AppendUint16(b, perm)
		b = le.AppendUint32(b, 0) // uid, gid indices
		b = le.AppendUint32(b, 0) // mtime
		return le.AppendUint32(b, number)
	}
	table := header(nil, 1, 0o755, 1)
	table = le.AppendUint32(table, 0)       // start block
	table = le.AppendUint32(table, 2)       // links
	table = le.AppendUint16(table, 3)       // listing size
	table = le.AppendUint16(table, 0)       // offset
	table = le.AppendUint32(table, count+1) // parent
	data := uint64(sqSuperblockLen)
	for i, size := range sizes {
		blocks := size / SquashfsBlockSize
		if size > 1<<32-1 {
			table = header(table, 9, 0o644, uint32(i+2))
			table = le.AppendUint64(table, data)
			table = le.AppendUint64(table, size)
			table = le.AppendUint64(table, 0) // sparse
			table = le.AppendUint32(table, 1) // links
			table = le.AppendUint32(table, uint32(i))
			table = le.AppendUint32(table, 0)          // fragment offset
			table = le.AppendUint32(table, 0xffffffff) // xattrs
		} else {
			table = header(table, 2, 0o644, uint32(i+2))
			table = le.AppendUint32(table, uint32(data))
			table = le.AppendUint32(table, uint32(i)) // fragment
			table = le.AppendUint32(table, 0)
			table = le.AppendUint32(table, uint32(size))
		}
		for range blocks {
			table = le.AppendUint32(table, 1<<24|SquashfsBlockSize)
		}
		data += blocks * SquashfsBlockSize
	}
	inodes := cutSquashfsMetadata(table)
	inodeStart := int64(roundUp(int64(data), 4096))
	dirStart := inodeStart + int64(len(inodes))
	sb := make([]byte, sqSuperblockLen)
	copy(sb, "hsqs")
	le.PutUint32(sb[4:], count)
	le.PutUint32(sb[12:], SquashfsBlockSize)
	le.PutUint16(sb[20:], 1)                           // gzip
	le.PutUint16(sb[22:], 17)                          // block log
	le.PutUint16(sb[24:], 0x0001|0x0002|0x0008|0x0200) // nothing compressed, no xattrs
	le.PutUint16(sb[28:], 4)
	le.PutUint64(sb[40:], uint64(dirStart+16))
	le.PutUint64(sb[64:], uint64(inodeStart))
	le.PutUint64(sb[72:], uint64(dirStart))
	f, err := os.Create(filepath.Join(t.TempDir(), "large.sqfs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteAt(sb, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(inodes, inodeStart); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(dirStart + 16); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFixSquashfsInodesDataPast4GiB: go-diskfs v1.9.4 keeps 32 bits of a
// basic file inode's data position, so in an image over 4 GiB a file whose
// data starts past 4 GiB reads back as other bytes. That must be refused,
// naming the file and the image size; a file that starts before 4 GiB, or
// reads no blocks, is fine. (A real image over 4 GiB takes 8 GiB of disk
// writes to make; go-diskfs's layout is crafted here, sparsely.)
func TestFixSquashfsInodesDataPast4GiB(t *testing.T) {
	const gib = 1 << 30
	info := func(n int) mirrorInfo {
		m := mirrorInfo{paths: []string{"/"}}
		for i := range n {
			m.paths = append(m.paths, "/f"+itoa(i))
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		sizes []uint64
		want  string // "" for no error
	}{
		{"ends past 4 GiB", []uint64{3 * gib, 1*gib + 12345}, ""},
		{"starts past 4 GiB", []uint64{3 * gib, 1*gib + 12345, 200 << 10}, `"/f2" would start at byte 4294967392, past 4 GiB`},
		{"after a file over 4 GiB", []uint64{5 * gib, SquashfsBlockSize}, `"/f1" would start at byte 5368709216`},
		{"no blocks past 4 GiB", []uint64{3 * gib, 1*gib + 12345, 100 << 10, 0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := craftedLargeSquashfs(t, tc.sizes...)
			err := fixSquashfsInodes(f, info(len(tc.sizes)))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range []string{tc.want, "the system image is ", "MiB)", "must stay under 4 GiB"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}
