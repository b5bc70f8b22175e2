package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"github.com/etoile-os/etoile/agent/kmod"
	"github.com/etoile-os/etoile/image/initramfs"
	"github.com/etoile-os/etoile/image/k3s"
	"github.com/etoile-os/etoile/image/kernel"
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

// unreachable tells a network failure (no route, DNS, refused, timed out)
// from a source that answered wrongly (bad checksum, missing file), which
// is never tolerated; nor is a source that answered with a certificate
// that does not verify or in another protocol (plain HTTP to an https://
// URL), which is a misconfiguration or an interception, not an offline
// machine; nor an interrupted build.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, http.ErrSchemeMismatch) {
		return false
	}
	var (
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		roots    x509.SystemRootsError
		header   tls.RecordHeaderError
		alert    tls.AlertError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &roots) || errors.As(err, &header) || errors.As(err, &alert) {
		return false
	}
	var de *net.DNSError
	var oe *net.OpError
	if errors.As(err, &de) || errors.As(err, &oe) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// *url.Error is a net.Error too: only a timeout counts, not whatever
	// it wraps (a malformed response, a TLS failure).
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stageK3s copies K3s into the staged root: the binary and its links, the
// airgap archives in shippedImagesDir with links where K3s imports them.
func stageK3s(root string, art *k3s.Artifacts) error {
	w, err := openStage(root)
	if err != nil {
		return err
	}
	defer w.Close()
	for _, f := range art.ImageFiles() {
		dst := filepath.FromSlash(strings.TrimPrefix(f.Path, "/"))
		switch {
		case f.Link != "":
			if err := w.symlink(dst, f.Link); err != nil {
				return err
			}
		case path.Dir(f.Path) == k3s.ImageAirgapDir:
			shipped := path.Join(shippedImagesDir, path.Base(f.Path))
			if err := w.verifiedFile(filepath.FromSlash(strings.TrimPrefix(shipped, "/")), f.Source, f.SHA256, 0o644); err != nil {
				return err
			}
			if err := w.symlink(dst, shipped); err != nil {
				return err
			}
		default:
			if err := w.verifiedFile(dst, f.Source, f.SHA256, f.Mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// K3sShell is K3s's own shell once K3s has unpacked its data: the busybox
// of k3s-root, in the folder K3s links as data/current under its data-dir
// (/var/lib/rancher/k3s, which Étoile fixes).
const K3sShell = "/var/lib/rancher/k3s/data/current/bin/busybox"

// stageShell links /bin/sh to K3sShell when no layer gave the image a shell,
// and returns the link it made ("" for none). K3s runs iptables, ip6tables
// and their -save and -restore through k3s-root's iptables-detect.sh, a
// #!/bin/sh script: without /bin/sh every rule kube-proxy, flannel and the
// network policy controller write fails to execute. A layer whose /bin is
// a link (bin -> usr/bin) gets the link in that folder.
func stageShell(root string) (string, error) {
	w, err := openStage(root)
	if err != nil {
		return "", err
	}
	defer w.Close()
	rel := "bin/sh"
	if st, err := w.root.Lstat("bin"); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		// bin -> usr/bin (or /usr/bin, which os.Root does not follow):
		// the shell is looked for, and linked, in that folder.
		to, err := w.root.Readlink("bin")
		if err != nil {
			return "", err
		}
		if path.IsAbs(to) {
			to = strings.TrimPrefix(path.Clean(to), "/")
		}
		rel = path.Join(to, "sh")
	}
	if _, err := w.root.Lstat(filepath.FromSlash(rel)); err == nil {
		return "", nil // an overlay's or extension's own shell
	}
	return "/" + rel, w.symlink(filepath.FromSlash(rel), K3sShell)
}

// stageExtensions lays each extension over the staged root, in order.
// Kernel modules in an extension must be for the image's kernel (kver), in
// /lib/modules/<kver>: mergeExtensionModules then makes them loadable.
func (b *Builder) stageExtensions(root, kver string) error {
	if b.staged == nil || b.staged.root != root {
		b.staged = newLayerLog(root) // a tree stageRoot did not make
	}
	for i, e := range b.Spec.Extensions {
		name := fmt.Sprintf("extensions[%d] %s", i, e.Name)
		fail := func(err error) error { return fmt.Errorf("%s: %w", name, b.staged.nameLayer(err)) }
		if e.Dir != "" {
			// Read through os.Root: a symlink in the extension (lib ->
			// /usr/lib) never leads to the build machine's files.
			r, err := os.OpenRoot(b.Spec.Resolve(e.Dir))
			if err != nil {
				return fail(err)
			}
			src := r.FS()
			err = checkExtensionModules(src, kver)
			if err == nil {
				err = copyTreeAs(src, root, b.staged, name)
			}
			r.Close()
			if err != nil {
				return fail(err)
			}
			continue
		}
		layer := b.Spec.Resolve(e.Squashfs)
		sq, closeFn, err := openSquashfs(layer)
		if err != nil {
			return fail(err)
		}
		err = checkExtensionModules(sq, kver)
		if err == nil {
			err = unpackSquashfs(sq, layer, root, b.staged, name)
		}
		closeFn()
		if err != nil {
			return fail(err)
		}
	}
	return nil
}

// checkExtensionModules refuses kernel modules the agent would never load:
// built for another kernel (by their folder's name; MergeExtras checks each
// module's vermagic), or under /usr/lib/modules in a layer whose /lib is
// its own folder, where the system image's /lib/modules does not see them.
// A layer made from a merged-/usr root (lib -> usr/lib, as Debian's and
// Ubuntu's are) has them in /usr/lib/modules, which is its /lib/modules.
func checkExtensionModules(fsys fs.FS, kver string) error {
	modDir := "lib/modules"
	merged := mergedUsrLib(fsys)
	// The links on the way to the modules folder must stay in the layer
	// (resolveInTree refuses them later anyway): say so first, before
	// anything is read through them.
	way := []string{"lib", "lib/modules"}
	if merged {
		way = []string{"lib", "usr", "usr/lib", "usr/lib/modules"}
	}
	for _, p := range way {
		if to, ok := layerLink(fsys, p); ok && path.IsAbs(to) {
			return fmt.Errorf("/%s is a symlink to %s: make it relative (%s -> %s), as a Debian root has it: the agent reads the image's kernel modules before the image is the machine's root",
				p, to, p, relativeTo(path.Dir(p), to))
		}
	}
	if merged {
		modDir = "usr/lib/modules"
	} else if entries, err := fs.ReadDir(fsys, "usr/lib/modules"); err == nil && len(entries) > 0 {
		return fmt.Errorf("holds kernel modules in /usr/lib/modules/%s: Étoile loads modules from /lib/modules/%s: move them there (or make the layer's lib a link to usr/lib, as a merged-/usr root has it)",
			entries[0].Name(), kver)
	}
	entries, err := fs.ReadDir(fsys, modDir)
	if err != nil {
		return nil // none
	}
	for _, e := range entries {
		if e.Name() != kver {
			return fmt.Errorf("holds kernel modules for kernel %s (/lib/modules/%s), but the image's kernel is %s: "+
				"rebuild them against linux-headers-%s and put them in /lib/modules/%s", e.Name(), e.Name(), kver, kver, kver)
		}
	}
	return nil
}

// layerLink returns the target of p in the layer when p is a symlink.
func layerLink(fsys fs.FS, p string) (string, bool) {
	entries, err := fs.ReadDir(fsys, path.Dir(p))
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if e.Name() != path.Base(p) || e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if rl, ok := fsys.(fs.ReadLinkFS); ok {
			to, err := rl.ReadLink(p)
			return to, err == nil
		}
		if info, err := e.Info(); err == nil {
			if st, ok := info.Sys().(*squashfs.StatT); ok && st.LinkTarget != "" {
				return st.LinkTarget, true
			}
		}
		return "", false
	}
	return "", false
}

// mergedUsrLib reports whether the layer's lib is a symlink to usr/lib
// (relative or absolute), as in a merged-/usr root.
func mergedUsrLib(fsys fs.FS) bool {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Name() != "lib" || e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		var to string
		if rl, ok := fsys.(fs.ReadLinkFS); ok {
			to, _ = rl.ReadLink("lib")
		} else if info, err := e.Info(); err == nil {
			if st, ok := info.Sys().(*squashfs.StatT); ok {
				to = st.LinkTarget
			}
		}
		// Relative only: the agent reads the image's modules before the
		// image is the machine's root, where /usr/lib is the initramfs's.
		return path.Clean(to) == "usr/lib"
	}
	return false
}

// relativeTo writes the absolute link target to as seen from the folder dir
// of the tree (both slash paths, dir relative to the tree's root).
func relativeTo(dir, to string) string {
	rel, err := filepath.Rel("/"+dir, to)
	if err != nil {
		return to
	}
	return filepath.ToSlash(rel)
}

// resolveInTree follows the symlinks of rel, a path in the tree root holds,
// as the machine will once the tree is its root: a target leaving the tree
// is an error, and so is an absolute one (the agent follows this path
// before the tree is the root, where an absolute link leads into the
// initramfs). It returns the path with no symlink left in it; what does not
// exist yet is kept as written.
func resolveInTree(root *os.Root, rel string) (string, error) {
	parts := strings.Split(path.Clean(filepath.ToSlash(rel)), "/")
	cur := ""
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		info, err := root.Lstat(next)
		if err != nil || info.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symlinks", rel)
		}
		to, err := root.Readlink(next)
		if err != nil {
			return "", err
		}
		if path.IsAbs(to) {
			return "", fmt.Errorf("%s is a symlink to %s: make it relative (%s), as a Debian root has it: the agent reads the image's kernel modules before the image is the machine's root", next, to, relativeTo(path.Dir(next), to))
		}
		target := path.Join(cur, to)
		if target == ".." || strings.HasPrefix(target, "../") {
			return "", fmt.Errorf("%s is a symlink to %s, outside the image", next, to)
		}
		parts = append(strings.Split(target, "/"), parts...)
		cur = ""
	}
	return cur, nil
}

