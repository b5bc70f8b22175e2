package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// modinfo is what depmod reads from a module's .modinfo ELF section, a list
// of NUL-terminated key=value strings written by modpost at kernel build time.
type modinfo struct {
	Name     string
	Depends  []string // module names, as modpost resolved the module's symbols
	Aliases  []string
	SoftDeps []string // raw values, e.g. "pre: crc32c"
	Vermagic string   // "6.1.0-56-amd64 SMP preempt mod_unload modversions": the kernel it was built for first
}

// maxModuleSize bounds a decompressed module; the largest in-tree modules
// are a few tens of MiB.
const maxModuleSize = 256 << 20

// compressionOf returns the compression named by a module file's suffix.
func compressionOf(name string) (base, comp string) {
	for _, c := range []struct{ suffix, comp string }{{".ko.xz", "xz"}, {".ko.zst", "zst"}, {".ko.gz", "gz"}, {".ko", ""}} {
		if b, ok := strings.CutSuffix(name, c.suffix); ok {
			return b + ".ko", c.comp
		}
	}
	return "", ""
}

func isModuleFile(name string) bool {
	b, _ := compressionOf(name)
	return b != ""
}

// decompress wraps r according to comp ("", "xz", "zst", "gz").
func decompress(r io.Reader, comp string) (io.Reader, func(), error) {
	switch comp {
	case "":
		return r, func() {}, nil
	case "xz":
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("opening xz stream: %w", err)
		}
		return xr, func() {}, nil
	case "zst":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxModuleSize))
		if err != nil {
			return nil, nil, fmt.Errorf("opening zstd stream: %w", err)
		}
		return zr, zr.Close, nil
	case "gz":
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("opening gzip stream: %w", err)
		}
		return gr, func() { gr.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown module compression %q (want \"\", \"xz\", \"zst\" or \"gz\")", comp)
}

// readModinfo reads the .modinfo section of the module file at path.
func readModinfo(path string) (*modinfo, error) {
	_, comp := compressionOf(path)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ra io.ReaderAt = f
	if comp != "" {
		r, closeFn, err := decompress(f, comp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		data, err := io.ReadAll(io.LimitReader(r, maxModuleSize+1))
		closeFn()
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", path, err)
		}
		if len(data) > maxModuleSize {
			return nil, fmt.Errorf("%s decompresses to more than %d bytes", path, maxModuleSize)
		}
		ra = bytes.NewReader(data)
	}
	ef, err := elf.NewFile(ra)
	if err != nil {
		return nil, fmt.Errorf("%s is not an ELF kernel module: %w", path, err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s has no .modinfo section: not a kernel module", path)
	}
	if sec.Size > maxModuleSize {
		return nil, fmt.Errorf("%s: .modinfo section too large", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo of %s: %w", path, err)
	}
	return parseModinfo(data), nil
}

// parseModinfo splits the NUL-separated key=value strings of a .modinfo
// section (also the format of modules.builtin.modinfo, minus the "name."
// prefix there).
func parseModinfo(data []byte) *modinfo {
	mi := &modinfo{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		key, value, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch key {
		case "name":
			mi.Name = value
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, d)
				}
			}
		case "alias":
			if value != "" {
				mi.Aliases = append(mi.Aliases, value)
			}
		case "vermagic":
			mi.Vermagic = strings.TrimSpace(value)
		case "softdep":
			if value = strings.TrimSpace(value); value != "" {
				mi.SoftDeps = append(mi.SoftDeps, value)
			}
		}
	}
	return mi
}
