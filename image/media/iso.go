package media

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// ISOOptions controls WriteISO.
type ISOOptions struct {
	// VolumeLabel is the ISO9660 volume identifier, e.g. "ETOILE" (the agent
	// finds the medium by it).
	VolumeLabel string
	Files       []File
	// BIOSBootImage is the El Torito BIOS no-emulation image, with a boot
	// info table and load size 4, e.g. "/isolinux/isolinux.bin". Empty: no
	// BIOS entry and no isohybrid MBR boot code.
	BIOSBootImage string
	// BootCatalog is where the El Torito catalog appears, e.g. "/isolinux/boot.cat".
	BootCatalog string
	// EFIBootImage is the FAT image of the El Torito UEFI entry, e.g.
	// "/boot/efiboot.img". Empty: no UEFI entry and no EFI partition.
	EFIBootImage string
	// MBRCode is isohdpfx.bin (432 bytes or more; only the first 432 are
	// used) from Debian's isolinux package. Empty: the hybrid MBR has no
	// boot code and the stick boots only under UEFI.
	MBRCode []byte
	// DiskGUID is the hybrid GPT's disk GUID; empty derives one from the
	// label and Epoch.
	DiskGUID string
	// Epoch is every date written (volume descriptor, directory records,
	// Rock Ridge), in Unix seconds.
	Epoch int64
}

const (
	isoSector       = 2048
	gptEntries      = 248 // as xorriso: the entry array fills LBA 2..63
	gptEntrySize    = 128
	gptReserved     = 64 // sectors kept for the backup GPT at the end
	isoHybridAttrs  = 0x1000000000000001
	isoHybridHeads  = 64
	isoHybridSector = 32
)

// WriteISO writes a hybrid ISO: ISO9660 with Rock Ridge, El Torito BIOS and
// UEFI entries, and the isohybrid MBR and GPT that go-diskfs does not write,
// so the same file boots as a CD and, written raw to a USB stick, under BIOS
// and UEFI. The layout follows xorriso's -isohybrid-mbr with
// -isohybrid-gpt-basdat (see writeIsohybrid).
func WriteISO(dst string, opts ISOOptions) error {
	return WriteISOContext(context.Background(), dst, opts)
}

