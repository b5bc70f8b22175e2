package sysimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"unicode/utf16"
)

// ErrISOUnsupported is ReadISOFile's answer for an ISO9660 filesystem it
// does not read (an odd block size, a name in a Rock Ridge continuation
// area, a file in several extents): the caller mounts it instead, as it
// does on ErrNotISO9660.
var ErrISOUnsupported = errors.New("an ISO9660 feature this reader does not handle")

const (
	isoSector     = 2048
	isoMaxDirSize = 4 << 20 // bytes of one folder read at most
	isoMaxDescs   = 64      // volume descriptors looked at
)

// ReadISOFile reads the file at name ("/config.yaml") from the ISO9660
// filesystem on dev without mounting it: no kernel module is needed (isofs
// and the cdrom module it depends on took about 0.2 s of CPU under emulation
// at boot) and nothing is left mounted. Names are the ones mount(8) shows:
// Rock Ridge names where the volume has them (case-sensitive), else Joliet's,
// else the plain ISO9660 names, both matched case-insensitively (as Linux
// does by default) without their ";1" version. A missing folder or file is an error wrapping
// fs.ErrNotExist; a file over limit bytes is an error; a damaged filesystem
// is an error, never a panic.
func ReadISOFile(dev, name string, limit int64) ([]byte, error) {
	return readDevice(dev, name+" on its ISO9660 filesystem, unmounted", func(r io.ReaderAt) ([]byte, error) { return readISOFile(r, dev, name, limit) })
}

func readISOFile(r io.ReaderAt, dev, name string, limit int64) ([]byte, error) {
	v, err := openISO(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dev, err)
	}
	return walkFile(dev, name, limit, v.root, v.lookup, func(e isoEntry) ([]byte, error) {
		data := make([]byte, e.size)
		_, err := r.ReadAt(data, int64(e.extent)*v.block)
		return data, err
	})
}

// isoEntry is one directory record.
type isoEntry struct {
	extent uint32 // first logical block
	size   uint32 // bytes
	dir    bool
}

func (e isoEntry) isDir() bool   { return e.dir }
func (e isoEntry) length() int64 { return int64(e.size) }

type isoNames int

const (
	plainNames isoNames = iota
	rockRidgeNames
	jolietNames
)

// isoVolume is the tree ReadISOFile walks.
type isoVolume struct {
	r     io.ReaderAt
	block int64 // logical block size
	root  isoEntry
	names isoNames
	skip  int // SUSP bytes to skip at the start of each system use area
}

// openISO reads the volume descriptors and picks the tree whose names
// mount(8) would show.
func openISO(r io.ReaderAt) (*isoVolume, error) {
	desc := make([]byte, isoSector)
	var pvd, joliet []byte
	for i := int64(0); i < isoMaxDescs; i++ {
		if _, err := r.ReadAt(desc, (16+i)*isoSector); err != nil {
			return nil, ErrNotISO9660
		}
		if string(desc[1:6]) != "CD001" {
			return nil, ErrNotISO9660
		}
		switch desc[0] {
		case 1:
			if pvd == nil {
				pvd = bytes.Clone(desc)
			}
		case 2:
			if esc := desc[88:91]; joliet == nil && esc[0] == '%' && esc[1] == '/' && (esc[2] == '@' || esc[2] == 'C' || esc[2] == 'E') {
				joliet = bytes.Clone(desc)
			}
		case 255:
			i = isoMaxDescs
		}
	}
	if pvd == nil {
		return nil, ErrNotISO9660
	}
	v := &isoVolume{r: r, block: int64(binary.LittleEndian.Uint16(pvd[128:130]))}
	if v.block != 512 && v.block != 1024 && v.block != 2048 {
		return nil, fmt.Errorf("%w: logical block size %d", ErrISOUnsupported, v.block)
	}
	root, ok := parseISORecord(pvd[156:190])
	if !ok || !root.dir {
		return nil, fmt.Errorf("%w: no root folder", ErrNotISO9660)
	}
	v.root = root
	// SUSP announces itself with an "SP" entry in the root's "." record
	// (IEEE P1281), Rock Ridge with an "ER" entry there or in its
	// continuation area. Linux, like this reader, takes Rock Ridge names
	// where both are found, or where SP is and there are no Joliet names.
	first, err := v.readDir(root)
	if err != nil {
		return nil, err
	}
	if rec, ok := nextRecord(first, 0); ok && rec.len >= 34 {
		if su := systemUse(first[rec.off : rec.off+rec.len]); len(su) >= 7 && string(su[0:2]) == "SP" && su[4] == 0xBE && su[5] == 0xEF {
			if joliet == nil || v.hasER(su) {
				v.names, v.skip = rockRidgeNames, int(su[6])
				return v, nil
			}
		}
	}
	if joliet != nil {
		if jr, ok := parseISORecord(joliet[156:190]); ok && jr.dir {
			v.root, v.names = jr, jolietNames
		}
	}
	return v, nil
}

