// Package initramfs writes the Étoile initramfs: deterministic newc cpio
// archives holding the agent as /init and the selected kernel modules.
//
// The file is two archives one after the other, which the kernel unpacks in
// turn (the layout Debian uses for early microcode): first an uncompressed
// archive of the kernel modules, each compressed on its own with zstd
// (name.ko.zst, listed so in modules.dep), padded with zeros to a 512-byte
// boundary; then the rest (/init, the module index, /etc…) as one archive
// compressed with zstd or xz. The kernel thus never decompresses the 20-30
// MB of modules at boot: the agent decompresses the few the machine needs
// when it loads them. Under emulation this took the kernel's unpacking from
// about 0.6 s to under 0.2 s.
package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/etoile-os/etoile/image/kernel"
)

// File is an extra entry of the archive.
type File struct {
	Path string // absolute path in the initramfs, e.g. "/etc/etoile/image.json"
	// Mode holds permission and type bits: 0 or a plain permission is a
	// regular file (0644 when zero); fs.ModeDir a folder; fs.ModeSymlink a
	// link to Link; fs.ModeDevice|fs.ModeCharDevice a device (Major, Minor).
	Mode         fs.FileMode
	Data         []byte // content of a regular file
	Source       string // host file read for the content when Data is nil
	Link         string // symbolic link target (implies fs.ModeSymlink)
	Major, Minor uint32 // device numbers of a device node
}

// Options describe one initramfs.
type Options struct {
	Init          []byte // the static agent, written as /init 0755
	KernelVersion string
	// Modules are written zstd-compressed at lib/modules/<ver>/<RelPath>.zst,
	// in the first (uncompressed) archive.
	Modules     []kernel.Module
	Compression string // of the second archive: "zstd" (default) | "xz" | "none"
	Epoch       int64  // SOURCE_DATE_EPOCH: every entry's mtime
	Files       []File // extra files (e.g. /etc/etoile/…)
	// Level is the zstd level, 1..22 as in the zstd tool, mapped onto the
	// encoder's four speeds (1: fastest, 2-5: default, 6-9: better, 10+:
	// best); 0 means 19. It is part of the output's identity: change it and
	// the bytes change.
	Level int
}

// Stats describes what Write produced.
type Stats struct {
	Entries          int // cpio entries, trailer excluded
	Files            int // regular files
	Dirs             int
	Devices          int
	Symlinks         int
	Modules          int   // kernel modules among the files
	UncompressedSize int64 // cpio bytes of both archives, as the kernel unpacks them
	CompressedSize   int64 // bytes written to w
	// ModulesSize is the size of the first archive (the compressed modules
	// and their folders, padded); the second archive starts there.
	ModulesSize int64
}

// ModuleSuffix ends the name of every module file in the initramfs.
const ModuleSuffix = ".zst"

// The compressions the kernel can unpack that Étoile writes.
const (
	CompressionZstd = "zstd"
	CompressionXZ   = "xz"
	CompressionNone = "none"
)

// entry is one archive member before writing; content is produced lazily so
// that only one module is in memory at a time.
type entry struct {
	path         string // relative, no leading "/"
	mode         uint32 // st_mode: type | permissions
	major, minor uint32
	content      func() ([]byte, error)
	module       bool
}

const (
	sIFDIR  = 0o040000
	sIFREG  = 0o100000
	sIFLNK  = 0o120000
	sIFCHR  = 0o020000
	sIFMT   = 0o170000
	modeDir = sIFDIR | 0o755
)

// maxModule bounds a decompressed module read into memory.
const maxModule = 256 << 20

// Write writes the initramfs to w. The same Options give the same bytes:
// entries are sorted (parents first), owned by root, stamped with Epoch,
// numbered in order, and compressed single-threaded at a fixed level.
func Write(w io.Writer, opts Options) (Stats, error) {
	return WriteContext(context.Background(), w, opts)
}

