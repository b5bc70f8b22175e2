package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// FATOptions controls WriteFAT and the ESP written by WriteRaw.
type FATOptions struct {
	// Label is the volume label, at most 11 characters, e.g. "ETOILE-ESP".
	Label string
	// VolumeID is the volume serial number (go-diskfs would derive it from
	// the clock).
	VolumeID uint32
	// Epoch dates every directory entry, in Unix seconds (clamped to FAT's
	// 1980-2107 range).
	Epoch int64
}

// MinFATSize is the smallest FAT32 image WriteFAT accepts: below about
// 33 MiB a FAT32 with 512-byte clusters has fewer than the 65525 clusters
// the format requires and fsck.vfat and firmware may reject it.
const MinFATSize = 34 << 20

// FATSize returns an image size (MiB multiple, at least MinFATSize) large
// enough for files with 512-byte clusters plus room for directories.
func FATSize(files []File) (int64, error) {
	var total int64
	for _, f := range files {
		n, err := f.size()
		if err != nil {
			return 0, err
		}
		total += roundUp(n, 512) + 64*len64(f.Path)
	}
	// FAT32 tables (4 bytes per 512-byte cluster, two copies) and slack.
	total += total/64 + 1<<20
	return max(roundUp(total, 1<<20), MinFATSize), nil
}

func len64(s string) int64 { return int64(len(s)) }

// WriteFAT writes a whole-device FAT32 image (no partition table) of size
// bytes holding files, e.g. the El Torito EFI image.
func WriteFAT(dst string, size int64, files []File, opts FATOptions) error {
	return WriteFATContext(context.Background(), dst, size, files, opts)
}

