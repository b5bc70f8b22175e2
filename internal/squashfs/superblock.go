// Package squashfs reads the superblock of a squashfs 4.0 filesystem: the
// one decoder of its fields for the build (its in-place fix-ups, the layers
// it is given) and the agent (the dm-verity tree that follows the image).
package squashfs

import (
	"encoding/binary"
	"errors"
)

// SuperblockLen is the size of a squashfs 4.0 superblock.
const SuperblockLen = 96

// Compression ids (the superblock's compression_id).
const (
	Gzip = 1
	LZMA = 2
	LZO  = 3
	XZ   = 4
	LZ4  = 5
	Zstd = 6
)

// FlagNoInodeCompression is the superblock flag of an uncompressed inode table.
const FlagNoInodeCompression = 0x0001

// ErrNoSuperblock is Parse's answer for bytes that do not begin with a
// squashfs superblock (its magic "hsqs", little-endian).
var ErrNoSuperblock = errors.New("no squashfs superblock")

// Superblock holds the fields of a squashfs superblock its readers use.
type Superblock struct {
	Inodes          uint32
	BlockSize       uint32
	Compression     uint16
	Flags           uint16
	Major, Minor    uint16
	BytesUsed       uint64 // the filesystem's length: what lies past it is not read
	InodeTableStart uint64
	DirTableStart   uint64
}

// Parse decodes the superblock at the start of b (SuperblockLen bytes at
// least). It checks only the magic: what each field must be is for its
// reader to say.
func Parse(b []byte) (Superblock, error) {
	if len(b) < SuperblockLen || string(b[:4]) != "hsqs" {
		return Superblock{}, ErrNoSuperblock
	}
	le := binary.LittleEndian
	return Superblock{
		Inodes:          le.Uint32(b[4:8]),
		BlockSize:       le.Uint32(b[12:16]),
		Compression:     le.Uint16(b[20:22]),
		Flags:           le.Uint16(b[24:26]),
		Major:           le.Uint16(b[28:30]),
		Minor:           le.Uint16(b[30:32]),
		BytesUsed:       le.Uint64(b[40:48]),
		InodeTableStart: le.Uint64(b[64:72]),
		DirTableStart:   le.Uint64(b[72:80]),
	}, nil
}
