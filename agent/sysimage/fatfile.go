package sysimage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// ErrNotFAT32 is ReadFATFile's answer for a filesystem it does not read
// (FAT12/16, exFAT, anything else): the caller mounts it instead.
var ErrNotFAT32 = errors.New("not a FAT32 filesystem")

// ReadFATFile reads the file at name ("/etoile/config.yaml") from the FAT32
// filesystem on dev, a block device or image file, without mounting it: no
// kernel module is needed (mounting FAT takes four, 0.2-0.3 s of CPU under
// emulation at boot) and nothing is left mounted. It reads only the sectors
// on the way: the boot sector, the folders' clusters, the file's, and the
// FAT sectors that chain them (go-diskfs's reader loads and compares both
// whole FATs, 4 MiB on Étoile's 256 MiB ESP, which took longer than the
// modules). Long names are matched case-insensitively, as FAT does. A
// missing folder or file is an error wrapping fs.ErrNotExist; a file over
// limit bytes is an error; a damaged filesystem is an error, never a panic.
func ReadFATFile(dev, name string, limit int64) ([]byte, error) {
	return readDevice(dev, name+" on its FAT filesystem, unmounted", func(r io.ReaderAt) ([]byte, error) { return readFATFile(r, dev, name, limit) })
}

func readFATFile(r io.ReaderAt, dev, name string, limit int64) ([]byte, error) {
	v, err := openFAT32(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dev, err)
	}
	root := fatEntry{cluster: v.root, dir: true}
	return walkFile(dev, name, limit, root,
		func(dir fatEntry, part string) (fatEntry, bool, error) { return v.lookup(dir.cluster, part) },
		func(e fatEntry) ([]byte, error) { return v.readChain(e.cluster, int64(e.size)) })
}

// fatVolume is what a read needs from a FAT32 boot sector.
type fatVolume struct {
	r           io.ReaderAt
	sector      int64 // bytes per sector
	clusterSize int64 // bytes per cluster
	fatStart    int64 // byte offset of the first FAT
	dataStart   int64 // byte offset of cluster 2
	clusters    uint32
	root        uint32
}

func openFAT32(r io.ReaderAt) (*fatVolume, error) {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) { // shorter than a boot sector
			return nil, ErrNotFAT32
		}
		return nil, fmt.Errorf("reading the boot sector: %w", err)
	}
	le := binary.LittleEndian
	bps := int64(le.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(le.Uint16(bs[14:]))
	nfats := int64(bs[16])
	rootEntries := le.Uint16(bs[17:])
	fatSz16 := le.Uint16(bs[22:])
	total := int64(le.Uint32(bs[32:]))
	fatSz := int64(le.Uint32(bs[36:]))
	root := le.Uint32(bs[44:])
	switch {
	case bs[510] != 0x55 || bs[511] != 0xAA:
		return nil, fmt.Errorf("%w: no boot sector signature", ErrNotFAT32)
	case bps != 512 && bps != 1024 && bps != 2048 && bps != 4096:
		return nil, fmt.Errorf("%w: %d bytes per sector", ErrNotFAT32, bps)
	case spc == 0 || spc&(spc-1) != 0:
		return nil, fmt.Errorf("%w: %d sectors per cluster", ErrNotFAT32, spc)
	case rootEntries != 0 || fatSz16 != 0 || fatSz == 0 || nfats == 0 || reserved == 0:
		return nil, fmt.Errorf("%w: the boot sector describes FAT12/16 or is damaged", ErrNotFAT32)
	}
	v := &fatVolume{r: r, sector: bps, clusterSize: bps * spc, fatStart: reserved * bps,
		dataStart: (reserved + nfats*fatSz) * bps, root: root}
	dataSectors := total - reserved - nfats*fatSz
	if dataSectors <= 0 {
		return nil, fmt.Errorf("%w: no data area", ErrNotFAT32)
	}
	v.clusters = uint32(min(dataSectors/spc, fatSz*bps/4-2))
	if root < 2 || root >= v.clusters+2 {
		return nil, fmt.Errorf("%w: root folder cluster %d out of range", ErrNotFAT32, root)
	}
	return v, nil
}