// WriteFATContext is WriteFAT that stops when ctx is done, between files and
// at the next cluster go-diskfs writes; it then returns ctx's error, wrapped,
// and leaves no dst.
func WriteFATContext(ctx context.Context, dst string, size int64, files []File, opts FATOptions) error {
	if size < MinFATSize {
		return fmt.Errorf("FAT image size %d is below the FAT32 minimum %d: use FATSize(files)", size, MinFATSize)
	}
	files, err := cleanFiles(files)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("write FAT image %q", dst)
	if err := stopped(ctx, what); err != nil {
		return err
	}
	f, commit, cleanup, err := atomicFile(dst)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("size %q to %d bytes: %w", dst, size, err)
	}
	if err := writeFATAt(ctx, f, 0, size, files, opts); err != nil {
		if stop := stoppedBy(ctx, what, err); stop != nil {
			return stop
		}
		if full := (*FATFullError)(nil); errors.As(err, &full) {
			return fmt.Errorf("%s: %w: make the files smaller or the image larger (FATSize(files) gives a size that holds them)", what, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := stopped(ctx, what); err != nil {
		return err
	}
	return commit()
}

// writeFATAt creates a FAT32 filesystem at [start, start+size) of f, fills it
// and normalizes it; go-diskfs writes through a ctxFile, and ctx is looked at
// before each file.
func writeFATAt(ctx context.Context, f *os.File, start, size int64, files []File, opts FATOptions) error {
	if len(opts.Label) > 11 {
		return fmt.Errorf("FAT label %q is longer than 11 characters", opts.Label)
	}
	b := file.New(ctxFile{f, ctx}, false)
	// reproducible=true leaves the volume id at 0; normalizeFAT sets it.
	fs, err := fat32.Create(b, size, start, 512, strings.ToUpper(opts.Label), true)
	if err != nil {
		return fmt.Errorf("create FAT32 (label %q, %d bytes): %w", opts.Label, size, err)
	}
	if err := fatRoom(f, start, size, files); err != nil {
		return err
	}
	made := map[string]bool{"/": true}
	for _, fl := range files {
		if err := stopped(ctx, fmt.Sprintf("write %q", fl.Path)); err != nil {
			return err
		}
		dir := path.Dir(fl.Path)
		if !made[dir] {
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("make folder %q: %w", dir, err)
			}
			for d := dir; d != "/"; d = path.Dir(d) {
				made[d] = true
			}
		}
		r, _, err := fl.open()
		if err != nil {
			return err
		}
		w, err := fs.OpenFile(fl.Path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			r.Close()
			return fmt.Errorf("create %q: %w", fl.Path, err)
		}
		// One large write lets go-diskfs allocate the cluster chain once.
		data, err := io.ReadAll(ctxReader{ctx, r})
		r.Close()
		if err != nil {
			return fmt.Errorf("read %q: %w", fl.Source, err)
		}
		if _, err := w.Write(data); err != nil {
			w.Close()
			if stop := stoppedBy(ctx, fmt.Sprintf("write %q", fl.Path), err); stop != nil {
				return stop
			}
			if strings.Contains(err.Error(), "no space left") { // go-diskfs's errors.New
				return newFATFullError(size, 0, 0, fl.Path, files, err)
			}
			return fmt.Errorf("write %q (%d bytes): %w", fl.Path, len(data), err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("close %q: %w", fl.Path, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return normalizeFAT(f, start, opts)
}

// FATFullError says that a FAT filesystem is too small for its files, and
// lists them. WriteFAT and WriteRaw (for the ESP) return it wrapped, with
// what to do about it; errors.As finds it.
type FATFullError struct {
	// Size is the filesystem's size in bytes.
	Size int64
	// Room is the bytes its data clusters hold; Need is at least what the
	// files and folders take in clusters. Both 0 when go-diskfs ran out of
	// room while writing File.
	Room, Need int64
	// File is the file being written when go-diskfs ran out of room.
	File string
	// Files are all the files, largest first, with their sizes.
	Files []FileSize
	// Err is go-diskfs's error, if it reported one.
	Err error
}

// FileSize is a file's path in a filesystem and its size in bytes.
type FileSize struct {
	Path string
	Size int64
}

func newFATFullError(size, room, need int64, file string, files []File, err error) *FATFullError {
	e := &FATFullError{Size: size, Room: room, Need: need, File: file, Err: err}
	for _, f := range files {
		n, _ := f.size() // already read once
		e.Files = append(e.Files, FileSize{f.Path, n})
	}
	sort.SliceStable(e.Files, func(i, j int) bool { return e.Files[i].Size > e.Files[j].Size })
	return e
}

func (e *FATFullError) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "the %s FAT filesystem is full writing %s", sizeString(e.Size), e.File)
		if e.Err != nil {
			fmt.Fprintf(&b, " (%v)", e.Err)
		}
	} else {
		fmt.Fprintf(&b, "the %s FAT filesystem has room for %s; its files and folders need %s", sizeString(e.Size), sizeString(e.Room), sizeString(e.Need))
	}
	var total int64
	for _, f := range e.Files {
		total += f.Size
	}
	fmt.Fprintf(&b, ": %d files, %s in all, largest first:", len(e.Files), sizeString(total))
	for i, f := range e.Files {
		if i == 8 {
			fmt.Fprintf(&b, " and %d more", len(e.Files)-i)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s %s", f.Path, sizeString(f.Size))
	}
	return b.String()
}

func (e *FATFullError) Unwrap() error { return e.Err }

// sizeString formats a byte count for a person: "33 bytes", "120.0 KiB",
// "256 MiB", "12.4 MiB".
func sizeString(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d bytes", n)
	case n < mib:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/mib)
}

// fatGeometry is what a FAT32 boot sector says of its filesystem's layout.
type fatGeometry struct {
	bs                                           []byte // the boot sector
	bps, spc, reserved, nfats, total, fatSectors int64
}

// readFATGeometry reads the FAT32 boot sector at start of f.
func readFATGeometry(f *os.File, start int64) (fatGeometry, error) {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, start); err != nil {
		return fatGeometry{}, fmt.Errorf("read FAT boot sector: %w", err)
	}
	le := binary.LittleEndian
	return fatGeometry{bs: bs, bps: int64(le.Uint16(bs[11:])), spc: int64(bs[13]), reserved: int64(le.Uint16(bs[14:])),
		nfats: int64(bs[16]), total: int64(le.Uint32(bs[32:])), fatSectors: int64(le.Uint32(bs[36:]))}, nil
}

// fatRoom returns a *FATFullError when files cannot fit in the FAT32
// filesystem go-diskfs just created at start of f: what they take in
// clusters (one for an empty file, which go-diskfs allocates; each folder's
// listing at one 32-byte entry per name) against its free clusters. It
// counts no long-name entries, so it never refuses what go-diskfs could
// write; a tighter miss is reported from the write that fails.
func fatRoom(f *os.File, start, size int64, files []File) error {
	g, err := readFATGeometry(f, start)
	if err != nil {
		return err
	}
	bps, spc, reserved, nfats, total, fatSectors := g.bps, g.spc, g.reserved, g.nfats, g.total, g.fatSectors
	cluster := bps * spc
	if cluster == 0 || total <= reserved+nfats*fatSectors {
		return fmt.Errorf("FAT boot sector is not FAT32 as written by go-diskfs (bps %d, spc %d)", bps, spc)
	}
	room := (total - reserved - nfats*fatSectors) / spc * cluster
	children := map[string]map[string]bool{"/": {}}
	var need int64
	for _, fl := range files {
		n, err := fl.size()
		if err != nil {
			return err
		}
		need += max(roundUp(n, cluster), cluster)
		for p := fl.Path; p != "/"; p = path.Dir(p) {
			d := path.Dir(p)
			if children[d] == nil {
				children[d] = map[string]bool{}
			}
			children[d][p] = true
		}
	}
	for d, c := range children {
		if d == "/" { // the volume label, no "." or ".."
			need += roundUp(int64(len(c)+1)*32, cluster)
		} else {
			need += roundUp(int64(len(c)+2)*32, cluster)
		}
	}
	if need > room {
		return newFATFullError(size, room, need, "", files, nil)
	}
	return nil
}

// normalizeFAT fixes what go-diskfs leaves to the clock or undone, on the
// bytes it wrote at offset start of f:
//   - the volume serial (boot sector and its backup) is set to opts.VolumeID;
//   - the BPB's hidden sectors (boot sector and its backup), which go-diskfs
//     leaves 0, become the sectors before the filesystem in f: on the raw
//     disk the ESP's start LBA, as mkfs.vfat writes it on a partition; 0 for
//     a whole-device image (WriteFAT, e.g. the El Torito EFI image: reached
//     as a CD boot image or, on a USB stick, through the isohybrid MBR/GPT
//     entries at another offset, it has no one start, and xorriso and
//     mkfs.vfat on a file leave 0 too);
//   - every short directory entry (files, folders, ".", "..", the volume
//     label) gets creation, access and modification times of opts.Epoch;
//   - an empty file owns no cluster (go-diskfs gives it one, which fsck.vfat
//     truncates) and ".." in a folder of the root points at cluster 0, as
//     the FAT specification and fsck.vfat require (go-diskfs writes the root's
//     cluster number);
//   - the FSInfo free-cluster count and next-free hint (primary and backup),
//     left "unknown" (0xffffffff), are computed from the FAT, so fsck.vfat
//     has nothing to report.
func normalizeFAT(f *os.File, start int64, opts FATOptions) error {
	g, err := readFATGeometry(f, start)
	if err != nil {
		return err
	}
	bs, bps, spc, reserved, nfats, total, fatSectors := g.bs, g.bps, g.spc, g.reserved, g.nfats, g.total, g.fatSectors
	rootCluster := binary.LittleEndian.Uint32(bs[44:])
	fsinfo := int64(binary.LittleEndian.Uint16(bs[48:]))
	backup := int64(binary.LittleEndian.Uint16(bs[50:]))
	if bps != 512 && bps != 4096 || spc == 0 || nfats == 0 || fatSectors == 0 {
		return fmt.Errorf("FAT boot sector is not FAT32 as written by go-diskfs (bps %d, spc %d)", bps, spc)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if total*bps > st.Size()-start || reserved+nfats*fatSectors >= total || nfats > 2 {
		return fmt.Errorf("FAT layout (%d sectors, %d reserved, %d x %d FAT sectors) does not fit the %d-byte image",
			total, reserved, nfats, fatSectors, st.Size()-start)
	}
	clusterBytes := bps * spc
	dataStart := start + (reserved+nfats*fatSectors)*bps
	clusters := uint32((total - reserved - nfats*fatSectors) / spc)

	// Volume id and hidden sectors, primary and backup boot sector.
	if start%bps != 0 {
		return fmt.Errorf("FAT filesystem at byte %d does not start on a %d-byte sector", start, bps)
	}
	var id, hidden [4]byte
	binary.LittleEndian.PutUint32(id[:], opts.VolumeID)
	binary.LittleEndian.PutUint32(hidden[:], uint32(start/bps))
	for _, s := range []int64{0, backup} {
		if _, err := f.WriteAt(id[:], start+s*bps+67); err != nil {
			return fmt.Errorf("write volume id: %w", err)
		}
		if _, err := f.WriteAt(hidden[:], start+s*bps+28); err != nil {
			return fmt.Errorf("write hidden sectors: %w", err)
		}
	}

	fat := make([]byte, fatSectors*bps)
	if _, err := f.ReadAt(fat, start+reserved*bps); err != nil {
		return fmt.Errorf("read FAT: %w", err)
	}
	next := func(c uint32) uint32 {
		if int64(c)*4+4 > int64(len(fat)) {
			return 0x0fffffff // outside the table: treat as end of chain
		}
		return binary.LittleEndian.Uint32(fat[4*c:]) & 0x0fffffff
	}
	fatChanged := false
	release := func(c uint32) error {
		for n := 0; c >= 2 && c < 0x0ffffff8; n++ {
			if n > int(clusters) || int64(c)*4+4 > int64(len(fat)) {
				return fmt.Errorf("FAT cluster chain through %d is broken", c)
			}
			nx := next(c)
			binary.LittleEndian.PutUint32(fat[4*c:], binary.LittleEndian.Uint32(fat[4*c:])&0xf0000000)
			c = nx
		}
		fatChanged = true
		return nil
	}

	date, tm := fatDateTime(opts.Epoch)
	type dirRef struct {
		cluster    uint32
		parentRoot bool
	}
	queue := []dirRef{{rootCluster, false}}
	seen := map[uint32]bool{}
	for len(queue) > 0 {
		c, parentRoot := queue[0].cluster, queue[0].parentRoot
		queue = queue[1:]
		if seen[c] {
			continue
		}
		seen[c] = true
		// Read the directory's whole cluster chain.
		var chain []uint32
		for cl := c; cl >= 2 && cl < 0x0ffffff8; cl = next(cl) {
			if len(chain) > int(clusters) {
				return fmt.Errorf("FAT cluster chain from %d loops", c)
			}
			chain = append(chain, cl)
		}
		for _, cl := range chain {
			buf := make([]byte, clusterBytes)
			off := dataStart + int64(cl-2)*clusterBytes
			if _, err := f.ReadAt(buf, off); err != nil {
				return fmt.Errorf("read directory cluster %d: %w", cl, err)
			}
			end := false
			for e := 0; e+32 <= len(buf); e += 32 {
				ent := buf[e : e+32]
				if ent[0] == 0 {
					end = true
					break
				}
				if ent[0] == 0xe5 || ent[11] == 0x0f {
					continue
				}
				ent[13] = 0
				binary.LittleEndian.PutUint16(ent[14:], tm)
				binary.LittleEndian.PutUint16(ent[16:], date)
				binary.LittleEndian.PutUint16(ent[18:], date)
				binary.LittleEndian.PutUint16(ent[22:], tm)
				binary.LittleEndian.PutUint16(ent[24:], date)
				name := string(ent[0:11])
				first := uint32(binary.LittleEndian.Uint16(ent[20:]))<<16 | uint32(binary.LittleEndian.Uint16(ent[26:]))
				isDir := ent[11]&0x10 != 0
				switch {
				case isDir && name == "..         " && parentRoot:
					binary.LittleEndian.PutUint16(ent[20:], 0)
					binary.LittleEndian.PutUint16(ent[26:], 0)
				case isDir && name != ".          " && name != "..         ":
					queue = append(queue, dirRef{first, c == rootCluster})
				case !isDir && ent[11]&0x08 == 0 && binary.LittleEndian.Uint32(ent[28:]) == 0 && first != 0:
					if err := release(first); err != nil {
						return err
					}
					binary.LittleEndian.PutUint16(ent[20:], 0)
					binary.LittleEndian.PutUint16(ent[26:], 0)
				}
			}
			if _, err := f.WriteAt(buf, off); err != nil {
				return fmt.Errorf("write directory cluster %d: %w", cl, err)
			}
			if end {
				break
			}
		}
	}

	if fatChanged {
		for i := int64(0); i < nfats; i++ {
			if _, err := f.WriteAt(fat, start+(reserved+i*fatSectors)*bps); err != nil {
				return fmt.Errorf("write FAT %d: %w", i+1, err)
			}
		}
	}
	free, firstFree := uint32(0), uint32(0xffffffff)
	for c := uint32(2); c < clusters+2 && int64(c)*4+4 <= int64(len(fat)); c++ {
		if next(c) == 0 {
			free++
			if firstFree == 0xffffffff {
				firstFree = c
			}
		}
	}

	// FSInfo: free count at 488, next free at 492, primary and backup.
	var fi [8]byte
	binary.LittleEndian.PutUint32(fi[0:], free)
	binary.LittleEndian.PutUint32(fi[4:], firstFree)
	for _, s := range []int64{fsinfo, backup + fsinfo} {
		sig := make([]byte, 4)
		if _, err := f.ReadAt(sig, start+s*bps); err != nil {
			return fmt.Errorf("read FSInfo: %w", err)
		}
		if string(sig) != "RRaA" {
			continue // no FSInfo copy here
		}
		if _, err := f.WriteAt(fi[:], start+s*bps+488); err != nil {
			return fmt.Errorf("write FSInfo: %w", err)
		}
	}
	return nil
}

// fatDateTime encodes epoch (UTC) as FAT date and time words.
func fatDateTime(epoch int64) (date, tm uint16) {
	t := epochTime(epoch)
	if t.Year() < 1980 {
		return 1<<5 | 1, 0 // 1980-01-01 00:00:00
	}
	if t.Year() > 2107 {
		return 127<<9 | 12<<5 | 31, 23<<11 | 59<<5 | 29
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tm = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, tm
}