// WriteContext is Write that stops when ctx is done: before each entry (each
// module is read and compressed in turn) and every writeChunk bytes of an
// entry's data (the agent, /init, is tens of MiB through the compressor).
// It then returns ctx's error, wrapped with the entry being written; what
// was written to w by then is an incomplete archive.
func WriteContext(ctx context.Context, w io.Writer, opts Options) (Stats, error) {
	comp, err := newCompressor(opts)
	if err != nil {
		return Stats{}, err
	}
	entries, err := plan(opts)
	if err != nil {
		return Stats{}, err
	}
	modules, rest := split(entries)
	cw := &countingWriter{w: w}
	var st Stats
	ino := uint32(0)
	if len(modules) > 0 {
		s, err := writeCpio(ctx, cw, modules, opts.Epoch, &ino)
		st.add(s)
		if err != nil {
			return st, err
		}
		// Pad to a cpio block: the kernel wants the next archive 4-byte
		// aligned, and `cpio -t` then tells where it starts (blocks × 512).
		if _, err := cw.Write(make([]byte, (512-cw.n%512)%512)); err != nil {
			return st, fmt.Errorf("writing initramfs: %w", err)
		}
		st.ModulesSize = cw.n
		st.UncompressedSize = cw.n
	}
	zw, err := comp(cw)
	if err != nil {
		return st, err
	}
	raw := &countingWriter{w: zw}
	s, err := writeCpio(ctx, raw, rest, opts.Epoch, &ino)
	st.add(s)
	if err != nil {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return st, fmt.Errorf("initramfs: finishing %s compression: %w", opts.Compression, err)
	}
	if err := zw.Close(); err != nil {
		return st, fmt.Errorf("finishing %s compression: %w", opts.Compression, err)
	}
	st.UncompressedSize += raw.n
	st.CompressedSize = cw.n
	return st, nil
}

// newCompressor checks the compression options and returns what wraps the
// second archive.
func newCompressor(opts Options) (func(io.Writer) (io.WriteCloser, error), error) {
	switch opts.Compression {
	case "", CompressionZstd:
		level := opts.Level
		if level == 0 {
			level = 19
		}
		if level < 1 || level > 22 {
			return nil, fmt.Errorf("initramfs zstd level %d is out of range: use 1 to 22", level)
		}
		return func(w io.Writer) (io.WriteCloser, error) {
			// One encoder goroutine and a fixed level make the output a pure
			// function of the input; the kernel's unzstd reads standard frames.
			enc, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithEncoderCRC(true))
			if err != nil {
				return nil, fmt.Errorf("starting zstd: %w", err)
			}
			return enc, nil
		}, nil
	case CompressionXZ:
		return func(w io.Writer) (io.WriteCloser, error) {
			// The kernel's xz decoder verifies CRC32 (not xz's default CRC64).
			enc, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(w)
			if err != nil {
				return nil, fmt.Errorf("starting xz: %w", err)
			}
			return enc, nil
		}, nil
	case CompressionNone:
		return func(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil }, nil
	}
	return nil, fmt.Errorf("initramfs compression %q is not supported: use \"zstd\", \"xz\" or \"none\"", opts.Compression)
}

// split puts the module files and every folder above them in the first
// archive, in order, and the rest in the second.
func split(entries []*entry) (modules, rest []*entry) {
	above := map[string]bool{}
	for _, e := range entries {
		if e.module {
			for d := path.Dir(e.path); d != "."; d = path.Dir(d) {
				above[d] = true
			}
		}
	}
	for _, e := range entries {
		if e.module || (above[e.path] && e.mode&sIFMT == sIFDIR) {
			modules = append(modules, e)
		} else {
			rest = append(rest, e)
		}
	}
	return modules, rest
}

func (s *Stats) add(o Stats) {
	s.Entries += o.Entries
	s.Files += o.Files
	s.Dirs += o.Dirs
	s.Devices += o.Devices
	s.Symlinks += o.Symlinks
	s.Modules += o.Modules
}

// moduleEncoder compresses each module; EncodeAll is safe for concurrent
// use and, with one goroutine and a fixed level, deterministic. Each module
// is one single-segment frame that records its size, so the agent's decoder
// allocates it at once.
var moduleEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderCRC(true), zstd.WithSingleSegment(true))
})