// hasER reports whether the system use area su, or the one continuation
// area its CE entry points to, holds an "ER" (extensions reference) entry.
func (v *isoVolume) hasER(su []byte) bool {
	for hops := 0; hops < 2 && su != nil; hops++ {
		var next []byte
		for sig, e := range suspEntries(su) {
			switch sig {
			case "ER":
				return true
			case "CE":
				if len(e) >= 28 {
					le := binary.LittleEndian
					block, off, n := le.Uint32(e[4:8]), le.Uint32(e[12:16]), le.Uint32(e[20:24])
					if n > 0 && n <= isoSector && int64(off)+int64(n) <= v.block {
						next = make([]byte, n)
						if _, err := v.r.ReadAt(next, int64(block)*v.block+int64(off)); err != nil {
							next = nil
						}
					}
				}
			}
		}
		su = next
	}
	return false
}

// suspEntries yields the SUSP entries of a system use area: each one's
// two-letter signature and its bytes (length at [2], at least 4); it stops
// at the first entry whose length does not fit.
func suspEntries(su []byte) iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		for len(su) >= 4 {
			l := int(su[2])
			if l < 4 || l > len(su) {
				return
			}
			if !yield(string(su[0:2]), su[:l]) {
				return
			}
			su = su[l:]
		}
	}
}

// parseISORecord reads the fixed part of a directory record.
func parseISORecord(b []byte) (isoEntry, bool) {
	if len(b) < 33 || int(b[0]) < 33 || int(b[0]) > len(b) {
		return isoEntry{}, false
	}
	if b[25]&0x80 != 0 || b[26] != 0 || b[27] != 0 { // a file in several extents, or interleaved
		return isoEntry{}, false
	}
	return isoEntry{
		// The data follows the extended attribute record, if any (byte 1, in blocks).
		extent: binary.LittleEndian.Uint32(b[2:6]) + uint32(b[1]),
		size:   binary.LittleEndian.Uint32(b[10:14]),
		dir:    b[25]&0x02 != 0,
	}, true
}

// readDir reads a folder's extent, bounded.
func (v *isoVolume) readDir(e isoEntry) ([]byte, error) {
	if e.size > isoMaxDirSize {
		return nil, fmt.Errorf("folder of %d bytes: damaged", e.size)
	}
	b := make([]byte, e.size)
	if _, err := v.r.ReadAt(b, int64(e.extent)*v.block); err != nil {
		return nil, err
	}
	return b, nil
}

type recordPos struct{ off, len int }

// nextRecord finds the directory record at or after off: records never
// cross a sector, and a zero length byte pads to the next one.
func nextRecord(dir []byte, off int) (recordPos, bool) {
	for off < len(dir) {
		n := int(dir[off])
		if n == 0 {
			off = (off/isoSector + 1) * isoSector
			continue
		}
		if n < 34 || off+n > len(dir) {
			return recordPos{}, false
		}
		return recordPos{off, n}, true
	}
	return recordPos{}, false
}

