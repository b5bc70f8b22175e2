package media

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"

	"github.com/etoile-os/etoile/internal/squashfs"
)

const (
	sqMetadataSize  = 8192
	sqInvalidFrag   = 0xffffffff
	sqUncompressed  = 0x8000
	sqSuperblockLen = squashfs.SuperblockLen
	// sqBlockSizeMask is a block list entry's stored size; bit 24 says
	// "uncompressed".
	sqBlockSizeMask = 1<<24 - 1
)

// fixSquashfsInodes repairs defects of go-diskfs v1.9.4's squashfs writer,
// in place, in the (uncompressed) inode table:
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
//   - A folder's parent inode number is 0; it is set from the source tree
//     (one past the last inode for the root, as mksquashfs writes it), for
//     ".." in a listing and the NFS handles of folders.
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
// It also refuses a file whose data go-diskfs could not point at (see
// checkSquashfsDataStart). It needs the inode table uncompressed, which
// WriteSquashfs guarantees, and cut into metadata blocks of 8 KiB, which
// rechunkSquashfsDirectories makes it: run that first.
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
	if info.links != nil && len(info.links) != int(count) {
		return fmt.Errorf("image has %d inodes but the source tree %d entries", count, len(info.links))
	}
	le32 := binary.LittleEndian.Uint32
	// Data blocks follow the superblock file after file, in inode order
	// (go-diskfs writes no compression options for uncompressed data).
	nextData := uint64(sqSuperblockLen)
	off := 0
	for i := uint32(0); i < count; i++ {
		typ, size, err := squashfsInodeLen(logical, off, blockSize)
		if err != nil {
			return fmt.Errorf("inode %d: %w", i, err)
		}
		if int(i) < len(info.special) && info.special[i] != 0 {
			// The header's permissions (after the type): the bits go-diskfs dropped.
			perm := binary.LittleEndian.Uint16(logical[off+2 : off+4])
			binary.LittleEndian.PutUint16(logical[off+2:], perm|info.special[i])
		}
		body := off + 16
		setLinks := func(at int) {
			if int(i) < len(info.links) {
				binary.LittleEndian.PutUint32(logical[at:], info.links[i])
			}
		}
		setParent := func() { // at body+12 in both directory inodes
			if int(i) < len(info.parents) {
				parent := info.parents[i]
				if parent == 0 {
					parent = count + 1
				}
				binary.LittleEndian.PutUint32(logical[body+12:], parent)
			}
		}
		switch typ {
		case 1: // basic directory: start block at body+0
			setLinks(body + 4)
			setParent()
			binary.LittleEndian.PutUint32(logical[body:], le32(logical[body:])*(sqMetadataSize+2))
		case 8: // extended directory: start block at body+8
			binary.LittleEndian.PutUint32(logical[body+8:], le32(logical[body+8:])*(sqMetadataSize+2))
			setLinks(body)
			setParent()
		case 2, 9: // basic, extended file
			start, fileSize := uint64(le32(logical[body:])), uint64(le32(logical[body+12:]))
			blocks, frag := logical[body+16:off+size], body+4
			if typ == 9 {
				start, fileSize = binary.LittleEndian.Uint64(logical[body:]), binary.LittleEndian.Uint64(logical[body+8:])
				blocks, frag = logical[body+40:off+size], body+28
				setLinks(body + 24)
			}
			if err := checkSquashfsDataStart(typ, start, nextData, len(blocks) > 0, info.path(i), super.BytesUsed); err != nil {
				return err
			}
			for j := 0; j < len(blocks); j += 4 {
				nextData += uint64(le32(blocks[j:]) & sqBlockSizeMask)
			}
			if fileSize%blockSize == 0 {
				binary.LittleEndian.PutUint32(logical[frag:], sqInvalidFrag)
				binary.LittleEndian.PutUint32(logical[frag+4:], 0)
			}
		case 3, 10: // symlink: links, target size, target (+ xattr index)
			setLinks(body)
			n := int(le32(logical[body+4:]))
			if len(targets) == 0 {
				return fmt.Errorf("inode table has more symlinks than the source tree")
			}
			if got := string(logical[body+8 : body+8+n]); got != symlinkPlaceholder(len(targets[0])) {
				return fmt.Errorf("symlink inode %d holds %q, not the placeholder for %q", i, got, targets[0])
			}
			copy(logical[body+8:], targets[0])
			targets = targets[1:]
		}
		off += size
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

// squashfsInodeLen returns the type and the length, header included, of the
// inode at logical byte off of an inode table, checking that it lies inside.
func squashfsInodeLen(logical []byte, off int, blockSize uint64) (typ uint16, size int, err error) {
	need := func(n int) error {
		if off+n > len(logical) || off+n < off {
			return fmt.Errorf("inode at logical byte %d runs past the inode table", off)
		}
		return nil
	}
	if err := need(16); err != nil {
		return 0, 0, err
	}
	le32 := func(at int) uint32 { return binary.LittleEndian.Uint32(logical[off+16+at:]) }
	typ = binary.LittleEndian.Uint16(logical[off:])
	var body int
	switch typ {
	case 1: // basic directory
		body = 16
	case 8: // extended directory: then index entries (12 bytes and a name)
		if err := need(16 + 24); err != nil {
			return 0, 0, err
		}
		body = 24
		for j := 0; j < int(binary.LittleEndian.Uint16(logical[off+16+16:])); j++ {
			if err := need(16 + body + 12); err != nil {
				return 0, 0, err
			}
			body += 12 + int(min(le32(body+8), uint32(len(logical)))) + 1
		}
	case 2: // basic file: then one size per block
		if err := need(16 + 16); err != nil {
			return 0, 0, err
		}
		body = 16 + 4*fileBlocks(uint64(le32(12)), blockSize, le32(4), len(logical))
	case 9: // extended file
		if err := need(16 + 40); err != nil {
			return 0, 0, err
		}
		body = 40 + 4*fileBlocks(binary.LittleEndian.Uint64(logical[off+16+8:]), blockSize, le32(28), len(logical))
	case 3, 10: // symlink: links, target size, target (+ xattr index)
		if err := need(16 + 8); err != nil {
			return 0, 0, err
		}
		body = 8 + int(min(le32(4), uint32(len(logical))))
		if typ == 10 {
			body += 4
		}
	case 4, 5, 13, 14: // basic device; extended fifo, socket
		body = 8
	case 11, 12: // extended device
		body = 12
	case 6, 7: // basic fifo, socket
		body = 4
	default:
		return 0, 0, fmt.Errorf("inode at logical byte %d has unknown type %d", off, typ)
	}
	if err := need(16 + body); err != nil {
		return 0, 0, err
	}
	return typ, 16 + body, nil
}

// squashfsInodeStarts returns the logical offset of each of the count inodes
// of an inode table go-diskfs wrote: one after the other, and nothing after
// the last.
func squashfsInodeStarts(logical []byte, count uint32, blockSize uint64) ([]int, error) {
	var starts []int
	off := 0
	for i := uint32(0); i < count; i++ {
		_, size, err := squashfsInodeLen(logical, off, blockSize)
		if err != nil {
			return nil, fmt.Errorf("inode %d: %w", i, err)
		}
		starts = append(starts, off)
		off += size
	}
	if off != len(logical) {
		return nil, fmt.Errorf("inode table holds %d bytes after its %d inodes", len(logical)-off, count)
	}
	return starts, nil
}

// maxBasicDataStart is the first byte a basic file inode cannot point at:
// its blocks_start field has 32 bits.
const maxBasicDataStart = 1 << 32

// checkSquashfsDataStart refuses a file whose data go-diskfs v1.9.4 recorded
// wrongly. It stores a basic file inode's blocks_start as the low 32 bits of
// the data's position (it chooses the extended inode, which has 64, only by
// the block index), so a file whose data starts at 4 GiB or later would read
// back as other bytes (zeros), and dm-verity would then seal the corruption.
// want is where the file's data must start: the data follows the superblock
// file after file in inode order. A file without blocks (empty, or a tail in a
// fragment) reads none, whatever its start.
func checkSquashfsDataStart(typ uint16, start, want uint64, hasBlocks bool, path string, imageSize uint64) error {
	if !hasBlocks {
		return nil
	}
	if typ == 2 && want >= maxBasicDataStart {
		return fmt.Errorf("the system image is %d bytes (%.0f MiB) and the data of %s would start at byte %d, "+
			"past 4 GiB, where go-diskfs v1.9.4 cannot point a file (it keeps 32 bits of the position, so the file would "+
			"read back wrong): the system image must stay under 4 GiB; take large files out of the overlays and extensions",
			imageSize, float64(imageSize)/(1<<20), path, want)
	}
	if start != want {
		return fmt.Errorf("the data of %s is recorded at byte %d, but the files before it end at byte %d: "+
			"go-diskfs did not lay the data out as this repair expects", path, start, want)
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

// rechunkSquashfsDirectories repairs go-diskfs v1.9.4's writers of the inode
// and directory tables: each emits at most one 8 KiB metadata block per inode
// or directory it appends, so after an inode longer than 8 KiB (the block
// list of a file of 255 MiB or more) or a directory listing longer than 8 KiB
// (a folder of a few hundred entries) the backlog is flushed as one oversized
// last block, which readers reject ("failed to read block"); past 32 KiB its
// length even overflows into the header's "uncompressed" bit. Every block but
// the last is exactly 8 KiB, and the last one ends where the next table
// begins. The logical tables are correct, so they are cut again into 8 KiB
// blocks; the tables after them (fragment, export and id tables) move by the
// size difference and their index pointers and the superblock are adjusted
// to match. The file is then padded to 4 KiB, as mksquashfs does.
//
// References into the inode table's oversized block are wrong too: go-diskfs
// numbers inode blocks logically (position / 8 KiB) and maps each number to
// the offset of the block it wrote, leaving a number past the last block it
// wrote as it is. Every reference (directory entries, the root inode, the
// export table) is therefore set to the offset of its block in the re-cut
// table (see squashfsInodeTable.ref). The export table's entries are
// also rewritten in squashfs's layout (block << 16 | offset): go-diskfs puts
// the offset in the top 16 bits, where readers take it for part of the block.
func rechunkSquashfsDirectories(f *os.File) error {
	sb := make([]byte, sqSuperblockLen)
	if _, err := f.ReadAt(sb, 0); err != nil {
		return fmt.Errorf("read superblock: %w", err)
	}
	le64 := binary.LittleEndian.Uint64
	inodes := uint64(binary.LittleEndian.Uint32(sb[4:8]))
	blockSize := uint64(binary.LittleEndian.Uint32(sb[12:16]))
	frags := uint64(binary.LittleEndian.Uint32(sb[16:20]))
	flags := binary.LittleEndian.Uint16(sb[24:26])
	ids := uint64(binary.LittleEndian.Uint16(sb[26:28]))
	bytesUsed := int64(le64(sb[40:48]))
	inodeStart := int64(le64(sb[64:72]))
	dirStart := int64(le64(sb[72:80]))

	type table struct {
		sbOff   int // where the superblock holds this table's start
		entries uint64
	}
	tables := []table{{48, (ids + 2047) / 2048}}
	if frags > 0 {
		tables = append(tables, table{80, (frags + 511) / 512})
	}
	exportBlocks := uint64(0)
	if flags&0x80 != 0 && le64(sb[88:96]) != ^uint64(0) {
		exportBlocks = (inodes + 1023) / 1024
		tables = append(tables, table{88, exportBlocks})
	}
	if le64(sb[56:64]) != ^uint64(0) {
		return fmt.Errorf("image has an xattr table, which this repair does not move")
	}
	if flags&squashfs.FlagNoInodeCompression == 0 {
		return fmt.Errorf("inode table is compressed: cannot patch it in place")
	}
	if blockSize < 4096 || blockSize > 1<<20 || blockSize&(blockSize-1) != 0 {
		return fmt.Errorf("block size %d is not a power of two from 4 KiB to 1 MiB", blockSize)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if inodeStart < sqSuperblockLen || dirStart <= inodeStart || bytesUsed <= dirStart || bytesUsed > st.Size() {
		return fmt.Errorf("inode and directory table bounds %d..%d..%d are not plausible", inodeStart, dirStart, bytesUsed)
	}
	region := make([]byte, bytesUsed-inodeStart)
	if _, err := f.ReadAt(region, inodeStart); err != nil {
		return fmt.Errorf("read the inode table and the tables after it: %w", err)
	}
	inodeRaw, rest := region[:dirStart-inodeStart], region[dirStart-inodeStart:]
	itab, err := joinSquashfsInodeTable(inodeRaw, uint32(inodes), blockSize)
	if err != nil {
		return err
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
	// Inode references, before anything moves.
	if err := fixSquashfsDirectoryInodeRefs(logical, itab); err != nil {
		return err
	}
	root := le64(sb[32:40])
	rootBlock, err := itab.ref(uint32(root>>16), uint16(root))
	if err != nil {
		return fmt.Errorf("root inode: %w", err)
	}
	binary.LittleEndian.PutUint64(sb[32:], uint64(rootBlock)<<16|root&0xffff)
	tail := rest[end-dirStart:]
	if exportBlocks > 0 {
		if err := fixSquashfsExportTable(tail, end, int64(le64(sb[88:96])), exportBlocks, itab); err != nil {
			return err
		}
	}
	inodeTable := cutSquashfsMetadata(itab.logical)
	if err := fixSquashfsEntryInodeNumbers(logical, inodeTable); err != nil {
		return err
	}
	dirs := cutSquashfsMetadata(logical)
	inodeDelta := int64(len(inodeTable) - len(inodeRaw))
	delta := inodeDelta + int64(len(dirs)) - (end - dirStart)
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
	binary.LittleEndian.PutUint64(sb[72:], uint64(dirStart+inodeDelta))
	bytesUsed += delta
	binary.LittleEndian.PutUint64(sb[40:48], uint64(bytesUsed))
	out := append(append(inodeTable, dirs...), tail...)
	if pad := roundUp(bytesUsed, 4096) - bytesUsed; pad > 0 {
		out = append(out, make([]byte, pad)...)
	}
	if _, err := f.WriteAt(out, inodeStart); err != nil {
		return fmt.Errorf("write the inode and directory tables: %w", err)
	}
	if err := f.Truncate(roundUp(bytesUsed, 4096)); err != nil {
		return fmt.Errorf("truncate image: %w", err)
	}
	if _, err := f.WriteAt(sb, 0); err != nil {
		return fmt.Errorf("write superblock: %w", err)
	}
	return nil
}

// cutSquashfsMetadata cuts a logical table into uncompressed metadata blocks
// of 8 KiB (the last one shorter), each with its 2-byte header.
func cutSquashfsMetadata(logical []byte) []byte {
	out := make([]byte, 0, len(logical)+2*(len(logical)/sqMetadataSize+1))
	for i := 0; i < len(logical); i += sqMetadataSize {
		chunk := logical[i:min(i+sqMetadataSize, len(logical))]
		out = binary.LittleEndian.AppendUint16(out, uint16(len(chunk))|sqUncompressed)
		out = append(out, chunk...)
	}
	return out
}

// squashfsInodeTable is an inode table as go-diskfs v1.9.4 wrote it, joined.
type squashfsInodeTable struct {
	logical []byte
	// written is how many full 8 KiB blocks go-diskfs wrote before its
	// last (maybe oversized) one: the blocks it knew the offsets of.
	written int
	// starts are the logical offsets of the inodes, in order.
	starts []int
}

// joinSquashfsInodeTable reads an uncompressed inode table go-diskfs wrote:
// some full 8 KiB blocks, then one last block of any length that runs to
// the table's end, whose 16-bit length may have overflowed (into the
// "uncompressed" bit, or past 64 KiB). Such a length can match a full block's
// header by chance, so each reading the headers allow is tried, the plain
// one first, and the one whose bytes are exactly count inodes is taken.
func joinSquashfsInodeTable(raw []byte, count uint32, blockSize uint64) (*squashfsInodeTable, error) {
	const onDisk = sqMetadataSize + 2
	var candidates []int
	for k := 0; k*onDisk+2 <= len(raw); k++ {
		h := binary.LittleEndian.Uint16(raw[k*onDisk:])
		if n := len(raw) - k*onDisk - 2; n > 0 && h == uint16(n)|sqUncompressed {
			candidates = append(candidates, k)
		}
		if h != sqMetadataSize|sqUncompressed {
			break
		}
	}
	err := fmt.Errorf("inode table of %d bytes is not uncompressed 8 KiB metadata blocks and a last block", len(raw))
	for i := len(candidates) - 1; i >= 0; i-- {
		k := candidates[i]
		logical := make([]byte, 0, len(raw))
		for j := 0; j < k; j++ {
			logical = append(logical, raw[j*onDisk+2:(j+1)*onDisk]...)
		}
		logical = append(logical, raw[k*onDisk+2:]...)
		starts, serr := squashfsInodeStarts(logical, count, blockSize)
		if serr == nil {
			return &squashfsInodeTable{logical: logical, written: k, starts: starts}, nil
		}
		err = fmt.Errorf("inode table: %w", serr)
	}
	return nil, err
}

// ref returns the block part of an inode reference, (block, offset) as
// go-diskfs wrote it, for the re-cut table: the offset of the metadata block,
// from the start of the inode table. go-diskfs wrote either that offset, for
// the blocks it knew (a multiple of 8194, uncompressed blocks being 8192
// bytes and their header, up to written*8194), or the block's logical index
// (written+1 or more). The two overlap only in a table of over 8194 blocks
// (64 MiB); the reading that lands on an inode's first byte is taken.
func (t *squashfsInodeTable) ref(block uint32, offset uint16) (uint32, error) {
	const onDisk = sqMetadataSize + 2
	blocks := int64(len(t.logical)+sqMetadataSize-1) / sqMetadataSize
	var found []int64
	try := func(index int64) {
		if _, ok := slices.BinarySearch(t.starts, int(index*sqMetadataSize+int64(offset))); ok {
			found = append(found, index)
		}
	}
	if offset < sqMetadataSize {
		if block%onDisk == 0 && int64(block/onDisk) <= int64(t.written) {
			try(int64(block / onDisk))
		}
		if int64(block) > int64(t.written) && int64(block) < blocks {
			try(int64(block))
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("inode reference (block %d, offset %d) points at no inode", block, offset)
	case 1:
		return uint32(found[0] * onDisk), nil
	default:
		return 0, fmt.Errorf("inode reference (block %d, offset %d) can mean two inodes of an inode table of %d bytes, "+
			"which go-diskfs v1.9.4 wrote ambiguously: put fewer files into the image", block, offset, len(t.logical))
	}
}

// fixSquashfsDirectoryInodeRefs sets each group header's inode block, in the
// logical directory table, to the block's offset in the re-cut inode table.
// The entries of a group share a block.
func fixSquashfsDirectoryInodeRefs(table []byte, itab *squashfsInodeTable) error {
	var fixed uint32
	return eachSquashfsDirectoryEntry(table, func(header int, block uint32, i, entry int) error {
		b, err := itab.ref(block, binary.LittleEndian.Uint16(table[entry:]))
		if err != nil {
			return fmt.Errorf("directory entry at byte %d: %w", entry, err)
		}
		if i > 0 && b != fixed {
			return fmt.Errorf("directory entries at byte %d point into two inode blocks under one header", header)
		}
		fixed = b
		binary.LittleEndian.PutUint32(table[header+4:], fixed)
		return nil
	})
}

// fixSquashfsExportTable rewrites, in tail (the bytes of the image from
// offset base on), each entry of the export table whose index starts at
// byte index and lists blocks metadata blocks: an inode reference that
// go-diskfs v1.9.4 wrote with the block in bytes 2-5 and the offset in bytes
// 6-7 becomes block << 16 | offset, with the block as in the re-cut inode
// table.
func fixSquashfsExportTable(tail []byte, base, index int64, blocks uint64, itab *squashfsInodeTable) error {
	for i := uint64(0); i < blocks; i++ {
		at := index - base + int64(8*i)
		if at < 0 || at+8 > int64(len(tail)) {
			return fmt.Errorf("export table index entry at byte %d lies outside the tables after the directory table", index+int64(8*i))
		}
		p := int64(binary.LittleEndian.Uint64(tail[at:])) - base
		if p < 0 || p+2 > int64(len(tail)) {
			return fmt.Errorf("export table block %d at byte %d lies outside the tables after the directory table", i, p+base)
		}
		h := binary.LittleEndian.Uint16(tail[p:])
		n := int64(h &^ sqUncompressed)
		if h&sqUncompressed == 0 || n > sqMetadataSize || n%8 != 0 || p+2+n > int64(len(tail)) {
			return fmt.Errorf("export table block %d at byte %d: header %#x is not an uncompressed block of entries", i, p+base, h)
		}
		for e := p + 2; e < p+2+n; e += 8 {
			block := binary.LittleEndian.Uint32(tail[e+2:])
			offset := binary.LittleEndian.Uint16(tail[e+6:])
			b, err := itab.ref(block, offset)
			if err != nil {
				return fmt.Errorf("export table: %w", err)
			}
			binary.LittleEndian.PutUint64(tail[e:], uint64(b)<<16|uint64(offset))
		}
	}
	return nil
}

// checkSquashfsDirectoryGroups scans the logical directory table, which is a
// plain sequence of groups (a 12-byte header, then count entries), and
// rejects a group of more than 256 entries: readers refuse it, and go-diskfs
// v1.9.4 does not split groups by count, only when the inode block changes.
func checkSquashfsDirectoryGroups(table []byte) error {
	return eachSquashfsDirectoryEntry(table, func(header int, _ uint32, i, _ int) error {
		if i == 0 && binary.LittleEndian.Uint32(table[header:])+1 > 256 {
			return fmt.Errorf("a directory holds more than 256 entries whose inodes share one metadata block, " +
				"which go-diskfs v1.9.4 writes unreadably: split that folder (often many short symlinks) or report this")
		}
		return nil
	})
}

// eachSquashfsDirectoryEntry walks the logical directory table, a plain
// sequence of groups (a 12-byte header: entry count - 1, the entries' inode
// block, a base inode number; then the entries: 8 bytes and a name), calling
// f with each entry's group header position, the header's inode block as it
// was before f ran, the entry's index in its group and its position. f may
// rewrite the header's block and base and an entry's fields, not its name's
// size. A table that ends inside a header or an entry is an error.
func eachSquashfsDirectoryEntry(table []byte, f func(header int, block uint32, i, entry int) error) error {
	for pos := 0; pos < len(table); {
		if pos+12 > len(table) {
			return fmt.Errorf("directory table ends inside a header at byte %d", pos)
		}
		header := pos
		count := int64(binary.LittleEndian.Uint32(table[pos:])) + 1
		block := binary.LittleEndian.Uint32(table[pos+4:])
		pos += 12
		for i := int64(0); i < count; i++ {
			if pos+8 > len(table) {
				return fmt.Errorf("directory table ends inside an entry at byte %d", pos)
			}
			if err := f(header, block, int(i), pos); err != nil {
				return err
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
	var base uint32
	return eachSquashfsDirectoryEntry(table, func(header int, block uint32, i, entry int) error {
		n, err := number(block, binary.LittleEndian.Uint16(table[entry:]))
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
		binary.LittleEndian.PutUint16(table[entry+2:], uint16(int16(d)))
		return nil
	})
}
