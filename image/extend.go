package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"github.com/etoile-os/etoile/image/k3s"
)

// Where the system image keeps K3s's airgap archives: in shippedImagesDir,
// linked from the folder K3s imports from. The agent re-creates the links
// when /var is a persistent state partition (agent/k3s.LinkAirgapImages).
const shippedImagesDir = "/usr/lib/etoile/k3s/images"

// fetchK3s gets verified K3s artifacts as the spec (or --k3s-dir) says,
// or nil for an image without K3s.
func (b *Builder) fetchK3s(ctx context.Context, log *slog.Logger) (*k3s.Artifacts, error) {
	ks := b.Spec.K3s
	src := k3s.Source{Kind: ks.Source, Version: ks.Version, Dir: b.Spec.Resolve(ks.Dir), Image: ks.Image,
		AirgapTarball: b.Spec.Resolve(ks.AirgapTarball), RegistriesFile: b.Spec.Resolve(ks.Registries)}
	for _, a := range ks.AirgapImages {
		src.ExtraAirgap = append(src.ExtraAirgap, b.Spec.Resolve(a))
	}
	if b.K3sDir != "" {
		src.Kind, src.Dir, src.Image, src.AirgapTarball, src.RegistriesFile = k3s.KindDir, b.K3sDir, "", "", ""
	}
	if src.Kind == K3sNone {
		log.Info("no K3s in this image (k3s.source: none)")
		return nil, nil
	}
	art, err := k3s.Fetch(ctx, src, b.CacheDir, log)
	if err != nil {
		if b.K3sOptional && unreachable(err) {
			log.Warn("K3S IS NOT IN THIS IMAGE: its source cannot be reached; the image boots but runs no Kubernetes. "+
				"To include K3s offline, pass --k3s-dir DIR (a K3s release folder) or set ETOILE_K3S_DIR", "err", err)
			b.k3sMissing = err.Error()
			return nil, nil
		}
		return nil, err
	}
	log.Info("k3s", "version", art.Version, "from", art.Source)
	return art, nil
}

// unreachable tells a network failure (no route, DNS, refused) from a
// source that answered wrongly (bad checksum, missing file), which is never
// tolerated.
func unreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	var oe *net.OpError
	var de *net.DNSError
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.As(err, &oe) || errors.As(err, &de)
}

// stageK3s copies K3s into the staged root: the binary and its links, the
// airgap archives in shippedImagesDir with links where K3s imports them.
func stageK3s(root string, art *k3s.Artifacts) error {
	for _, f := range art.ImageFiles() {
		dst := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		switch {
		case f.Link != "":
			_ = os.Remove(dst)
			if err := os.Symlink(f.Link, dst); err != nil {
				return err
			}
		case path.Dir(f.Path) == k3s.ImageAirgapDir:
			shipped := path.Join(shippedImagesDir, path.Base(f.Path))
			if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(shippedImagesDir)), 0o755); err != nil {
				return err
			}
			if err := copyFile(f.Source, filepath.Join(root, filepath.FromSlash(shipped)), 0o644); err != nil {
				return err
			}
			_ = os.Remove(dst)
			if err := os.Symlink(shipped, dst); err != nil {
				return err
			}
		default:
			if err := copyFile(f.Source, dst, f.Mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// stageExtensions lays each extension over the staged root, in order.
func (b *Builder) stageExtensions(root string) error {
	for i, e := range b.Spec.Extensions {
		if e.Dir != "" {
			if err := copyTree(os.DirFS(b.Spec.Resolve(e.Dir)), root); err != nil {
				return fmt.Errorf("extensions[%d] %s: %w", i, e.Name, err)
			}
			continue
		}
		if err := unpackSquashfs(b.Spec.Resolve(e.Squashfs), root); err != nil {
			return fmt.Errorf("extensions[%d] %s: %w", i, e.Name, err)
		}
	}
	return nil
}

// unpackSquashfs copies a squashfs layer's files, folders and symlinks
// into dst.
func unpackSquashfs(layer, dst string) error {
	f, err := os.Open(layer)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	sq, err := squashfs.Read(file.New(f, true), st.Size(), 0, 0)
	if err != nil {
		return fmt.Errorf("%s is not a readable squashfs: %w", layer, err)
	}
	return fs.WalkDir(sq, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if strings.Contains(p, "..") {
			return fmt.Errorf("%s: path %q escapes the image", layer, p)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		switch {
		case info.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			stt, ok := info.Sys().(*squashfs.StatT)
			if !ok || stt.LinkTarget == "" {
				return fmt.Errorf("%s: cannot read the target of symlink %s", layer, p)
			}
			_ = os.Remove(target)
			return os.Symlink(stt.LinkTarget, target)
		case info.Mode().IsRegular():
			data, err := fs.ReadFile(sq, p)
			if err != nil {
				return fmt.Errorf("%s: reading %s: %w", layer, p, err)
			}
			_ = os.Remove(target)
			return os.WriteFile(target, data, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: %s is a %s: only files, folders and symlinks are taken", layer, p, info.Mode().Type())
		}
	})
}