// mergeExtensionModules makes the modules the extensions put in the staged
// root's /lib/modules/<version> loadable: see kernel.MergeExtras. The agent
// lays that folder over the initramfs's modules. Errors name the extension
// a module came from (layers says which) and its path in the image, not in
// the staged tree, a temporary folder.
func mergeExtensionModules(root string, k *kernel.Kernel, initramfsMods []kernel.Module, layers *layerLog, log *slog.Logger) error {
	// The module folder is written in (the index files): where its path
	// leads inside the tree (a merged-/usr layer's lib -> usr/lib), never
	// through a symlink out of it.
	w, err := openStage(root)
	if err != nil {
		return err
	}
	rel, err := resolveInTree(w.root, path.Join("lib", "modules", k.Version))
	if err == nil {
		err = w.realDirs(rel)
	}
	w.Close()
	if err != nil {
		return fmt.Errorf("extensions: %w", layers.nameLayer(err))
	}
	dir := filepath.Join(root, filepath.FromSlash(rel))
	// Read as the node reads them, inside the image: a symlink there to
	// /usr/lib/modules-load.d/site.conf is the image's file, never the
	// build host's.
	ml, err := kmod.ReadModulesLoadD(root)
	if err != nil {
		return fmt.Errorf("extensions: reading modules-load.d: %w: put the file in an overlay or extension, or remove the symlink to it (a symlink's absolute target is taken from the image's /)", err)
	}
	ex, err := k.MergeExtras(dir, initramfsMods, initramfs.ModuleSuffix, ml.From)
	if err != nil {
		var me *kernel.ExtraModuleError
		if errors.As(err, &me) {
			return extensionModuleError(me, dir, rel, layers)
		}
		return fmt.Errorf("extensions: %s", strings.ReplaceAll(err.Error(), dir, "/lib/modules/"+k.Version))
	}
	if len(ex.Modules) == 0 && len(ex.FromKernel) == 0 {
		return nil
	}
	attrs := []any{"modules", strings.Join(ex.Modules, ","), "kernel", k.Version}
	if len(ex.FromKernel) > 0 {
		attrs = append(attrs, "with_kernel_modules", strings.Join(ex.FromKernel, ","))
	}
	if len(ex.Replaced) > 0 {
		attrs = append(attrs, "index_replaced", strings.Join(ex.Replaced, ","))
	}
	log.Info("extension kernel modules", attrs...)
	if len(ex.Overrides) > 0 {
		log.Warn("extension modules have the names of modules of the initramfs: the kernel keeps the first copy loaded, so the extension's is used only where the initramfs's was not loaded before the system image is mounted; leave them out of the spec's modules to use the extension's",
			"modules", strings.Join(ex.Overrides, ","))
	}
	return nil
}