// next is the cluster after c in its chain; end is true at the chain's end.
func (v *fatVolume) next(c uint32) (n uint32, end bool, err error) {
	var b [4]byte
	if _, err := v.r.ReadAt(b[:], v.fatStart+int64(c)*4); err != nil {
		return 0, false, fmt.Errorf("reading the FAT: %w", err)
	}
	n = binary.LittleEndian.Uint32(b[:]) & 0x0FFFFFFF
	switch {
	case n >= 0x0FFFFFF8:
		return 0, true, nil
	case n < 2 || n >= v.clusters+2:
		return 0, false, fmt.Errorf("cluster %d chains to %#x: the FAT is damaged", c, n)
	}
	return n, false, nil
}

// readChain reads the chain from cluster c: size bytes of it, or all of it
// (size < 0, a folder, at most 2 MiB).
func (v *fatVolume) readChain(c uint32, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	want := size
	if size < 0 {
		want = 2 << 20
	}
	var out []byte
	for steps := uint32(0); int64(len(out)) < want; steps++ {
		if c < 2 || c >= v.clusters+2 || steps > v.clusters {
			return nil, fmt.Errorf("cluster chain broken at %d", c)
		}
		buf := make([]byte, min(v.clusterSize, want-int64(len(out))))
		if _, err := v.r.ReadAt(buf, v.dataStart+int64(c-2)*v.clusterSize); err != nil {
			return nil, fmt.Errorf("reading cluster %d: %w", c, err)
		}
		out = append(out, buf...)
		n, end, err := v.next(c)
		if err != nil {
			return nil, err
		}
		if end {
			break
		}
		c = n
	}
	if size >= 0 && int64(len(out)) < size {
		return nil, fmt.Errorf("the file's chain is shorter than its %d bytes", size)
	}
	return out, nil
}

type fatEntry struct {
	cluster uint32
	dir     bool
	size    uint32
}

func (e fatEntry) isDir() bool   { return e.dir }
func (e fatEntry) length() int64 { return int64(e.size) }

// lookup finds name in the folder starting at cluster dir.
func (v *fatVolume) lookup(dir uint32, name string) (fatEntry, bool, error) {
	data, err := v.readChain(dir, -1)
	if err != nil {
		return fatEntry{}, false, err
	}
	var long []uint16 // the long name gathered from the entries before
	var sum byte
	for off := 0; off+32 <= len(data); off += 32 {
		e := data[off : off+32]
		switch {
		case e[0] == 0x00:
			return fatEntry{}, false, nil // the folder's end
		case e[0] == 0xE5:
			long = nil
			continue
		case e[11]&0x3F == 0x0F: // a piece of a long name, last piece first
			seq := int(e[0] & 0x1F)
			if e[0]&0x40 != 0 {
				long, sum = make([]uint16, seq*13), e[13]
			}
			if seq == 0 || len(long) < seq*13 || e[13] != sum {
				long = nil
				continue
			}
			piece := long[(seq-1)*13 : seq*13]
			for i, at := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				piece[i] = binary.LittleEndian.Uint16(e[at:])
			}
			continue
		case e[11]&0x08 != 0: // the volume label
			long = nil
			continue
		}
		names := []string{shortName(e)}
		if long != nil && checksum(e[:11]) == sum {
			names = append(names, decodeLong(long))
		}
		long = nil
		for _, n := range names {
			if strings.EqualFold(n, name) {
				le := binary.LittleEndian
				return fatEntry{cluster: uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:])),
					dir: e[11]&0x10 != 0, size: le.Uint32(e[28:])}, true, nil
			}
		}
	}
	return fatEntry{}, false, nil
}

// shortName is the 8.3 name of a directory entry, "NAME.EXT".
func shortName(e []byte) string {
	base := strings.TrimRight(string(e[0:8]), " ")
	if base != "" && base[0] == 0x05 {
		base = "\xE5" + base[1:]
	}
	if ext := strings.TrimRight(string(e[8:11]), " "); ext != "" {
		return base + "." + ext
	}
	return base
}

// decodeLong turns a gathered long name into a string: it ends at the first
// 0x0000 (the rest is 0xFFFF padding).
func decodeLong(u []uint16) string {
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	return string(utf16.Decode(u))
}

// checksum is the short name's checksum that its long name pieces carry.
func checksum(short []byte) byte {
	var s byte
	for _, c := range short {
		s = (s>>1 | s<<7) + c
	}
	return s
}
