// Package debian fetches Debian binary packages with the host's apt and
// unpacks them in Go, so that a build needs apt only for downloading.
package debian

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Package is one downloaded .deb file and the metadata the build records in
// its SBOM.
type Package struct {
	Name         string
	Version      string
	Architecture string
	SHA256       string   // hex digest of the .deb file
	DebPath      string   // absolute path of the .deb in the cache
	Depends      []string // raw Depends clauses, e.g. "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
	// Filename is the pool file name apt gives it (name_version_arch.deb,
	// ':' written as "%3a").
	Filename string
	// Maintainer is the control file's Maintainer field.
	Maintainer string
	// Vendor is the distribution whose archive the package comes from, as
	// package URLs name it: VendorDebian or VendorUbuntu. Fetcher.Fetch
	// sets it (vendorOf); empty reads as Debian.
	Vendor string
}

// ErrIllegalPath reports an archive entry whose path would land outside the
// extraction folder.
var ErrIllegalPath = errors.New("archive entry path escapes the destination folder")

// maxDecoderMemory bounds what a zstd frame may ask the decoder to allocate,
// so a hostile package cannot exhaust memory.
const maxDecoderMemory = 512 << 20

// ReadPackage reads the control data of the .deb at debPath and hashes the
// file. It does not unpack data.tar.
func ReadPackage(debPath string) (*Package, error) {
	f, err := os.Open(debPath)
	if err != nil {
		return nil, fmt.Errorf("opening Debian package: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	ar, err := newArReader(io.TeeReader(f, h))
	if err != nil {
		return nil, fmt.Errorf("reading Debian package %s: %w", debPath, err)
	}
	var ctrl Control
	for {
		m, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading Debian package %s: %w", debPath, err)
		}
		if strings.HasPrefix(m.Name, "control.tar") {
			ctrl, err = readControlTar(m.Name, ar.Data())
			if err != nil {
				return nil, fmt.Errorf("reading %s of Debian package %s: %w", m.Name, debPath, err)
			}
		}
	}
	// hash what the ar reader did not consume (trailing bytes, if any)
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hashing Debian package %s: %w", debPath, err)
	}
	if ctrl == nil {
		return nil, fmt.Errorf("the Debian package %s has no control.tar member: the file is not a .deb or is truncated; delete it and fetch again", debPath)
	}
	p, err := packageFromControl(ctrl)
	if err != nil {
		return nil, fmt.Errorf("reading the Debian package %s: %w", debPath, err)
	}
	p.SHA256 = hex.EncodeToString(h.Sum(nil))
	p.DebPath = debPath
	return p, nil
}

func packageFromControl(c Control) (*Package, error) {
	p := &Package{Name: c.Get("Package"), Version: c.Get("Version"), Architecture: c.Get("Architecture"), Maintainer: c.Get("Maintainer")}
	if p.Name == "" || p.Version == "" {
		return nil, fmt.Errorf("control file lacks the Package or Version field")
	}
	if dep := c.Get("Depends"); dep != "" {
		if _, err := ParseRelations(dep); err != nil {
			return nil, fmt.Errorf("field Depends: %w", err)
		}
		for _, clause := range strings.Split(dep, ",") {
			if clause = strings.Join(strings.Fields(clause), " "); clause != "" {
				p.Depends = append(p.Depends, clause)
			}
		}
	}
	return p, nil
}

// Relations parses p.Depends.
func (p *Package) Relations() ([][]Relation, error) {
	return ParseRelations(strings.Join(p.Depends, ", "))
}

func readControlTar(member string, r io.Reader) (Control, error) {
	dr, closeFn, err := decompressor(member, r)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("no ./control file inside")
		}
		if err != nil {
			return nil, err
		}
		if path.Clean(strings.TrimPrefix(h.Name, "./")) == "control" && h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(io.LimitReader(tr, maxControlSize+1))
			if err != nil {
				return nil, err
			}
			return ParseControl(data)
		}
	}
}

// decompressor picks the decoder from the member's name, as dpkg does.
func decompressor(member string, r io.Reader) (io.Reader, func(), error) {
	nop := func() {}
	switch {
	case strings.HasSuffix(member, ".tar"):
		return r, nop, nil
	case strings.HasSuffix(member, ".xz"):
		xr, err := xz.ReaderConfig{SingleStream: false}.NewReader(bufio.NewReaderSize(r, 1<<20))
		if err != nil {
			return nil, nil, fmt.Errorf("opening xz stream: %w", err)
		}
		return xr, nop, nil
	case strings.HasSuffix(member, ".zst"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecoderMemory))
		if err != nil {
			return nil, nil, fmt.Errorf("opening zstd stream: %w", err)
		}
		return zr, zr.Close, nil
	case strings.HasSuffix(member, ".gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("opening gzip stream: %w", err)
		}
		return gr, func() { gr.Close() }, nil
	case strings.HasSuffix(member, ".bz2"):
		return bzip2.NewReader(r), nop, nil
	case strings.HasSuffix(member, ".lzma"):
		lr, err := lzma.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("opening lzma stream: %w", err)
		}
		return lr, nop, nil
	}
	return nil, nil, fmt.Errorf("member %q has a compression Étoile does not know (want .tar, .tar.xz, .tar.zst, .tar.gz, .tar.bz2 or .tar.lzma)", member)
}