// plan lists every entry, checks for clashes and adds missing parents.
func plan(opts Options) ([]*entry, error) {
	if len(opts.Init) == 0 {
		return nil, fmt.Errorf("initramfs: Init (the agent binary for /init) is empty")
	}
	if opts.Epoch < 0 || opts.Epoch > 0xffffffff {
		return nil, fmt.Errorf("initramfs: Epoch %d does not fit a newc mtime (0 to 4294967295)", opts.Epoch)
	}
	byPath := map[string]*entry{}
	add := func(e *entry, what string) error {
		if prev, ok := byPath[e.path]; ok {
			if prev.mode == modeDir && e.mode == modeDir {
				return nil
			}
			return fmt.Errorf("initramfs: %s /%s clashes with an entry already at that path", what, e.path)
		}
		byPath[e.path] = e
		return nil
	}
	static := func(b []byte) func() ([]byte, error) { return func() ([]byte, error) { return b, nil } }

	for _, d := range []string{"dev", "proc", "sys", "run", "mnt", "sysroot", "etc"} {
		add(&entry{path: d, mode: modeDir}, "folder")
	}
	add(&entry{path: "tmp", mode: sIFDIR | 0o1777}, "folder")
	// The kernel opens /dev/console for PID 1's stdio before devtmpfs exists.
	add(&entry{path: "dev/console", mode: sIFCHR | 0o600, major: 5, minor: 1}, "device")
	// When it could not (no console at its start), it leaves fds 0-2
	// closed, and the Go runtime opens /dev/null on them before main: it
	// throws without the node. The agent reopens /dev/console later.
	add(&entry{path: "dev/null", mode: sIFCHR | 0o666, major: 1, minor: 3}, "device")
	add(&entry{path: "init", mode: sIFREG | 0o755, content: static(opts.Init)}, "init")

	if len(opts.Modules) > 0 {
		ver := opts.KernelVersion
		if ver == "" || strings.ContainsAny(ver, "/\x00") || ver == "." || ver == ".." {
			return nil, fmt.Errorf("initramfs: KernelVersion %q is not a valid lib/modules folder name", ver)
		}
		base := "lib/modules/" + ver
		for _, m := range opts.Modules {
			rel := path.Clean(m.RelPath)
			if m.RelPath == "" || path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
				return nil, fmt.Errorf("initramfs: module %s has RelPath %q, not a path inside lib/modules/%s", m.Name, m.RelPath, ver)
			}
			m := m
			if err := add(&entry{path: base + "/" + rel + ModuleSuffix, mode: sIFREG | 0o644, module: true, content: func() ([]byte, error) {
				data, err := readModule(m)
				if err != nil {
					return nil, err
				}
				enc, err := moduleEncoder()
				if err != nil {
					return nil, fmt.Errorf("starting zstd: %w", err)
				}
				return enc.EncodeAll(data, make([]byte, 0, len(data)/3)), nil
			}}, "module "+m.Name); err != nil {
				return nil, err
			}
		}
		index, err := kernel.IndexFiles(opts.Modules, ModuleSuffix)
		if err != nil {
			return nil, fmt.Errorf("module index: %w", err)
		}
		for name, data := range index {
			if err := add(&entry{path: base + "/" + name, mode: sIFREG | 0o644, content: static(data)}, name); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range opts.Files {
		e, err := fileEntry(f)
		if err != nil {
			return nil, err
		}
		if err := add(e, "file"); err != nil {
			return nil, err
		}
	}
	// parents of every entry, so that unpacking never needs to invent one
	for p := range byPath {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if prev, ok := byPath[d]; ok {
				if prev.mode&sIFMT != sIFDIR {
					return nil, fmt.Errorf("initramfs: /%s is needed as a folder for /%s but is another kind of entry", d, p)
				}
				continue
			}
			byPath[d] = &entry{path: d, mode: modeDir}
		}
	}
	out := make([]*entry, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	// Byte order of full paths puts every folder before what it holds.
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

func fileEntry(f File) (*entry, error) {
	p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
	if f.Path == "" || p == "" || !strings.HasPrefix(f.Path, "/") {
		return nil, fmt.Errorf("initramfs: extra file path %q must be absolute, e.g. /etc/etoile/x", f.Path)
	}
	if p != strings.TrimPrefix(f.Path, "/") {
		return nil, fmt.Errorf("initramfs: extra file path %q is not clean (want %q)", f.Path, "/"+p)
	}
	perm := uint32(f.Mode.Perm())
	if f.Mode&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	switch {
	case f.Link != "" || f.Mode&fs.ModeSymlink != 0:
		if f.Link == "" {
			return nil, fmt.Errorf("initramfs: symbolic link %s has no Link target", f.Path)
		}
		link := []byte(f.Link)
		return &entry{path: p, mode: sIFLNK | 0o777, content: func() ([]byte, error) { return link, nil }}, nil
	case f.Mode&fs.ModeDir != 0:
		if perm == 0 {
			perm = 0o755
		}
		return &entry{path: p, mode: sIFDIR | perm}, nil
	case f.Mode&fs.ModeDevice != 0:
		if f.Mode&fs.ModeCharDevice == 0 {
			return nil, fmt.Errorf("initramfs: %s: only character devices are supported", f.Path)
		}
		return &entry{path: p, mode: sIFCHR | perm, major: f.Major, minor: f.Minor}, nil
	case f.Mode&fs.ModeType != 0:
		return nil, fmt.Errorf("initramfs: %s has unsupported mode %v", f.Path, f.Mode)
	}
	if perm == 0 {
		perm = 0o644
	}
	data, src := f.Data, f.Source
	return &entry{path: p, mode: sIFREG | perm, content: func() ([]byte, error) {
		if data != nil || src == "" {
			return data, nil
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading %s for %s: %w", src, f.Path, err)
		}
		return b, nil
	}}, nil
}

func readModule(m kernel.Module) ([]byte, error) {
	rc, err := m.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxModule+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing module %s (%s): %w", m.Name, m.Source, err)
	}
	if len(data) > maxModule {
		return nil, fmt.Errorf("module %s decompresses to more than %d bytes", m.Name, maxModule)
	}
	return data, nil
}

// writeChunk is how many bytes of an entry's data writeCpio writes between
// two looks at its context: about a second of the slowest compressor.
const writeChunk = 1 << 20

// writeCpio writes entries in the newc ("070701") format, stopping when ctx
// is done. Inode numbers go on from *ino.
func writeCpio(ctx context.Context, w io.Writer, entries []*entry, epoch int64, ino *uint32) (Stats, error) {
	var st Stats
	hdr := make([]byte, 0, 512)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("initramfs: /%s: %w", e.path, err)
		}
		var data []byte
		if e.content != nil {
			var err error
			if data, err = e.content(); err != nil {
				return st, fmt.Errorf("initramfs: /%s: %w", e.path, err)
			}
		}
		if uint64(len(data)) > 0xffffffff {
			return st, fmt.Errorf("initramfs: /%s is %d bytes, more than newc can hold", e.path, len(data))
		}
		*ino++
		nlink := uint32(1)
		switch e.mode & sIFMT {
		case sIFDIR:
			nlink = 2
			st.Dirs++
		case sIFREG:
			st.Files++
		case sIFLNK:
			st.Symlinks++
		case sIFCHR:
			st.Devices++
		}
		if e.module {
			st.Modules++
		}
		hdr = appendHeader(hdr[:0], e.path, *ino, e.mode, nlink, uint32(epoch), uint32(len(data)), e.major, e.minor)
		if _, err := w.Write(hdr); err != nil {
			return st, fmt.Errorf("writing initramfs: %w", err)
		}
		// The split does not change the bytes: the compressors cut their
		// blocks from the stream, whatever the writes.
		for rest := data; len(rest) > 0; {
			if err := ctx.Err(); err != nil {
				return st, fmt.Errorf("initramfs: /%s: %w", e.path, err)
			}
			n := min(len(rest), writeChunk)
			if _, err := w.Write(rest[:n]); err != nil {
				return st, fmt.Errorf("writing initramfs: %w", err)
			}
			rest = rest[n:]
		}
		if _, err := w.Write(pad(len(data))); err != nil {
			return st, fmt.Errorf("writing initramfs: %w", err)
		}
		st.Entries++
	}
	if _, err := w.Write(appendHeader(hdr[:0], "TRAILER!!!", 0, 0, 1, 0, 0, 0, 0)); err != nil {
		return st, fmt.Errorf("writing initramfs: %w", err)
	}
	return st, nil
}

