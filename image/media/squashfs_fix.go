package media

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/etoile-os/etoile/internal/squashfs"
)

const (
	sqMetadataSize  = 8192
	sqInvalidFrag   = 0xffffffff
	sqUncompressed  = 0x8000
	sqSuperblockLen = squashfs.SuperblockLen
)

// fixSquashfsInodes repairs two defects of go-diskfs v1.9.4's squashfs
// writer, in place, in the (uncompressed) inode table:
//
//   - A directory inode's start block must be the byte offset, from the start
//     of the directory table, of the metadata block holding its listing.
//     go-diskfs stores the block's index (0, 1, 2…) instead, so every
//     directory whose listing begins after the first 8 KiB of the directory
//     table is unreadable ("failed to read directory"). Uncompressed metadata
//     blocks are 2+8192 bytes each, so index i becomes i*8194.
//   - Link counts: go-diskfs v1.9.4 looks for *unix.Stat_t where os.Lstat
//     gives *syscall.Stat_t, so every count is 0; they are set from the
//     source tree (1, or 2 plus the subfolders for a folder).
//   - Setuid, setgid and sticky bits (go-diskfs keeps nine bits of a
//     mode) are set back from the source tree, e.g. /tmp's 01777.
//   - Symlinks were staged with placeholder targets of the right length
//     (see mirrorTree); the real targets, in inode order, are written over them.
//   - A file whose size is a multiple of the block size (empty files
//     included) has no tail fragment, but go-diskfs leaves its fragment index
//     at 0 rather than 0xffffffff; the kernel then looks fragment 0 up and an
//     image without fragments fails with I/O errors. It is set to 0xffffffff,
//     as mksquashfs writes it.
//
// Both need only the inode table to be uncompressed, which WriteSquashfs
// guarantees.
func fixSquashfsInodes(f *os.File, info mirrorInfo) error {
	targets := info.targets
	sb := make([]byte, sqSuperblockLen)
	if _, err := f.ReadAt(sb, 0); err != nil {
		return fmt.Errorf("read superblock: %w", err)
	}
	super, err := squashfs.Parse(sb)
	if err != nil {
		return fmt.Errorf("not a squashfs superblock (magic %q)", sb[0:4])
	}
	count := super.Inodes
	blockSize := uint64(super.BlockSize)
	inodeStart := int64(super.InodeTableStart)
	dirStart := int64(super.DirTableStart)
	if super.Flags&squashfs.FlagNoInodeCompression == 0 {
		return fmt.Errorf("inode table is compressed: cannot patch it in place")
	}
	if blockSize < 4096 || blockSize > 1<<20 || blockSize&(blockSize-1) != 0 {
		return fmt.Errorf("block size %d is not a power of two from 4 KiB to 1 MiB", blockSize)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if inodeStart < sqSuperblockLen || dirStart <= inodeStart || dirStart > st.Size() {
		return fmt.Errorf("inode table bounds %d..%d are not plausible", inodeStart, dirStart)
	}
	raw := make([]byte, dirStart-inodeStart)
	if _, err := f.ReadAt(raw, inodeStart); err != nil {
		return fmt.Errorf("read inode table: %w", err)
	}
	// Join the metadata blocks into one logical buffer, remembering where
	// each block's payload lives in raw.
	var logical []byte
	var payloads [][2]int
	for pos := 0; pos < len(raw); {
		if pos+2 > len(raw) {
			return fmt.Errorf("inode table truncated at byte %d", pos)
		}
		h := binary.LittleEndian.Uint16(raw[pos : pos+2])
		if h&sqUncompressed == 0 {
			return fmt.Errorf("inode metadata block at byte %d is compressed", pos)
		}
		n := int(h &^ sqUncompressed)
		if pos+2+n > len(raw) {
			return fmt.Errorf("inode metadata block at byte %d overruns the table", pos)
		}
		payloads = append(payloads, [2]int{pos + 2, n})
		logical = append(logical, raw[pos+2:pos+2+n]...)
		pos += 2 + n
	}
	need := func(off, n int) error {
		if off+n > len(logical) {
			return fmt.Errorf("inode at logical byte %d runs past the inode table", off)
		}
		return nil
	}
	if info.links != nil && len(info.links) != int(count) {
		return fmt.Errorf("image has %d inodes but the source tree %d entries", count, len(info.links))
	}
	le32 := binary.LittleEndian.Uint32
	off := 0
	for i := uint32(0); i < count; i++ {
		if err := need(off, 16); err != nil {
			return err
		}
		typ := binary.LittleEndian.Uint16(logical[off : off+2])
		if int(i) < len(info.special) && info.special[i] != 0 {
			// The header's permissions (after the type): the bits go-diskfs dropped.
			perm := binary.LittleEndian.Uint16(logical[off+2 : off+4])
			binary.LittleEndian.PutUint16(logical[off+2:], perm|info.special[i])
		}
		body := off + 16
		var size int
		setLinks := func(at int) {
			if int(i) < len(info.links) && at+4 <= len(logical) {
				binary.LittleEndian.PutUint32(logical[at:], info.links[i])
			}
		}
		switch typ {
		case 1: // basic directory: start block at body+0
			if err := need(body, 16); err != nil {
				return err
			}
			setLinks(body + 4)
			binary.LittleEndian.PutUint32(logical[body:], le32(logical[body:])*(sqMetadataSize+2))
			size = 16
		case 8: // extended directory: start block at body+8, then index entries
			if err := need(body, 24); err != nil {
				return err
			}
			binary.LittleEndian.PutUint32(logical[body+8:], le32(logical[body+8:])*(sqMetadataSize+2))
			setLinks(body)
			idx := int(binary.LittleEndian.Uint16(logical[body+16:]))
			size = 24
			for j := 0; j < idx; j++ {
				if err := need(body+size, 12); err != nil {
					return err
				}
				size += 12 + int(min(le32(logical[body+size+8:]), uint32(len(logical)))) + 1
			}
		case 2: // basic file
			if err := need(body, 16); err != nil {
				return err
			}
			fileSize := uint64(le32(logical[body+12:]))
			size = 16 + 4*fileBlocks(fileSize, blockSize, le32(logical[body+4:]), len(logical))
			if fileSize%blockSize == 0 {
				binary.LittleEndian.PutUint32(logical[body+4:], sqInvalidFrag)
				binary.LittleEndian.PutUint32(logical[body+8:], 0)
			}
		case 9: // extended file
			if err := need(body, 40); err != nil {
				return err
			}
			fileSize := binary.LittleEndian.Uint64(logical[body+8:])
			setLinks(body + 24)
			size = 40 + 4*fileBlocks(fileSize, blockSize, le32(logical[body+28:]), len(logical))
			if fileSize%blockSize == 0 {
				binary.LittleEndian.PutUint32(logical[body+28:], sqInvalidFrag)
				binary.LittleEndian.PutUint32(logical[body+32:], 0)
			}
		case 3, 10: // symlink: links, target size, target (+ xattr index)
			if err := need(body, 8); err != nil {
				return err
			}
			setLinks(body)
			n := int(min(le32(logical[body+4:]), uint32(len(logical))))
			if err := need(body+8, n); err != nil {
				return err
			}
			if len(targets) == 0 {
				return fmt.Errorf("inode table has more symlinks than the source tree")
			}
			if got := string(logical[body+8 : body+8+n]); got != symlinkPlaceholder(len(targets[0])) {
				return fmt.Errorf("symlink inode %d holds %q, not the placeholder for %q", i, got, targets[0])
			}
			copy(logical[body+8:], targets[0])
			targets = targets[1:]
			size = 8 + n
			if typ == 10 {
				size += 4
			}
		case 4, 5:
			size = 8
		case 11, 12:
			size = 12
		case 6, 7:
			size = 4
		case 13, 14:
			size = 8
		default:
			return fmt.Errorf("inode %d at logical byte %d has unknown type %d", i, off, typ)
		}
		if err := need(body, size); err != nil {
			return err
		}
		off = body + size
	}
	if len(targets) != 0 {
		return fmt.Errorf("inode table has %d symlinks fewer than the source tree", len(targets))
	}
	// Write the payloads back where they came from.
	lpos := 0
	for _, p := range payloads {
		copy(raw[p[0]:p[0]+p[1]], logical[lpos:lpos+p[1]])
		lpos += p[1]
	}
	if _, err := f.WriteAt(raw, inodeStart); err != nil {
		return fmt.Errorf("write inode table: %w", err)
	}
	return nil
}

// fileBlocks is how many full data blocks a file inode lists: a tail in a
// fragment is not a block.
// The count is capped at limit so a corrupt size cannot overflow; the caller's
// bounds check then rejects it.
func fileBlocks(size, blockSize uint64, frag uint32, limit int) int {
	n := size / blockSize
	if frag == sqInvalidFrag && size%blockSize != 0 {
		n++
	}
	return int(min(n, uint64(limit)))
}

// rechunkSquashfsDirectories repairs a third go-diskfs v1.9.4 defect: its
// directory-table writer emits at most one 8 KiB metadata block per directory
// it appends, so after a directory listing longer than 8 KiB (a folder of a
// few hundred entries) the rest is flushed as one oversized last block, which
// readers reject ("failed to read block"); past 32 KiB its length even
// overflows into the header's "uncompressed" bit. Every block but the last
// is exactly 8 KiB, and the last one ends where the next table begins. The logical directory table is
// correct, so it is cut again into 8 KiB blocks; the tables after it
// (fragment, export and id tables) move by the size difference and their
// index pointers and the superblock are adjusted to match. The file is then
// padded to 4 KiB, as mksquashfs does.
func rechunkSquashfsDirectories(f *os.File) error {
	sb := make([]byte, sqSuperblockLen)
	if _, err := f.ReadAt(sb, 0); err != nil {
		return fmt.Errorf("read superblock: %w", err)
	}
	le64 := binary.LittleEndian.Uint64
	inodes := uint64(binary.LittleEndian.Uint32(sb[4:8]))
	frags := uint64(binary.LittleEndian.Uint32(sb[16:20]))
	flags := binary.LittleEndian.Uint16(sb[24:26])
	ids := uint64(binary.LittleEndian.Uint16(sb[26:28]))
	bytesUsed := int64(le64(sb[40:48]))
	dirStart := int64(le64(sb[72:80]))

	type table struct {
		sbOff   int // where the superblock holds this table's start
		entries uint64
	}
	tables := []table{{48, (ids + 2047) / 2048}}
	if frags > 0 {
		tables = append(tables, table{80, (frags + 511) / 512})
	}
	if flags&0x80 != 0 && le64(sb[88:96]) != ^uint64(0) {
		tables = append(tables, table{88, (inodes + 1023) / 1024})
	}
	if le64(sb[56:64]) != ^uint64(0) {
		return fmt.Errorf("image has an xattr table, which this repair does not move")
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if dirStart < sqSuperblockLen || bytesUsed <= dirStart || bytesUsed > st.Size() {
		return fmt.Errorf("directory table bounds %d..%d are not plausible", dirStart, bytesUsed)
	}
	rest := make([]byte, bytesUsed-dirStart)
	if _, err := f.ReadAt(rest, dirStart); err != nil {
		return fmt.Errorf("read tables after the directory table: %w", err)
	}
	// The directory table ends where the first later table or the first
	// metadata block such a table points at begins.
	end := bytesUsed
	for _, t := range tables {
		start := int64(le64(sb[t.sbOff:]))
		if start < dirStart || start >= bytesUsed {
			return fmt.Errorf("table start %d outside %d..%d", start, dirStart, bytesUsed)
		}
		if start+int64(8*t.entries) > bytesUsed {
			return fmt.Errorf("table index at %d runs past the image", start)
		}
		end = min(end, start)
		if first := int64(le64(rest[start-dirStart:])); first > dirStart && first < end {
			end = first
		}
	}
	var logical []byte
	for pos := int64(0); pos < end-dirStart; {
		if pos+2 > end-dirStart {
			return fmt.Errorf("directory table truncated at byte %d", pos)
		}
		h := binary.LittleEndian.Uint16(rest[pos:])
		n := int64(h &^ sqUncompressed)
		if n != sqMetadataSize || pos+2+n >= end-dirStart {
			// The last block holds whatever remained, and its length may
			// have overflowed into the flag bit: it runs to the table's end.
			n = end - dirStart - pos - 2
			if uint16(n)|sqUncompressed != h {
				return fmt.Errorf("directory metadata block at byte %d: header %#x does not match its %d bytes", pos, h, n)
			}
		}
		if h&sqUncompressed == 0 {
			return fmt.Errorf("directory metadata block at byte %d is compressed", pos)
		}
		logical = append(logical, rest[pos+2:pos+2+n]...)
		pos += 2 + n
	}
	if err := checkSquashfsDirectoryGroups(logical); err != nil {
		return err
	}
	inodeStart := int64(le64(sb[64:72]))
	if inodeStart < sqSuperblockLen || inodeStart >= dirStart {
		return fmt.Errorf("inode table start %d is not plausible", inodeStart)
	}
	inodeRaw := make([]byte, dirStart-inodeStart)
	if _, err := f.ReadAt(inodeRaw, inodeStart); err != nil {
		return fmt.Errorf("read inode table: %w", err)
	}
	if err := fixSquashfsEntryInodeNumbers(logical, inodeRaw); err != nil {
		return err
	}
	var dirs []byte
	for i := 0; i < len(logical); i += sqMetadataSize {
		chunk := logical[i:min(i+sqMetadataSize, len(logical))]
		dirs = binary.LittleEndian.AppendUint16(dirs, uint16(len(chunk))|sqUncompressed)
		dirs = append(dirs, chunk...)
	}
	delta := int64(len(dirs)) - (end - dirStart)
	tail := rest[end-dirStart:]
	for _, t := range tables {
		start := int64(le64(sb[t.sbOff:])) - end
		for i := uint64(0); i < t.entries; i++ {
			p := start + int64(8*i)
			if p < 0 || p+8 > int64(len(tail)) {
				return fmt.Errorf("table index entry at %d lies inside the directory table", p+end)
			}
			binary.LittleEndian.PutUint64(tail[p:], uint64(int64(le64(tail[p:]))+delta))
		}
		binary.LittleEndian.PutUint64(sb[t.sbOff:], uint64(int64(le64(sb[t.sbOff:]))+delta))
	}
	bytesUsed += delta
	binary.LittleEndian.PutUint64(sb[40:48], uint64(bytesUsed))
	out := append(dirs, tail...)
	if pad := roundUp(bytesUsed, 4096) - bytesUsed; pad > 0 {
		out = append(out, make([]byte, pad)...)
	}
	if _, err := f.WriteAt(out, dirStart); err != nil {
		return fmt.Errorf("write directory table: %w", err)
	}
	if err := f.Truncate(roundUp(bytesUsed, 4096)); err != nil {
		return fmt.Errorf("truncate image: %w", err)
	}
	if _, err := f.WriteAt(sb, 0); err != nil {
		return fmt.Errorf("write superblock: %w", err)
	}
	return nil
}

// checkSquashfsDirectoryGroups scans the logical directory table, which is a
// plain sequence of groups (a 12-byte header, then count entries), and
// rejects a group of more than 256 entries: readers refuse it, and go-diskfs
// v1.9.4 does not split groups by count, only when the inode block changes.
func checkSquashfsDirectoryGroups(table []byte) error {
	for pos := 0; pos < len(table); {
		if pos+12 > len(table) {
			return fmt.Errorf("directory table ends inside a header at byte %d", pos)
		}
		count := int(binary.LittleEndian.Uint32(table[pos:])) + 1
		if count > 256 {
			return fmt.Errorf("a directory holds more than 256 entries whose inodes share one metadata block, " +
				"which go-diskfs v1.9.4 writes unreadably: split that folder (often many short symlinks) or report this")
		}
		pos += 12
		for i := 0; i < count; i++ {
			if pos+8 > len(table) {
				return fmt.Errorf("directory table ends inside an entry at byte %d", pos)
			}
			pos += 8 + int(binary.LittleEndian.Uint16(table[pos+6:])) + 1
		}
	}
	return nil
}

// fixSquashfsEntryInodeNumbers repairs a fourth go-diskfs v1.9.4 defect, in
// the logical directory table: every group header's base inode number is 0
// and each entry stores its inode number in 16 bits, so past 32767 inodes the
// numbers readers compute (st_ino, d_ino) wrap and collide, which tools and
// overlayfs take for hard links. Each header's base is set to the number of
// its first entry's inode, read from that inode's header, and the entries
// become signed 16-bit differences from it; the entries of a group share one
// 8 KiB inode block, so the differences are small. Sizes do not change.
func fixSquashfsEntryInodeNumbers(table, inodeRaw []byte) error {
	const blockOnDisk = sqMetadataSize + 2 // every inode block but the last is full
	number := func(block uint32, offset uint16) (uint32, error) {
		if block%blockOnDisk != 0 || offset >= sqMetadataSize {
			return 0, fmt.Errorf("directory entry points at inode block %d offset %d", block, offset)
		}
		logical := int64(block/blockOnDisk)*sqMetadataSize + int64(offset)
		// Map the logical offset of the header's bytes 12-15 back to raw.
		var b [4]byte
		for i := range b {
			l := logical + 12 + int64(i)
			raw := l/sqMetadataSize*blockOnDisk + 2 + l%sqMetadataSize
			if raw >= int64(len(inodeRaw)) {
				return 0, fmt.Errorf("directory entry points past the inode table")
			}
			b[i] = inodeRaw[raw]
		}
		return binary.LittleEndian.Uint32(b[:]), nil
	}
	for pos := 0; pos+12 <= len(table); {
		count := int(binary.LittleEndian.Uint32(table[pos:])) + 1
		block := binary.LittleEndian.Uint32(table[pos+4:])
		header := pos
		pos += 12
		var base uint32
		for i := 0; i < count; i++ {
			if pos+8 > len(table) {
				return fmt.Errorf("directory table ends inside an entry at byte %d", pos)
			}
			n, err := number(block, binary.LittleEndian.Uint16(table[pos:]))
			if err != nil {
				return err
			}
			if i == 0 {
				base = n
				binary.LittleEndian.PutUint32(table[header+8:], base)
			}
			d := int64(n) - int64(base)
			if d < -32768 || d > 32767 {
				return fmt.Errorf("directory group spans inode numbers %d to %d", base, n)
			}
			binary.LittleEndian.PutUint16(table[pos+2:], uint16(int16(d)))
			pos += 8 + int(binary.LittleEndian.Uint16(table[pos+6:])) + 1
		}
	}
	return nil
}