// WriteISOContext is WriteISO that stops when ctx is done: between files and
// every few MiB while they are staged for go-diskfs, and at the next sector
// go-diskfs writes into the image. It then returns ctx's error, wrapped, and
// leaves no dst.
func WriteISOContext(ctx context.Context, dst string, opts ISOOptions) error {
	if opts.VolumeLabel == "" || len(opts.VolumeLabel) > 32 {
		return fmt.Errorf("ISOOptions.VolumeLabel %q must be 1 to 32 characters", opts.VolumeLabel)
	}
	if len(opts.MBRCode) > 0 && len(opts.MBRCode) < 432 {
		return fmt.Errorf("ISOOptions.MBRCode is %d bytes; isohdpfx.bin has at least 432 (apt package isolinux, /usr/lib/ISOLINUX/isohdpfx.bin)", len(opts.MBRCode))
	}
	files, err := cleanFiles(opts.Files)
	if err != nil {
		return fmt.Errorf("ISO files: %w", err)
	}
	var efiSize int64
	for _, want := range []struct{ field, path string }{{"BIOSBootImage", opts.BIOSBootImage}, {"EFIBootImage", opts.EFIBootImage}} {
		if want.path == "" {
			continue
		}
		found := false
		for _, f := range files {
			if f.Path == filepath.Clean(want.path) {
				found = true
				if want.field == "EFIBootImage" {
					if efiSize, err = f.size(); err != nil {
						return err
					}
				}
			}
		}
		if !found {
			return fmt.Errorf("ISOOptions.%s %q is not among Files: add it", want.field, want.path)
		}
	}
	if opts.BIOSBootImage == "" && opts.EFIBootImage == "" && opts.BootCatalog != "" {
		return fmt.Errorf("ISOOptions.BootCatalog is set but there is no boot image")
	}
	diskGUID := opts.DiskGUID
	if diskGUID == "" {
		diskGUID = derivedGUID("etoile-iso", fmt.Sprintf("%d/%s", opts.Epoch, opts.VolumeLabel))
	}
	if _, err := guidBytes(diskGUID); err != nil {
		return fmt.Errorf("ISOOptions.DiskGUID: %w", err)
	}

	if err := stopped(ctx, fmt.Sprintf("write ISO %q", dst)); err != nil {
		return err
	}
	f, commit, cleanup, err := atomicFile(dst)
	if err != nil {
		return err
	}
	defer cleanup()
	// go-diskfs builds the ISO from a folder: the files are staged in one
	// under $TMPDIR (never in dst's folder, which must only ever hold
	// complete outputs; etoile build points TMPDIR into its work folder).
	ws, err := os.MkdirTemp("", "etoile-iso-")
	if err != nil {
		return fmt.Errorf("create ISO workspace in %q: %w (set TMPDIR to a writable folder)", os.TempDir(), err)
	}
	defer os.RemoveAll(ws)
	// MkdirTemp makes it 0700; it becomes the ISO's root folder.
	if err := os.Chmod(ws, 0o755); err != nil {
		return fmt.Errorf("ISO workspace: %w", err)
	}
	what := fmt.Sprintf("write ISO %q", dst)
	if err := stageFiles(ctx, ws, files); err != nil {
		if stop := stoppedBy(ctx, what, err); stop != nil {
			return stop
		}
		return err
	}
	estimate := int64(1 << 20)
	for _, fl := range files {
		n, err := fl.size()
		if err != nil {
			return err
		}
		estimate += roundUp(n, isoSector) + 4*isoSector
	}
	iso, err := iso9660.Create(file.New(ctxFile{f, ctx}, false), estimate, 0, isoSector, ws)
	if err != nil {
		return fmt.Errorf("create ISO9660 in %q: %w", dst, err)
	}
	fo := iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: opts.VolumeLabel}
	if opts.BIOSBootImage != "" || opts.EFIBootImage != "" {
		et := &iso9660.ElTorito{BootCatalog: strings.TrimPrefix(opts.BootCatalog, "/")}
		if opts.BIOSBootImage != "" {
			e := &iso9660.ElToritoEntry{Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation,
				BootFile: strings.TrimPrefix(opts.BIOSBootImage, "/"), BootTable: true}
			e.SetLoadSize(4)
			et.Entries = append(et.Entries, e)
		}
		if opts.EFIBootImage != "" {
			et.Entries = append(et.Entries, &iso9660.ElToritoEntry{Platform: iso9660.EFI, Emulation: iso9660.NoEmulation,
				BootFile: strings.TrimPrefix(opts.EFIBootImage, "/")})
		}
		fo.ElTorito = et
	}
	if err := iso.Finalize(fo); err != nil {
		if stop := stoppedBy(ctx, what, err); stop != nil {
			return stop
		}
		return fmt.Errorf("write ISO9660 %q: %w", dst, err)
	}
	// go-diskfs ignores the failure of some writes: one may have been refused.
	if err := stopped(ctx, what); err != nil {
		return err
	}
	if err := normalizeISO(f, opts.Epoch); err != nil {
		return fmt.Errorf("normalize ISO %q: %w", dst, err)
	}
	if err := writeIsohybrid(f, opts, diskGUID, efiSize); err != nil {
		return fmt.Errorf("write isohybrid MBR/GPT in %q: %w", dst, err)
	}
	if err := stopped(ctx, what); err != nil {
		return err
	}
	return commit()
}

// isoDate17 is the 17-byte volume-descriptor date form, in UTC.
func isoDate17(t time.Time) []byte {
	return append([]byte(t.UTC().Format("20060102150405")+"00"), 0)
}