var zeros [4]byte

func pad(n int) []byte { return zeros[:(4-n%4)%4] }

func appendHeader(b []byte, name string, ino, mode, nlink, mtime, size, rmajor, rminor uint32) []byte {
	b = append(b, "070701"...)
	for _, v := range []uint32{ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmajor, rminor, uint32(len(name) + 1), 0} {
		b = fmt.Appendf(b, "%08x", v)
	}
	b = append(b, name...)
	b = append(b, 0)
	return append(b, pad(len(b))...) // header + name padded to 4 bytes
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// errShortRead is returned by Read for a truncated archive.
var errShortRead = errors.New("initramfs: archive is truncated")

// Entry is one member read back by Read, for tests and inspection tools.
type Entry struct {
	Path         string
	Mode         uint32 // st_mode
	UID, GID     uint32
	Ino, Nlink   uint32
	Mtime        uint32
	Major, Minor uint32
	Data         []byte
}

// Read parses an uncompressed newc archive up to its trailer.
func Read(data []byte) ([]Entry, error) {
	out, _, err := readArchive(data)
	return out, err
}

// ReadImage parses a whole initramfs file the way the kernel unpacks it:
// archives one after the other, each uncompressed or compressed (zstd or
// xz), with zero padding between them. A compressed archive runs to the end
// of the file.
func ReadImage(data []byte) ([]Entry, error) {
	var out []Entry
	for off := 0; off < len(data); {
		switch {
		case data[off] == 0 && off%4 == 0:
			off += 4
			if off > len(data) {
				return nil, errShortRead
			}
			if !bytes.Equal(data[off-4:off], zeros[:]) {
				return nil, fmt.Errorf("initramfs: junk in the padding at offset %d", off-4)
			}
		case bytes.HasPrefix(data[off:], []byte("070701")):
			entries, n, err := readArchive(data[off:])
			if err != nil {
				return nil, err
			}
			out = append(out, entries...)
			off += n
		case bytes.HasPrefix(data[off:], zstdMagic), bytes.HasPrefix(data[off:], xzMagic):
			raw, err := decompress(data[off:])
			if err != nil {
				return nil, fmt.Errorf("initramfs: archive at offset %d: %w", off, err)
			}
			entries, err := ReadImage(raw)
			if err != nil {
				return nil, err
			}
			return append(out, entries...), nil
		default:
			return nil, fmt.Errorf("initramfs: neither an archive nor padding at offset %d", off)
		}
	}
	return out, nil
}

var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
)