// Extract unpacks data.tar of the package into destDir (which it creates).
// keep receives each entry's slash-separated path relative to the package
// root (e.g. "boot/vmlinuz-6.1.0-56-amd64"); nil keeps everything. Parent
// folders of kept entries are created as needed. Symbolic links are kept as
// links; hard links become links to the already extracted file. Entries that
// would escape destDir, directly or through a link, fail with ErrIllegalPath.
func (p *Package) Extract(destDir string, keep func(path string) bool) error {
	return p.ExtractContext(context.Background(), destDir, keep)
}

// ExtractContext is Extract that stops, with ctx's error, when ctx ends: it
// looks at ctx before each entry of the package (a kernel package holds
// thousands). What was unpacked so far stays in destDir: the caller
// removes it.
func (p *Package) ExtractContext(ctx context.Context, destDir string, keep func(path string) bool) error {
	if err := os.MkdirAll(destDir, 0o755); err != nil {
		return fmt.Errorf("creating extraction folder for %s: %w", p.Name, err)
	}
	root, err := os.OpenRoot(destDir)
	if err != nil {
		return fmt.Errorf("opening extraction folder for %s: %w", p.Name, err)
	}
	defer root.Close()

	f, err := os.Open(p.DebPath)
	if err != nil {
		return fmt.Errorf("opening Debian package %s: %w", p.Name, err)
	}
	defer f.Close()
	ar, err := newArReader(f)
	if err != nil {
		return fmt.Errorf("reading Debian package %s (%s): %w", p.Name, p.DebPath, err)
	}
	for {
		m, err := ar.Next()
		if err == io.EOF {
			return fmt.Errorf("the Debian package %s (%s) has no data.tar member: the file is truncated; delete it and fetch again", p.Name, p.DebPath)
		}
		if err != nil {
			return fmt.Errorf("reading Debian package %s (%s): %w", p.Name, p.DebPath, err)
		}
		if strings.HasPrefix(m.Name, "data.tar") {
			if err := extractTar(ctx, root, m.Name, ar.Data(), keep); err != nil {
				return fmt.Errorf("unpacking %s of Debian package %s (%s) into %s: %w", m.Name, p.Name, p.DebPath, destDir, err)
			}
			return nil
		}
	}
}

// cleanEntryPath turns a tar name ("./lib/x", "lib/x/") into a clean relative
// path, or reports ErrIllegalPath.
func cleanEntryPath(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if n == "" || n == "." || n == "./" {
		return ".", nil
	}
	if path.IsAbs(n) || strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%q: %w", name, ErrIllegalPath)
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q: %w", name, ErrIllegalPath)
	}
	return c, nil
}

func extractTar(ctx context.Context, root *os.Root, member string, r io.Reader, keep func(string) bool) error {
	dr, closeFn, err := decompressor(member, r)
	if err != nil {
		return err
	}
	defer closeFn()
	tr := tar.NewReader(dr)
	made := map[string]bool{".": true} // folders known to exist
	mkdirs := func(dir string) error {
		if made[dir] {
			return nil
		}
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for d := dir; d != "." && !made[d]; d = path.Dir(d) {
			made[d] = true
		}
		return nil
	}
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		name, err := cleanEntryPath(h.Name)
		if err != nil {
			return err
		}
		if name == "." || (keep != nil && !keep(name)) {
			continue
		}
		// Directory modes from packages are honoured but kept owner-writable,
		// so that the cache can be cleaned without root.
		perm := fs.FileMode(h.Mode).Perm() | 0o200
		switch h.Typeflag {
		case tar.TypeDir:
			if err := mkdirs(name); err != nil {
				return fmt.Errorf("creating folder %s: %w", name, err)
			}
			if err := root.Chmod(name, perm|0o700); err != nil {
				return fmt.Errorf("setting mode of folder %s: %w", name, err)
			}
		case tar.TypeReg:
			if err := mkdirs(path.Dir(name)); err != nil {
				return fmt.Errorf("creating folder for %s: %w", name, err)
			}
			out, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
			if err != nil {
				return fmt.Errorf("creating %s: %w", name, err)
			}
			_, cerr := io.CopyBuffer(out, tr, buf)
			if err := errors.Join(cerr, out.Close()); err != nil {
				return fmt.Errorf("writing %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := mkdirs(path.Dir(name)); err != nil {
				return fmt.Errorf("creating folder for %s: %w", name, err)
			}
			_ = root.Remove(name) // a package may replace a file with a link
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("creating symbolic link %s -> %s: %w", name, h.Linkname, err)
			}
		case tar.TypeLink:
			target, err := cleanEntryPath(h.Linkname)
			if err != nil {
				return fmt.Errorf("hard link %s: %w", name, err)
			}
			if err := mkdirs(path.Dir(name)); err != nil {
				return fmt.Errorf("creating folder for %s: %w", name, err)
			}
			if err := root.Link(target, name); err != nil {
				return fmt.Errorf("hard link %s -> %s (the target must be extracted too; widen the keep filter): %w", name, target, err)
			}
		default:
			// device nodes and fifos have no place in a build cache
		}
	}
}