// systemUse returns a record's system use area (where Rock Ridge keeps names).
func systemUse(rec []byte) []byte {
	n := int(rec[32])
	start := 33 + n
	if n%2 == 0 {
		start++ // padding after an even-length name
	}
	if start > len(rec) {
		return nil
	}
	return rec[start:]
}

// lookup finds name in the folder dir.
func (v *isoVolume) lookup(dir isoEntry, name string) (isoEntry, bool, error) {
	b, err := v.readDir(dir)
	if err != nil {
		return isoEntry{}, false, err
	}
	var unread error // a record whose name this reader cannot tell
	for pos, ok := nextRecord(b, 0); ok; pos, ok = nextRecord(b, pos.off+pos.len) {
		rec := b[pos.off : pos.off+pos.len]
		nameLen := int(rec[32])
		if 33+nameLen > len(rec) {
			return isoEntry{}, false, errors.New("directory record name runs past the record: damaged")
		}
		raw := rec[33 : 33+nameLen]
		if nameLen == 1 && raw[0] <= 1 { // "." and ".."
			continue
		}
		if rec[25]&0x04 != 0 { // an associated file, which mount(8) hides
			continue
		}
		got, exact, err := v.recordName(rec, raw)
		if err != nil {
			if unread == nil {
				unread = err
			}
			continue
		}
		if got == name || !exact && strings.EqualFold(got, name) {
			e, ok := parseISORecord(rec)
			if !ok {
				return isoEntry{}, false, fmt.Errorf("%w: %s is in several extents or interleaved", ErrISOUnsupported, name)
			}
			return e, true, nil
		}
	}
	if unread != nil { // it may have been that one
		return isoEntry{}, false, unread
	}
	return isoEntry{}, false, nil
}

// recordName is the name mount(8) shows for a record, and whether it is
// matched exactly (Rock Ridge) or case-insensitively (Joliet, which Linux
// matches so by default, and plain names, which it shows lowercased).
func (v *isoVolume) recordName(rec, raw []byte) (string, bool, error) {
	switch v.names {
	case rockRidgeNames:
		su := systemUse(rec)
		su = su[min(v.skip, len(su)):]
		var nm []byte
		found, continued := false, false
		for sig, e := range suspEntries(su) {
			switch sig {
			case "NM":
				// CURRENT or PARENT names "." or "..": not this record's own.
				if len(e) >= 5 && e[4]&0x06 == 0 {
					nm = append(nm, e[5:]...)
					found = true
					if e[4]&0x01 == 0 { // no CONTINUE flag: complete
						return string(nm), true, nil
					}
				}
			case "CE":
				continued = true
			}
		}
		switch {
		case continued: // the name, or its end, is in a continuation area
			return "", false, fmt.Errorf("%w: a Rock Ridge name continues in another area", ErrISOUnsupported)
		case found:
			return string(nm), true, nil
		}
		return plainName(raw), false, nil // a record without NM: its plain name
	case jolietNames:
		if len(raw)%2 != 0 {
			return "", false, errors.New("odd-length Joliet name: damaged")
		}
		u := make([]uint16, len(raw)/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(raw[2*i:])
		}
		return strings.TrimSuffix(stripVersion(string(utf16.Decode(u))), "."), false, nil
	}
	return plainName(raw), false, nil
}

// plainName is an ISO9660 file identifier as mount(8)'s map=normal shows
// it: without the ";1" version and a trailing dot.
func plainName(raw []byte) string {
	return strings.TrimSuffix(stripVersion(string(raw)), ".")
}

// stripVersion drops the ";1" version, as Linux does (other versions stay).
func stripVersion(s string) string {
	return strings.TrimSuffix(s, ";1")
}