// isoDate7 is the 7-byte directory-record (and Rock Ridge TF) date form.
func isoDate7(t time.Time) []byte {
	t = t.UTC()
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

// normalizeISO rewrites what go-diskfs takes from the clock and from the
// staging folder, and what it leaves unset, so the bytes depend only on the
// inputs:
//   - the primary volume descriptor's dates, every directory record's date
//     and every Rock Ridge TF timestamp (go-diskfs records the workspace's
//     ctime, which no caller can set) become the epoch;
//   - every Rock Ridge PX owner becomes 0:0;
//   - every PX link count becomes 1. go-diskfs copies the staging folder's
//     st_nlink, which depends on the host filesystem (ext4 and tmpfs give a
//     folder 2 + its subfolders, btrfs 1, ZFS its entry count). Every file
//     is staged as a fresh copy, so 1 is exact for files; for folders 1 is
//     what xorriso (libisofs) writes and what Linux reports for an ISO
//     without Rock Ridge, and find reads it as "unknown" rather than
//     skipping subfolders on a wrong count, and it needs no count of the tree;
//   - the El Torito boot catalog, which go-diskfs adds with PX mode 0 (no
//     permission at all) and link count 0, becomes a 0444 regular file, as
//     xorriso makes it.
//
// It walks the directory tree from the root record, following SUSP
// continuation areas.
func normalizeISO(f *os.File, epoch int64) error {
	t := epochTime(epoch)
	pvd := make([]byte, isoSector)
	if _, err := f.ReadAt(pvd, 16*isoSector); err != nil {
		return fmt.Errorf("read primary volume descriptor: %w", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return fmt.Errorf("sector 16 is not a primary volume descriptor")
	}
	copy(pvd[813:], isoDate17(t))                // creation
	copy(pvd[830:], isoDate17(t))                // modification
	copy(pvd[847:], append(make([]byte, 16), 0)) // expiration: none
	copy(pvd[864:], isoDate17(t))                // effective
	for i := 847; i < 863; i++ {
		pvd[i] = '0'
	}
	copy(pvd[156+18:], isoDate7(t))
	if _, err := f.WriteAt(pvd, 16*isoSector); err != nil {
		return fmt.Errorf("write primary volume descriptor: %w", err)
	}
	w := isoWalker{f: f, date: isoDate7(t), seen: map[uint32]bool{}}
	// The boot catalog's extent, from the El Torito boot record.
	brvd := make([]byte, isoSector)
	if _, err := f.ReadAt(brvd, 17*isoSector); err != nil {
		return fmt.Errorf("read volume descriptor 17: %w", err)
	}
	if brvd[0] == 0 && strings.HasPrefix(string(brvd[7:39]), "EL TORITO SPECIFICATION") {
		w.catalog = binary.LittleEndian.Uint32(brvd[71:])
	}
	root := pvd[156 : 156+34]
	return w.dir(binary.LittleEndian.Uint32(root[2:]), binary.LittleEndian.Uint32(root[10:]))
}

type isoWalker struct {
	f       *os.File
	date    []byte
	seen    map[uint32]bool
	catalog uint32 // LBA of the El Torito boot catalog, 0 if none
}

// Rock Ridge PX (RRIP 1.10, 36 bytes) offsets: mode, link count, uid and
// gid, each both-endian (little-endian 4 bytes, then big-endian 4 bytes).
const (
	pxMode  = 4
	pxLinks = 12
	pxUID   = 20
	pxLen   = 36
	// catalogMode is the boot catalog's PX mode: a 0444 regular file.
	catalogMode = 0o100444
)

// putBoth writes v both-endian (ISO 9660 7.3.3) at b[0:8].
func putBoth(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:], v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func (w *isoWalker) dir(lba, size uint32) error {
	if w.seen[lba] {
		return nil
	}
	w.seen[lba] = true
	st, err := w.f.Stat()
	if err != nil {
		return err
	}
	if int64(lba)*isoSector+int64(size) > st.Size() || size > 64<<20 {
		return fmt.Errorf("directory at sector %d claims %d bytes beyond the image", lba, size)
	}
	buf := make([]byte, roundUp(int64(size), isoSector))
	if _, err := w.f.ReadAt(buf, int64(lba)*isoSector); err != nil {
		return fmt.Errorf("read directory at sector %d: %w", lba, err)
	}
	var subdirs [][2]uint32
	for pos := 0; pos < int(size); {
		n := int(buf[pos])
		if n == 0 { // records never cross a sector: skip to the next one
			pos = (pos/isoSector + 1) * isoSector
			continue
		}
		if n < 34 || pos+n > len(buf) {
			return fmt.Errorf("bad directory record at sector %d byte %d", lba, pos)
		}
		rec := buf[pos : pos+n]
		copy(rec[18:25], w.date)
		nameLen := int(rec[32])
		if 33+nameLen > n {
			return fmt.Errorf("directory record at sector %d byte %d has a name past its end", lba, pos)
		}
		name := rec[33 : 33+nameLen]
		su := 33 + nameLen
		if nameLen%2 == 0 {
			su++
		}
		isSelf := nameLen == 1 && (name[0] == 0 || name[0] == 1)
		// go-diskfs records the catalog as a file whose extent is the one
		// the boot record names (an empty file may share an LBA: size > 0).
		catalog := w.catalog != 0 && rec[25]&2 == 0 && !isSelf &&
			binary.LittleEndian.Uint32(rec[2:]) == w.catalog && binary.LittleEndian.Uint32(rec[10:]) > 0
		if su < n {
			if err := w.susp(rec[su:], catalog); err != nil {
				return fmt.Errorf("directory at sector %d: %w", lba, err)
			}
		}
		if rec[25]&2 != 0 && !isSelf {
			subdirs = append(subdirs, [2]uint32{binary.LittleEndian.Uint32(rec[2:]), binary.LittleEndian.Uint32(rec[10:])})
		}
		pos += n
	}
	if _, err := w.f.WriteAt(buf[:size], int64(lba)*isoSector); err != nil {
		return fmt.Errorf("write directory at sector %d: %w", lba, err)
	}
	for _, d := range subdirs {
		if err := w.dir(d[0], d[1]); err != nil {
			return err
		}
	}
	return nil
}

// susp patches the TF and PX entries of one system use area, in place, and
// follows its CE continuation area; catalog marks the boot catalog's record.
func (w *isoWalker) susp(b []byte, catalog bool) error {
	for pos := 0; pos+4 <= len(b); {
		sig, n := string(b[pos:pos+2]), int(b[pos+2])
		if n < 4 || pos+n > len(b) {
			return nil // padding or end of the area
		}
		e := b[pos : pos+n]
		switch sig {
		case "TF":
			size := 7
			if e[4]&0x80 != 0 {
				size = 17
			}
			off := 5
			for bit := 0; bit < 7; bit++ {
				if e[4]&(1<<bit) == 0 {
					continue
				}
				if off+size > n {
					return fmt.Errorf("short Rock Ridge TF entry")
				}
				if size == 7 {
					copy(e[off:], w.date)
				} else {
					copy(e[off:], isoDate17(time.Time{})) // long form is not written by go-diskfs
				}
				off += size
			}
		case "PX":
			if n >= pxLen {
				putBoth(e[pxLinks:], 1)
				clear(e[pxUID:pxLen]) // uid and gid, both byte orders
				if catalog {
					putBoth(e[pxMode:], catalogMode)
				}
			}
		case "CE":
			if n >= 28 {
				lba := binary.LittleEndian.Uint32(e[4:])
				off := binary.LittleEndian.Uint32(e[12:])
				length := binary.LittleEndian.Uint32(e[20:])
				if length > isoSector*4 {
					return fmt.Errorf("continuation area of %d bytes", length)
				}
				ce := make([]byte, length)
				at := int64(lba)*isoSector + int64(off)
				if _, err := w.f.ReadAt(ce, at); err != nil {
					return fmt.Errorf("read continuation area: %w", err)
				}
				if err := w.susp(ce, catalog); err != nil {
					return err
				}
				if _, err := w.f.WriteAt(ce, at); err != nil {
					return fmt.Errorf("write continuation area: %w", err)
				}
			}
		case "ST":
			return nil
		}
		pos += n
	}
	return nil
}

// writeIsohybrid pads the image and writes the hybrid MBR and GPT, as xorriso
// does with -isohybrid-mbr isohdpfx.bin -isohybrid-gpt-basdat:
//   - the image is padded to a 1 MiB (64 heads x 32 sectors) multiple with
//     room for the backup GPT, and the volume size in the PVD covers it;
//   - MBR bytes 0-431 are isohdpfx.bin's code, bytes 432-435 the 512-byte
//     LBA of the El Torito BIOS image (where the code finds isolinux.bin),
//     440-443 a disk signature;
//   - MBR partition 1: active, type 0x00, from sector 0 over the whole
//     image; partition 2: type 0xEF over the El Torito EFI image;
//   - a GPT with 248 entries at LBA 2, first usable LBA 64, the backup in
//     the last 64 sectors, listing the same two ranges as basic data
//     ("ISOHybrid", "ISOHybrid1"; attributes 0x1000000000000001).
func writeIsohybrid(f *os.File, opts ISOOptions, diskGUID string, efiSize int64) error {
	pvd := make([]byte, isoSector)
	if _, err := f.ReadAt(pvd, 16*isoSector); err != nil {
		return fmt.Errorf("read primary volume descriptor: %w", err)
	}
	content := int64(binary.LittleEndian.Uint32(pvd[80:])) * isoSector
	total := roundUp(content+gptReserved*512, isoHybridHeads*isoHybridSector*512)
	sectors := total / 512
	if err := f.Truncate(total); err != nil {
		return fmt.Errorf("pad image to %d bytes: %w", total, err)
	}
	binary.LittleEndian.PutUint32(pvd[80:], uint32(total/isoSector))
	binary.BigEndian.PutUint32(pvd[84:], uint32(total/isoSector))
	if _, err := f.WriteAt(pvd, 16*isoSector); err != nil {
		return fmt.Errorf("write volume size: %w", err)
	}

	biosLBA, efiLBA, err := elToritoImages(f)
	if err != nil {
		return err
	}

	mbr := make([]byte, 512)
	if len(opts.MBRCode) >= 432 {
		copy(mbr, opts.MBRCode[:432])
	}
	if opts.BIOSBootImage != "" {
		binary.LittleEndian.PutUint32(mbr[432:], biosLBA*4)
	}
	guid, _ := guidBytes(diskGUID)
	copy(mbr[440:444], guid[12:16])
	part1 := mbrEntry(0x80, 0x00, 0, uint32(sectors), true)
	copy(mbr[446:], part1)
	type rng struct{ start, count uint64 }
	ranges := []rng{{0, uint64(sectors - gptReserved)}}
	if opts.EFIBootImage != "" {
		start := uint64(efiLBA) * 4
		count := uint64(roundUp(efiSize, 512) / 512)
		copy(mbr[462:], mbrEntry(0x00, 0xef, uint32(start), uint32(count), false))
		ranges = append(ranges, rng{start, count})
	}
	mbr[510], mbr[511] = 0x55, 0xaa
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}

	entries := make([]byte, gptEntries*gptEntrySize)
	basic, _ := guidBytes(string(TypeBasicData))
	for i, r := range ranges {
		e := entries[i*gptEntrySize:]
		copy(e[0:16], basic[:])
		pg, _ := guidBytes(derivedGUID(diskGUID, fmt.Sprintf("isohybrid-%d", i+1)))
		copy(e[16:32], pg[:])
		binary.LittleEndian.PutUint64(e[32:], r.start)
		binary.LittleEndian.PutUint64(e[40:], r.start+r.count-1)
		binary.LittleEndian.PutUint64(e[48:], isoHybridAttrs)
		name := "ISOHybrid"
		if i > 0 {
			name += fmt.Sprint(i)
		}
		for j, c := range name {
			binary.LittleEndian.PutUint16(e[56+2*j:], uint16(c))
		}
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	last := uint64(sectors - 1)
	header := func(self, other, entriesLBA uint64) []byte {
		h := make([]byte, 512)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], self)
		binary.LittleEndian.PutUint64(h[32:], other)
		binary.LittleEndian.PutUint64(h[40:], gptReserved)
		binary.LittleEndian.PutUint64(h[48:], uint64(sectors-gptReserved))
		copy(h[56:72], guid[:])
		binary.LittleEndian.PutUint64(h[72:], entriesLBA)
		binary.LittleEndian.PutUint32(h[80:], gptEntries)
		binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	backupEntries := last - gptEntries*gptEntrySize/512
	for _, w := range []struct {
		at   int64
		data []byte
	}{
		{512, header(1, last, 2)},
		{2 * 512, entries},
		{int64(backupEntries) * 512, entries},
		{int64(last) * 512, header(last, 1, backupEntries)},
	} {
		if _, err := f.WriteAt(w.data, w.at); err != nil {
			return fmt.Errorf("write GPT: %w", err)
		}
	}
	return nil
}

// mbrEntry encodes an MBR partition entry. CHS values use the isohybrid
// geometry (64 heads, 32 sectors) and saturate past cylinder 1023; like
// xorriso, the EFI entry uses the "beyond CHS" value for both ends.
func mbrEntry(status, typ byte, start, count uint32, chs bool) []byte {
	e := make([]byte, 16)
	e[0], e[4] = status, typ
	enc := func(lba uint32) []byte {
		c := lba / (isoHybridHeads * isoHybridSector)
		if !chs || c > 1023 {
			return []byte{0xfe, 0xff, 0xff}
		}
		h := (lba / isoHybridSector) % isoHybridHeads
		s := lba%isoHybridSector + 1
		return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
	}
	copy(e[1:4], enc(start))
	copy(e[5:8], enc(start+count-1))
	binary.LittleEndian.PutUint32(e[8:], start)
	binary.LittleEndian.PutUint32(e[12:], count)
	return e
}

// elToritoImages reads the boot catalog and returns the 2048-byte LBAs of
// the BIOS (default) entry and of the first EFI section entry (0 if absent).
func elToritoImages(f *os.File) (bios, efi uint32, err error) {
	brvd := make([]byte, isoSector)
	if _, err := f.ReadAt(brvd, 17*isoSector); err != nil {
		return 0, 0, fmt.Errorf("read boot record: %w", err)
	}
	if brvd[0] != 0 || !strings.HasPrefix(string(brvd[7:39]), "EL TORITO SPECIFICATION") {
		return 0, 0, nil // not bootable
	}
	cat := make([]byte, isoSector)
	if _, err := f.ReadAt(cat, int64(binary.LittleEndian.Uint32(brvd[71:]))*isoSector); err != nil {
		return 0, 0, fmt.Errorf("read boot catalog: %w", err)
	}
	if cat[0] != 1 || cat[30] != 0x55 || cat[31] != 0xaa {
		return 0, 0, fmt.Errorf("boot catalog has no validation entry")
	}
	first := binary.LittleEndian.Uint32(cat[32+8:])
	if cat[1] == 0xef {
		efi = first
	} else {
		bios = first
	}
	platform := byte(0)
	for pos := 64; pos+32 <= len(cat); pos += 32 {
		switch cat[pos] {
		case 0x90, 0x91:
			platform = cat[pos+1]
		case 0x88, 0x00:
			if platform == 0xef && efi == 0 && pos > 64 {
				efi = binary.LittleEndian.Uint32(cat[pos+8:])
			}
		}
		if cat[pos] == 0 && cat[pos+1] == 0 {
			break
		}
	}
	return bios, efi, nil
}