func decompress(b []byte) ([]byte, error) {
	var r io.Reader
	if bytes.HasPrefix(b, zstdMagic) {
		d, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		r = d
	} else {
		x, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		r = x
	}
	return io.ReadAll(io.LimitReader(r, 1<<30))
}

// readArchive parses one newc archive and returns the bytes it takes,
// trailer included.
func readArchive(data []byte) ([]Entry, int, error) {
	var out []Entry
	for off := 0; ; {
		if len(data)-off < 110 {
			return nil, 0, errShortRead
		}
		h := data[off : off+110]
		if string(h[:6]) != "070701" {
			return nil, 0, fmt.Errorf("initramfs: bad magic %q at offset %d", h[:6], off)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, 0, fmt.Errorf("initramfs: bad header field at offset %d: %w", off, err)
			}
			f[i] = uint32(v)
		}
		nameLen, size := int(f[11]), int(f[6])
		nameEnd := off + 110 + nameLen
		if nameLen < 1 || nameEnd > len(data) {
			return nil, 0, errShortRead
		}
		name := string(bytes.TrimRight(data[off+110:nameEnd], "\x00"))
		dataOff := nameEnd + (4-(110+nameLen)%4)%4
		if size < 0 || dataOff+size > len(data) {
			return nil, 0, errShortRead
		}
		if name == "TRAILER!!!" {
			return out, dataOff + size, nil
		}
		out = append(out, Entry{Path: name, Ino: f[0], Mode: f[1], UID: f[2], GID: f[3], Nlink: f[4], Mtime: f[5],
			Major: f[9], Minor: f[10], Data: data[dataOff : dataOff+size]})
		off = dataOff + size + (4-size%4)%4
	}
}