// extensionModuleError says which extension brought the module of me (or
// the modules-load.d file), at its path in the image: dir is the staged
// tree's modules folder, at rel in the tree.
func extensionModuleError(me *kernel.ExtraModuleError, dir, rel string, layers *layerLog) error {
	var at, from []string
	for _, p := range strings.Split(me.Path, ", ") {
		inTree := path.Join(rel, p) // a module, relative to the modules folder
		if path.IsAbs(p) {
			inTree = strings.TrimPrefix(p, "/") // a modules-load.d file
		}
		at = append(at, "/"+inTree)
		if l := layers.of(inTree); l != "" && !slices.Contains(from, l) {
			from = append(from, l)
		}
	}
	// The reason may name the module by its path in the staged tree.
	reason := me.Reason
	if len(at) == 1 {
		full := filepath.Join(dir, filepath.FromSlash(me.Path))
		reason = strings.TrimPrefix(strings.TrimPrefix(reason, full+": "), full+" ")
	}
	reason = strings.ReplaceAll(reason, dir, "/"+rel)
	what := "extensions"
	if len(from) > 0 {
		what = strings.Join(from, ", ")
	}
	kind := "module "
	if len(at) == 1 && path.IsAbs(me.Path) {
		kind = ""
	}
	return fmt.Errorf("%s: %s%s: %s: %s", what, kind, strings.Join(at, ", "), reason, me.Fix)
}

// openSquashfs opens a squashfs layer for reading.
func openSquashfs(layer string) (*squashfs.FileSystem, func(), error) {
	f, err := os.Open(layer)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	sq, err := squashfs.Read(file.New(f, true), st.Size(), 0, 0)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a readable squashfs: %w", layer, err)
	}
	return sq, func() { f.Close() }, nil
}

// unpackSquashfs copies a squashfs layer's files, folders and symlinks
// into dst, with copyLayer's guards.
func unpackSquashfs(sq *squashfs.FileSystem, layer, dst string, layers *layerLog, name string) error {
	err := copyLayer(sq, dst, layers, name, squashfsLayerMode, func(p string, info fs.FileInfo) (string, error) {
		stt, ok := info.Sys().(*squashfs.StatT)
		if !ok || stt.LinkTarget == "" {
			return "", fmt.Errorf("cannot read the target of symlink %s", p)
		}
		return stt.LinkTarget, nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", layer, err)
	}
	return nil
}
