package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/etoile-os/etoile/agent/config"
	agentk3s "github.com/etoile-os/etoile/agent/k3s"
	"github.com/etoile-os/etoile/image/debian"
	"github.com/etoile-os/etoile/image/initramfs"
	"github.com/etoile-os/etoile/image/k3s"
	"github.com/etoile-os/etoile/image/kernel"
	"github.com/etoile-os/etoile/image/media"
	"github.com/etoile-os/etoile/image/verity"
	"github.com/etoile-os/etoile/overlay"

	"golang.org/x/sys/unix"
)

// Builder builds the media an ImageSpec describes.
type Builder struct {
	Spec      *ImageSpec
	OutDir    string // where the artifacts land
	CacheDir  string // $XDG_CACHE_HOME/etoile by default
	AgentPath string // the static etoile-agent binary
	Epoch     int64  // SOURCE_DATE_EPOCH: every timestamp in every artifact
	Tool      ToolInfo
	Log       *slog.Logger
	// K3sDir, when set, takes K3s from this release folder whatever the
	// spec says (`--k3s-dir`, ETOILE_K3S_DIR).
	K3sDir string
	// K3sOptional builds without K3s, loudly, when its source cannot be
	// reached over the network (build.sh on an offline machine). A source
	// that answers wrongly is always an error.
	K3sOptional bool
	// MachineConfig, when set, is baked into the boot media as
	// /etoile/config.yaml (already validated by the caller).
	MachineConfig []byte

	k3sMissing string
	contentID  string    // digest of the boot files, mixed into stableID
	staged     *layerLog // which layer put each path in the staged tree
}

// setContentID digests the initramfs, the system image, the kernel command
// line and the baked-in machine config.
func (b *Builder) setContentID(ctx context.Context, initrd, system, args string) error {
	h := sha256.New()
	for _, p := range []string{initrd, system} {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(h, media.CtxReader(ctx, f))
		f.Close()
		if err != nil {
			return fmt.Errorf("digesting %s: %w", filepath.Base(p), err)
		}
	}
	fmt.Fprintf(h, "\x00%s\x00%s", args, b.MachineConfig)
	b.contentID = hex.EncodeToString(h.Sum(nil))
	return nil
}

// ToolInfo describes the etoile binary doing the build, for the SBOM and
// the default image version.
type ToolInfo struct {
	Version string
	Commit  string
}

// Result lists what a build wrote.
type Result struct {
	Artifacts []Artifact
	Kernel    string // kernel version
	K3s       string // K3s version, "" when the image has none
	// K3sStandin is true when that is Étoile's K3s stand-in (a test
	// double), not K3s.
	K3sStandin bool
	// K3sMissing says why K3s was left out under K3sOptional.
	K3sMissing string
	// OwnerOnly names the artifacts that hold the baked-in machine config
	// (the ISO, the raw disk), made readable by their owner only.
	OwnerOnly []string
}

// Artifact is one file in the output folder.
type Artifact struct {
	Name   string
	Size   int64
	SHA256 string
}

// Fixed artifact names, per architecture.
func (b *Builder) name(suffix string) string { return "etoile-" + b.Spec.Arch + suffix }

// artifactNames are every file a build of this arch can put in the output
// folder, SHA256SUMS aside.
func (b *Builder) artifactNames() []string {
	var out []string
	for _, s := range []string{".iso", ".raw", "-vmlinuz", "-initramfs.img", "-system.sqfs", ".spdx.json"} {
		out = append(out, b.name(s))
	}
	return out
}

// lockOutDir keeps two builds from landing their files in one folder at
// once. The folder itself is locked: no lock file is left in it.
func lockOutDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("locking the output folder: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another etoile build is writing to %s: wait for it to finish, or build into another folder (-o DIR)", dir)
		}
		return nil, fmt.Errorf("locking the output folder %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// bootFiles are the bootloader pieces taken from Debian packages.
type bootFiles struct {
	isolinuxBin, ldlinux, isohdpfx, systemdBoot string
	packages                                    []*debian.Package
	// caBundle is the system image's CA certificates, made from Debian's
	// ca-certificates package (caPackage).
	caBundle  string
	caPackage *debian.Package
}

// Build runs every step; artifacts appear in OutDir only when all succeed,
// each renamed into place from a work folder on the same filesystem. A
// build that fails leaves no folder it made either (-o a/new/folder).
func (b *Builder) Build(ctx context.Context) (*Result, error) {
	made := missingDirs(b.OutDir)
	res, err := b.build(ctx)
	if err != nil {
		for _, d := range made { // deepest first; one that holds anything stays
			if os.Remove(d) != nil {
				break
			}
		}
	}
	return res, err
}

// A build's work folder is outDir/.build-XXXX, holding workMarker from
// the start: a later build removes only folders that carry it, never
// someone's .build-cache.
const (
	workPrefix     = ".build-"
	workMarker     = ".etoile-build-work"
	workMarkerText = "the work folder of an etoile build: the next build into this folder removes it when its build was interrupted\n"
)

// cleanStaleWork removes the work folders interrupted builds left in
// outDir (the caller holds the folder's lock, so none is in use). The
// earlier artifacts such a build had moved aside (its old/ folder: it was
// killed while placing its files) go back into outDir where no newer file
// of the same name is, rather than being lost. A .build-* entry without
// the marker is not etoile's and stays.
func cleanStaleWork(outDir string, log *slog.Logger) {
	ents, err := os.ReadDir(outDir)
	if err != nil {
		return
	}
	removed := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), workPrefix) {
			continue
		}
		d := filepath.Join(outDir, e.Name())
		if !e.IsDir() {
			continue
		}
		if st, err := os.Lstat(filepath.Join(d, workMarker)); err != nil || !st.Mode().IsRegular() {
			if os.Remove(d) == nil {
				continue // empty (a build killed before its marker was written): nothing is lost
			}
			log.Warn("left in place: a folder named like a build's work folder, but not made by etoile (no "+workMarker+" in it)", "folder", d)
			continue
		}
		if !restoreAside(outDir, filepath.Join(d, "old"), log) {
			log.Warn("left in place: an interrupted build's work folder holding earlier artifacts that could not be put back", "folder", filepath.Join(d, "old"))
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			log.Warn("removing an interrupted build's work folder failed", "folder", d, "reason", err.Error())
			continue
		}
		removed++
	}
	if removed > 0 {
		log.Info("removed the work folders of interrupted builds", "count", removed)
	}
}

// restoreAside puts back into outDir the files an interrupted build had
// moved aside into old (placeAll), each where outDir has no file of its
// name (one there is newer: the interrupted build had placed it). It
// reports false when one could not be moved back. A build killed after it
// had placed everything (placedAll) gets nothing back: the earlier artifacts it
// removed on purpose (another spec's outputs) would come back with no
// checksum naming them.
func restoreAside(outDir, old string, log *slog.Logger) bool {
	ents, err := os.ReadDir(old)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		log.Warn("reading an interrupted build's folder of earlier artifacts failed", "folder", old, "reason", err.Error())
		return false
	}
	if placedAll(outDir, old) {
		log.Info("an interrupted build had placed all its artifacts: the earlier ones it replaced or removed stay gone", "folder", old)
		return true
	}
	ok := true
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		dst := filepath.Join(outDir, e.Name())
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			log.Warn("an interrupted build had moved an earlier artifact aside and placed a new one: keeping the new one; check SHA256SUMS (sha256sum -c) or build again",
				"file", dst)
			continue
		}
		if err := os.Rename(filepath.Join(old, e.Name()), dst); err != nil {
			log.Warn("could not put back an earlier artifact that an interrupted build had moved aside", "file", dst, "reason", err.Error())
			ok = false
			continue
		}
		log.Info("put back an earlier artifact that an interrupted build had moved aside", "file", dst)
	}
	return ok
}

// placedAll reports whether the build whose moved-aside files are in old
// had placed its SHA256SUMS, the last file it places, in outDir: it had
// moved the earlier one aside into old, so one in outDir is its own.
func placedAll(outDir, old string) bool {
	for _, p := range []string{filepath.Join(outDir, "SHA256SUMS"), filepath.Join(old, "SHA256SUMS")} {
		if st, err := os.Lstat(p); err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// missingDirs returns dir and those of its parents that do not exist, the
// deepest first: what os.MkdirAll(dir) would make.
func missingDirs(dir string) []string {
	var out []string
	for d := filepath.Clean(dir); ; {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			return out
		}
		out = append(out, d)
		parent := filepath.Dir(d)
		if parent == d {
			return out
		}
		d = parent
	}
}

func (b *Builder) build(ctx context.Context) (*Result, error) {
	defer buildUmask()()
	log := b.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	arch, ok := ArchInfo(b.Spec.Arch)
	if !ok {
		return nil, fmt.Errorf("arch %q is not supported", b.Spec.Arch)
	}
	if b.MachineConfig != nil {
		// A config no output carries is refused, not dropped (etoile build
		// checks first, and warns about the netboot set).
		if _, err := CheckConfigOutputs(b.Spec.Outputs); err != nil {
			return nil, err
		}
	}
	agent, err := os.ReadFile(b.AgentPath)
	if err != nil {
		return nil, fmt.Errorf("reading the etoile-agent binary: %w (build it with `make build`, or give --agent PATH)", err)
	}
	if err := checkAgent(b.AgentPath, arch); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.OutDir, 0o755); err != nil {
		if link, to := danglingSymlink(b.OutDir); link != "" {
			return nil, fmt.Errorf("creating output folder %s: %s is a dangling symlink (to %s, which does not exist): remove it, or give -o another folder", b.OutDir, link, to)
		}
		return nil, fmt.Errorf("creating output folder: %w", err)
	}
	unlock, err := lockOutDir(b.OutDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Work folders of builds that were killed (SIGKILL, a closed terminal)
	// are stale: this build holds the folder's lock.
	cleanStaleWork(b.OutDir, log)
	work, err := os.MkdirTemp(b.OutDir, workPrefix)
	if err != nil {
		return nil, fmt.Errorf("creating work folder in %s: %w", b.OutDir, err)
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, workMarker), []byte(workMarkerText), 0o644); err != nil {
		return nil, fmt.Errorf("creating work folder in %s: %w", b.OutDir, err)
	}
	// go-diskfs stages the ISO's and the squashfs's trees in a temporary
	// folder of its own (os.MkdirTemp("")): inside the work folder, not in a
	// /tmp that may be a tmpfs taking RAM for the whole system tree.
	// Absolute: go-diskfs enters its workspace (see media's
	// finalizeSquashfsInWorkspace), and -o may be relative.
	tmp, err := filepath.Abs(filepath.Join(work, "tmp"))
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("creating the work folder's tmp: %w", err)
	}
	prevTMPDIR, hadTMPDIR := os.LookupEnv("TMPDIR")
	os.Setenv("TMPDIR", tmp)
	defer func() {
		if hadTMPDIR {
			os.Setenv("TMPDIR", prevTMPDIR)
		} else {
			os.Unsetenv("TMPDIR")
		}
	}()

	version := b.Spec.Version
	if version == "" {
		version = b.Tool.Version
	}
	step := func(name string, f func() error) error {
		start := time.Now()
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		log.Info("step done", "step", name, "took", time.Since(start).Round(time.Millisecond))
		return nil
	}

	var (
		k       *kernel.Kernel
		mods    []kernel.Module
		boot    bootFiles
		outputs = map[string]string{} // artifact name → file in work
	)
	fetcher := &debian.Fetcher{CacheDir: filepath.Join(b.CacheDir, "debs"), Log: log, Architecture: arch.Name,
		LocalHint: "the bootloaders and CA certificates come from Debian's isolinux, syslinux-common, systemd-boot-efi and ca-certificates packages: " +
			"run `apt-get update` on a machine with a package mirror, or copy those .deb files (name_version_arch.deb) into " +
			filepath.Join(b.CacheDir, "debs")}

	if err := step("kernel", func() error {
		src := kernel.Source{Package: b.Spec.Kernel.Package, Dir: b.Spec.KernelDir(), Arch: arch.Name}
		var err error
		k, err = kernel.Resolve(ctx, src, b.CacheDir, log)
		if err != nil {
			return err
		}
		log.Info("kernel", "version", k.Version)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := step("modules", func() error {
		var err error
		mods, err = k.Select(b.Spec.Modules)
		var inconsistent *kernel.InconsistentError
		switch {
		case errors.As(err, &inconsistent):
			return err
		case err != nil:
			return fmt.Errorf("%w (fix spec field modules)", err)
		}
		if err := checkOutputModules(b.Spec.Outputs, mods, k); err != nil {
			return err
		}
		log.Info("modules selected", "listed", len(b.Spec.Modules), "with_dependencies", len(mods))
		return nil
	}); err != nil {
		return nil, err
	}
	if err := step("bootloaders", func() error {
		var err error
		if boot, err = b.fetchBootFiles(ctx, fetcher, arch, work); err != nil {
			return err
		}
		boot.caBundle, boot.caPackage, err = fetchCABundle(ctx, fetcher, work)
		return err
	}); err != nil {
		return nil, err
	}

	var k3sArt *k3s.Artifacts
	if err := step("k3s", func() error {
		var err error
		k3sArt, err = b.fetchK3s(ctx, log)
		return err
	}); err != nil {
		return nil, err
	}

	initrd := filepath.Join(work, "initramfs.img")
	if err := step("initramfs", func() error {
		f, err := os.Create(initrd)
		if err != nil {
			return err
		}
		defer f.Close()
		// Device drivers load when the agent finds their hardware; the
		// list the agent loads on every boot holds only the rest.
		always := "# Loaded by the agent on every boot, after the ready line. Device drivers of the\n" +
			"# image's module list are not here: they load when their hardware is found.\n" +
			strings.Join(kernel.Always(b.Spec.Modules, mods), "\n") + "\n"
		files := []initramfs.File{
			{Path: "/etc/etoile/modules", Mode: 0o644, Data: []byte(always)},
			{Path: "/etc/etoile/version", Mode: 0o644, Data: []byte(version + "\n")},
		}
		st, err := initramfs.WriteContext(ctx, f, initramfs.Options{
			Init: agent, KernelVersion: k.Version, Modules: mods,
			Compression: b.Spec.Initramfs.Compression, Epoch: b.Epoch, Files: files,
		})
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		log.Info("initramfs", "size", st.CompressedSize, "uncompressed", st.UncompressedSize, "budget", 30<<20)
		if st.CompressedSize > 30<<20 {
			log.Warn("initramfs is over the 30 MB budget: trim spec.modules", "size", st.CompressedSize)
		}
		return nil
	}); err != nil {
		return nil, err
	}

	system := filepath.Join(work, "system.sqfs")
	if err := step("system image", func() error {
		stage := filepath.Join(work, "rootfs")
		if err := b.stageRoot(stage, version); err != nil {
			return err
		}
		// Staging copies K3s and the extensions (CUDA libraries: gigabytes)
		// in turn: a Ctrl-C stops between them.
		if err := ctx.Err(); err != nil {
			return err
		}
		// Before K3s and the extensions: a site's extension may replace it.
		if err := stageFile(stage, CABundlePath, boot.caBundle, 0o644); err != nil {
			return fmt.Errorf("adding the CA certificates: %w", b.staged.nameLayer(err))
		}
		b.staged.put(CABundlePath, ownFiles)
		if k3sArt != nil {
			if err := stageK3s(stage, k3sArt); err != nil {
				return fmt.Errorf("adding K3s: %w", b.staged.nameLayer(err))
			}
			for _, f := range k3sArt.ImageFiles() {
				b.staged.put(strings.TrimPrefix(f.Path, "/"), "K3s")
				if f.Link == "" && path.Dir(f.Path) == k3s.ImageAirgapDir {
					b.staged.put(strings.TrimPrefix(path.Join(shippedImagesDir, path.Base(f.Path)), "/"), "K3s")
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.stageExtensions(stage, k.Version); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := mergeExtensionModules(stage, k, mods, b.staged, log); err != nil {
			return err
		}
		if k3sArt != nil {
			sh, err := stageShell(stage)
			if err != nil {
				return fmt.Errorf("linking /bin/sh to K3s's shell: %w", b.staged.nameLayer(err))
			}
			if sh != "" {
				log.Info("K3s's shell", "link", sh, "to", K3sShell, "why", "K3s's iptables are #!/bin/sh scripts")
			}
		}
		checkNvidiaRuntime(stage, log)
		return media.WriteSquashfsContext(ctx, system, stage, media.SquashfsOptions{Epoch: b.Epoch})
	}); err != nil {
		return nil, err
	}

	if b.Spec.Wants(OutputNetboot) {
		outputs[b.name("-vmlinuz")] = k.Vmlinuz
		outputs[b.name("-initramfs.img")] = initrd
		outputs[b.name("-system.sqfs")] = system
	}

	var isoArgs, rawArgs string
	if b.Spec.Wants(OutputISO) || b.Spec.Wants(OutputRaw) {
		// The media's system image carries a dm-verity hash tree; the agent
		// maps it through dm-verity with the root hash the kernel command
		// line gives (etoile.verity=), so a damaged medium fails every read
		// of a damaged block rather than mounting it. The netboot artifact
		// is the same file when both are built: squashfs ignores the tree
		// past its bytes_used, and etoile.system.sha256 guards a download.
		if err := step("verity", func() error {
			t, err := verity.AppendContext(ctx, system)
			if err != nil {
				return err
			}
			log.Info("dm-verity hash tree", "root", hex.EncodeToString(t.Root[:]), "data_blocks", t.DataBlocks)
			isoArgs = b.mediaCmdline(arch, t.Cmdline())
			rawArgs = b.mediaCmdline(arch, t.Cmdline(), "etoile.slot=a")
			return nil
		}); err != nil {
			return nil, err
		}
		// The media's GUIDs and volume ids come from what they hold, so
		// images of different specs from one commit differ (two disks
		// carrying different Étoile images are told apart).
		if err := b.setContentID(ctx, initrd, system, isoArgs); err != nil {
			return nil, err
		}
	}
	if b.Spec.Wants(OutputISO) {
		iso := filepath.Join(work, "etoile.iso")
		if err := step("iso", func() error {
			return b.writeISOContext(ctx, iso, work, arch, k, initrd, system, boot, version, isoArgs)
		}); err != nil {
			return nil, err
		}
		outputs[b.name(".iso")] = iso
	}
	if b.Spec.Wants(OutputRaw) {
		raw := filepath.Join(work, "etoile.raw")
		if err := step("raw disk", func() error {
			return b.writeRawContext(ctx, raw, arch, k, initrd, system, boot, version, rawArgs)
		}); err != nil {
			return nil, err
		}
		outputs[b.name(".raw")] = raw
	}

	// Checksums and SBOM describe exactly the files that land.
	var arts []Artifact
	names := make([]string, 0, len(outputs))
	for n := range outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sum, size, err := fileSHA256Ctx(ctx, outputs[n])
		if err != nil {
			return nil, err
		}
		arts = append(arts, Artifact{Name: n, Size: size, SHA256: sum})
	}
	sbomName := b.name(".spdx.json")
	sbomPath := filepath.Join(work, sbomName)
	if err := step("sbom", func() error {
		doc, err := b.sbom(version, k, boot.packages, boot.caPackage, k3sArt, arts)
		if err != nil {
			return err
		}
		return os.WriteFile(sbomPath, doc, 0o644)
	}); err != nil {
		return nil, err
	}
	outputs[sbomName] = sbomPath
	sum, size, err := fileSHA256(sbomPath)
	if err != nil {
		return nil, err
	}
	arts = append(arts, Artifact{Name: sbomName, Size: size, SHA256: sum})
	sort.Slice(arts, func(i, j int) bool { return arts[i].Name < arts[j].Name })
	var sums strings.Builder
	for _, a := range arts {
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, a.Name)
	}
	sumsPath := filepath.Join(work, "SHA256SUMS")
	if err := os.WriteFile(sumsPath, []byte(sums.String()), 0o644); err != nil {
		return nil, err
	}
	outputs["SHA256SUMS"] = sumsPath

	// Land everything. Inputs from the cache (the kernel) are copied into
	// the work folder first; then the files this build replaces, and an
	// earlier build's artifacts it does not make, are moved aside, and the
	// new ones renamed in, SHA256SUMS last so it never names a missing
	// file. A rename that fails puts the folder back as it was.
	names = names[:0]
	for n := range outputs {
		if n != "SHA256SUMS" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	names = append(names, "SHA256SUMS")
	for _, n := range names {
		if st, err := os.Lstat(filepath.Join(b.OutDir, n)); err == nil && !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a file (%s): move it away, and build again", filepath.Join(b.OutDir, n), st.Mode().Type())
		}
	}
	// The ISO and the raw disk of a build with a machine config hold its
	// secrets (the cluster token, registry passwords): they land readable
	// by their owner only. Until then they are in the work folder, which
	// only its owner can enter (os.MkdirTemp makes it 0700).
	private := map[string]bool{}
	if b.MachineConfig != nil {
		for _, o := range configOutputs {
			if b.Spec.Wants(o) {
				private[b.name("."+o)] = true
			}
		}
	}
	staged := map[string]string{}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mode := fs.FileMode(0o644)
		if private[n] {
			mode = 0o600
		}
		p, err := stage(outputs[n], work, n, mode)
		if err != nil {
			return nil, err
		}
		staged[n] = p
	}
	// An earlier build's artifacts that this one does not make (another
	// spec's outputs) go, with its SHA256SUMS: nobody flashes a stale
	// image that no checksum names. Only those the old SHA256SUMS names with
	// the checksum they still have: a file changed since (a raw disk given
	// its config with mcopy) or never listed is someone's work, left in
	// place with a warning.
	oldSums := readSums(filepath.Join(b.OutDir, "SHA256SUMS"))
	var stale []string
	for _, n := range b.artifactNames() {
		if _, made := outputs[n]; made {
			continue
		}
		path := filepath.Join(b.OutDir, n)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		if sum, listed := oldSums[n]; !listed || !sameSHA256(path, sum) {
			log.Warn("left in place: a file with an artifact's name that this build does not make, changed since the earlier build's SHA256SUMS or not listed there; no checksum names it now",
				"file", path, "fix", "remove it or move it away if it is an old image")
			continue
		}
		stale = append(stale, n)
	}
	if err := placeAll(b.OutDir, filepath.Join(work, "old"), staged, names, stale); err != nil {
		return nil, err
	}
	// The earlier artifacts moved aside go now, not with the work folder
	// when the build returns (seconds for an ISO): a build killed before
	// that would have the next one put them back (cleanStaleWork), with no
	// checksum naming them. Renamed out of old first, so that a kill while
	// they are removed leaves none to put back.
	gone := filepath.Join(work, "placed")
	if os.Rename(filepath.Join(work, "old"), gone) != nil {
		gone = filepath.Join(work, "old")
	}
	if err := os.RemoveAll(gone); err != nil {
		log.Warn("removing the earlier artifacts this build replaced failed", "folder", gone, "reason", err.Error())
	}
	// The renames reach the disk: a power cut now leaves the new files.
	if err := syncPath(b.OutDir); err != nil {
		log.Warn("the artifacts are in place, but the output folder could not be synced to the disk: a power cut soon could lose them; run sync",
			"folder", b.OutDir, "reason", err.Error())
	}
	for _, n := range stale {
		log.Info("removed an earlier build's artifact that this build does not make", "file", filepath.Join(b.OutDir, n))
	}
	res := &Result{Artifacts: arts, Kernel: k.Version, K3sMissing: b.k3sMissing, OwnerOnly: slices.Sorted(maps.Keys(private))}
	if len(res.OwnerOnly) > 0 {
		log.Info("readable by their owner only (mode 0600): they hold the machine config, with its secrets", "files", strings.Join(res.OwnerOnly, ", "))
	}
	if k3sArt != nil {
		res.K3s, res.K3sStandin = k3sArt.Version, k3sArt.Standin
	}
	return res, nil
}

// mediaCmdline is the kernel command line of a medium: the build's own
// arguments for it (own: etoile.verity=, etoile.slot=) first, then the
// consoles, then the spec's kernel.cmdline. Nothing of the spec comes
// before the build's arguments: one the agent would not read past (the
// spec refuses "--", and every etoile.* argument the build sets) would
// otherwise hide them.
func (b *Builder) mediaCmdline(arch Arch, own ...string) string {
	return strings.Join(slices.Concat(own, []string{"console=tty0", "console=" + arch.Serial + ",115200"}, b.Spec.Kernel.Cmdline), " ")
}

// AgentPackage is the Go package of the node's program.
const AgentPackage = "github.com/etoile-os/etoile/cmd/etoile-agent"

// checkAgent makes sure the binary that becomes the initramfs's /init is
// etoile-agent, static (the initramfs has no dynamic loader) and for the
// image's architecture: anything else makes media whose kernel panics
// with "Attempted to kill init".
func checkAgent(path string, arch Arch) error {
	fix := "build it with `make build` (CGO_ENABLED=0 go build ./cmd/etoile-agent), or give --agent the path of that binary"
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--agent %s is not a Go program (%v): it must be etoile-agent; %s", path, err, fix)
	}
	if bi.Path != AgentPackage {
		return fmt.Errorf("--agent %s is %s, not etoile-agent (%s): %s", path, bi.Path, AgentPackage, fix)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("--agent %s is not an ELF binary (%v): %s", path, err, fix)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("--agent %s is linked dynamically (cgo): the initramfs has no dynamic loader; build it with CGO_ENABLED=0 (`make build` does)", path)
		}
	}
	if want := arch.ELFMachine; want != elf.EM_NONE && f.Machine != want {
		return fmt.Errorf("--agent %s is built for %s, the image is %s: build it with GOARCH=%s", path, f.Machine, arch.Name, arch.Name)
	}
	return nil
}

// readSums reads a SHA256SUMS file: name → hex (empty when unreadable).
func readSums(path string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if sum, name, ok := strings.Cut(line, "  "); ok && len(sum) == 64 {
			out[strings.TrimPrefix(name, "*")] = strings.ToLower(sum)
		}
	}
	return out
}

// sameSHA256 reports whether the file's SHA-256 is sum.
func sameSHA256(path, sum string) bool {
	got, _, err := fileSHA256(path)
	return err == nil && got == sum
}

// stage readies artifact name, made at src, for placeAll: a file outside
// the work folder (the kernel, from the cache) is copied in, so that its
// placing is a rename on one filesystem; the staged file gets mode (0644,
// or 0600 for one that holds secrets) and is synced to the disk before it
// is renamed (a power cut after the rename then never leaves an empty or
// partial file under the artifact's name); it returns the staged path.
func stage(src, work, name string, mode fs.FileMode) (string, error) {
	if !strings.HasPrefix(src, work+string(filepath.Separator)) {
		tmp := filepath.Join(work, "land-"+name)
		if err := copyFile(src, tmp, mode); err != nil {
			return "", err
		}
		src = tmp
	}
	if err := os.Chmod(src, mode); err != nil {
		return "", err
	}
	if err := syncPath(src); err != nil {
		return "", err
	}
	return src, nil
}

// fsync flushes an open file or folder to the disk: (*os.File).Sync, a
// variable so that a test sees what a build syncs.
var fsync = (*os.File).Sync

// syncPath flushes the file or folder at p to the disk: a file's bytes
// (whatever handle wrote them: the initramfs, the system image and its
// dm-verity tree, the SBOM, SHA256SUMS), or a folder's entries (the
// renames into it).
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = fsync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s to the disk: %w", p, err)
	}
	return nil
}

// danglingSymlink returns the first of p and its parents that is a
// symlink to nothing, with its target, or "".
func danglingSymlink(p string) (link, to string) {
	for d := filepath.Clean(p); ; {
		if st, err := os.Lstat(d); err == nil && st.Mode()&fs.ModeSymlink != 0 {
			if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
				to, _ := os.Readlink(d)
				return d, to
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", ""
		}
		d = parent
	}
}

// placeAll renames staged[name] to outDir/name for each of names, in
// order, after moving aside (into old, on the same filesystem) the files
// they replace and those named by gone: all of it, or — when a rename
// fails — none: what was placed goes, and what was moved aside comes back.
func placeAll(outDir, old string, staged map[string]string, names, gone []string) (err error) {
	if err := os.Mkdir(old, 0o700); err != nil {
		return fmt.Errorf("placing the artifacts: %w", err)
	}
	var aside, placed []string
	defer func() {
		if err == nil {
			return
		}
		for _, n := range placed {
			_ = os.Remove(filepath.Join(outDir, n))
		}
		for _, n := range aside {
			_ = os.Rename(filepath.Join(old, n), filepath.Join(outDir, n))
		}
	}()
	for _, n := range append(slices.Clone(gone), names...) {
		dst := filepath.Join(outDir, n)
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(dst, filepath.Join(old, n)); err != nil {
			return fmt.Errorf("moving the earlier %s aside: %w", n, err)
		}
		aside = append(aside, n)
	}
	for _, n := range names {
		if err := os.Rename(staged[n], filepath.Join(outDir, n)); err != nil {
			return fmt.Errorf("placing %s: %w", n, err)
		}
		placed = append(placed, n)
	}
	return nil
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

func fileSHA256(path string) (string, int64, error) {
	return fileSHA256Ctx(context.Background(), path)
}

// fileSHA256Ctx is fileSHA256 that stops when ctx ends (an ISO of
// gigabytes takes seconds to hash).
func fileSHA256Ctx(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, media.CtxReader(ctx, f))
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// fetchBootFiles takes ISOLINUX, its MBR code and systemd-boot from Debian's
// packages (the same versions the SBOM names).
func (b *Builder) fetchBootFiles(ctx context.Context, f *debian.Fetcher, arch Arch, work string) (bootFiles, error) {
	var bf bootFiles
	want := []struct {
		pkg   string
		files map[string]*string
	}{
		{"systemd-boot-efi", map[string]*string{"usr/lib/systemd/boot/efi/" + arch.SystemdBoot: &bf.systemdBoot}},
	}
	if arch.BIOS {
		want = append(want,
			struct {
				pkg   string
				files map[string]*string
			}{"isolinux", map[string]*string{"usr/lib/ISOLINUX/isolinux.bin": &bf.isolinuxBin, "usr/lib/ISOLINUX/isohdpfx.bin": &bf.isohdpfx}},
			struct {
				pkg   string
				files map[string]*string
			}{"syslinux-common", map[string]*string{"usr/lib/syslinux/modules/bios/ldlinux.c32": &bf.ldlinux}})
	}
	for _, w := range want {
		p, err := f.Fetch(ctx, w.pkg)
		if err != nil {
			return bf, err
		}
		bf.packages = append(bf.packages, p)
		dir := filepath.Join(work, "pkg-"+w.pkg)
		if err := p.ExtractContext(ctx, dir, func(path string) bool {
			_, ok := w.files[strings.TrimPrefix(path, "./")]
			return ok
		}); err != nil {
			return bf, fmt.Errorf("unpacking %s: %w", w.pkg, err)
		}
		for rel, dst := range w.files {
			full := filepath.Join(dir, rel)
			if _, err := os.Stat(full); err != nil {
				return bf, fmt.Errorf("package %s %s has no %s: is it the expected package?", p.Name, p.Version, rel)
			}
			*dst = full
		}
	}
	return bf, nil
}

// Standard folders of the system image: mount points and K3s's places.
var rootDirs = []string{
	"bin", "dev", "etc", "etc/etoile", "etc/rancher/k3s", "home", "mnt", "proc", "root", "run", "sys", "tmp",
	"usr", "usr/bin", "usr/local/bin", "usr/sbin", "var", "var/lib", "var/lib/etoile",
	"var/lib/rancher/k3s/agent/images", "var/lib/rancher/k3s/server/manifests", "var/log",
}

// stageRoot lays out the system image's tree: folders, the built-in
// overlay, the spec's overlays in order, and generated identity files.
func (b *Builder) stageRoot(dir, version string) error {
	b.staged = newLayerLog(dir)
	for _, d := range rootDirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
		b.staged.put(d, ownFiles)
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	// /var/run is /run, as on Debian: daemons still write their pid files
	// there (nvidia-persistenced's /var/run/nvidia-persistenced/). A layer
	// with a var/run folder is refused, naming it (its files would be
	// under /run's tmpfs at boot, out of sight).
	if err := os.Symlink("../run", filepath.Join(dir, "var/run")); err != nil {
		return err
	}
	b.staged.put("var/run", ownFiles)
	builtin, err := overlay.Root()
	if err != nil {
		return err
	}
	if err := copyTreeAs(builtin, dir, b.staged, ownFiles); err != nil {
		return fmt.Errorf("built-in overlay: %w", b.staged.nameLayer(err))
	}
	for i, o := range b.Spec.OverlayDirs() {
		if err := copyTreeAs(os.DirFS(o), dir, b.staged, fmt.Sprintf("overlays[%d] %s", i, b.Spec.Overlays[i])); err != nil {
			return fmt.Errorf("overlays[%d] %s: %w", i, o, b.staged.nameLayer(err))
		}
	}
	osRelease := fmt.Sprintf("NAME=\"Étoile\"\nID=etoile\nPRETTY_NAME=\"Étoile %s\"\nVERSION_ID=%q\nVERSION=%q\nHOME_URL=\"https://github.com/etoile-os/etoile\"\n", version, version, version)
	w, err := openStage(dir)
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.file("etc/os-release", "", []byte(osRelease), 0o644); err != nil {
		return b.staged.nameLayer(err)
	}
	if err := w.file("etc/etoile/version", "", []byte(version+"\n"), 0o644); err != nil {
		return b.staged.nameLayer(err)
	}
	b.staged.put("etc/os-release", ownFiles)
	b.staged.put("etc/etoile/version", ownFiles)
	return nil
}

// copyTree copies files, folders and symlinks from src onto dst, their
// modes made as git keeps them (checkoutMode).
func copyTree(src fs.FS, dst string) error { return copyTreeAs(src, dst, nil, "") }

// copyTreeAs is copyTree recording in layers that the layer named layer put
// each of its paths there.
func copyTreeAs(src fs.FS, dst string, layers *layerLog, layer string) error {
	return copyLayer(src, dst, layers, layer, checkoutMode, func(p string, _ fs.FileInfo) (string, error) {
		rl, ok := src.(fs.ReadLinkFS)
		if !ok {
			return "", fmt.Errorf("%s: symlinks are not readable from this source", p)
		}
		return rl.ReadLink(p)
	})
}

// copyLayer lays a layer (an overlay, an extension) over the staged tree
// dst: files are streamed, not read whole. Nothing is written outside dst,
// and nothing through a symlink an earlier layer left in dst: a folder here
// that is a symlink or a file there (or the other way round) is an error
// naming the path, since one layer's files would otherwise land where the
// other's symlink points, even on the build host. What the layer puts
// there is recorded in layers (nil: nowhere) under its name. modeOf gives
// the mode in the image of each folder and file the layer adds, from its
// mode in src.
func copyLayer(src fs.FS, dst string, layers *layerLog, layer string, modeOf func(fs.FileMode) fs.FileMode, readLink func(p string, info fs.FileInfo) (string, error)) error {
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	return fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if !utf8.ValidString(p) {
			return fmt.Errorf("the file name %q is not UTF-8: rename it (the system image's names are UTF-8)", p)
		}
		rel := filepath.FromSlash(p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if p == "var/run" || strings.HasPrefix(p, "var/run/") {
			// The image's /var/run is /run, a tmpfs at boot (stageRoot).
			if p == "var/run" && info.Mode()&fs.ModeSymlink != 0 {
				if to, err := readLink(p, info); err == nil && (to == "../run" || to == "/run") {
					return nil // the same link
				}
			}
			return fmt.Errorf("%s: the image's /var/run is /run, an empty tmpfs at boot, where daemons make their files as they run: leave var/run out of the layer", p)
		}
		have, herr := root.Lstat(rel)
		exists := herr == nil
		switch {
		case info.IsDir():
			mode := modeOf(info.Mode())
			if exists {
				// A folder already there keeps its mode (the image's /tmp
				// stays 1777 under an overlay's tmp/).
				return layers.nameLayer(mustBeDir(root, rel, have, "a folder here"))
			}
			if err := root.Mkdir(rel, mode.Perm()); err != nil {
				return err
			}
			layers.put(p, layer)
			return root.Chmod(rel, mode) // past the umask
		case info.Mode()&fs.ModeSymlink != 0:
			to, err := readLink(p, info)
			if err != nil {
				return err
			}
			if exists && have.IsDir() {
				// An empty folder gives way (an extension's bin -> usr/bin
				// over the image's empty bin); one with files does not.
				if err := root.Remove(rel); err != nil {
					return layers.nameLayer(&layerConflict{Path: p, Folder: true, msg: func(earlier string) string {
						return fmt.Sprintf("%s is a symlink here, but a folder with files in an earlier layer (%s): move the files or rename one of them", p, earlier)
					}})
				}
			}
			_ = root.Remove(rel)
			if err := root.Symlink(to, rel); err != nil {
				return err
			}
			layers.put(p, layer)
			return nil
		case info.Mode().IsRegular():
			mode := modeOf(info.Mode()) // a setuid tool stays one
			if exists && have.IsDir() {
				return layers.nameLayer(&layerConflict{Path: p, Folder: true, msg: func(earlier string) string {
					return fmt.Sprintf("%s is a file here, but a folder in an earlier layer (%s): rename one of them", p, earlier)
				}})
			}
			in, err := src.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			if err := writeInRoot(root, rel, in, mode); err != nil {
				return err
			}
			layers.put(p, layer)
			return nil
		default:
			return fmt.Errorf("%s: only files, folders and symlinks can be in an overlay or extension (found %s)", p, info.Mode().Type())
		}
	})
}

// specialBits are the setuid, setgid and sticky bits, which the system
// image keeps.
const specialBits = fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// checkoutMode is the mode in the image of a folder or file of a folder
// layer (the built-in overlay, an overlay, an extension folder): as git
// keeps them, folders 0755, files 0755 when their owner may run them and
// 0644 otherwise, with setuid, setgid and sticky bits kept. A checkout made
// under any umask (077: folders 0700, files 0600) gives the same image,
// byte for byte, and no file of it that only root can read; a folder layer
// cannot make a file private (0600) this way.
func checkoutMode(m fs.FileMode) fs.FileMode {
	perm := fs.FileMode(0o644)
	if m.IsDir() || m&0o100 != 0 {
		perm = 0o755
	}
	return perm | m&specialBits
}

// squashfsLayerMode is the mode in the image of a folder or file of a
// squashfs extension layer: the layer's own, which its maker chose and the
// layer file keeps (a private 0600 file stays private), under the build's
// umask 022; folders stay open to their owner, and read-only files (0444)
// become 0644.
func squashfsLayerMode(m fs.FileMode) fs.FileMode {
	perm := m.Perm()
	switch {
	case m.IsDir():
		perm |= 0o700
	case perm == 0o444:
		perm = 0o644
	}
	return perm&^buildMask | m&specialBits
}

// buildMask is the umask a build applies to a squashfs layer's modes,
// whatever the process's (buildUmask sets the same for everything else it
// writes; folder layers take checkoutMode).
const buildMask = 0o022

// mustBeDir says why an existing entry cannot be used as a folder (what
// says what the new layer has there).
func mustBeDir(root *os.Root, rel string, have fs.FileInfo, what string) error {
	p := filepath.ToSlash(rel)
	switch {
	case have.Mode()&fs.ModeSymlink != 0:
		to, _ := root.Readlink(rel)
		return &layerConflict{Path: p, msg: func(earlier string) string {
			return fmt.Sprintf("%s is %s, but an earlier layer (%s) made it a symlink to %s: put these files under the symlink's target instead, or drop the symlink", p, what, earlier, to)
		}}
	case !have.IsDir():
		return &layerConflict{Path: p, msg: func(earlier string) string {
			return fmt.Sprintf("%s is %s, but a file in an earlier layer (%s): rename one of them", p, what, earlier)
		}}
	}
	return nil
}

// ownFiles names the layer of what Étoile itself puts in the staged tree:
// its folders, its built-in overlay, the identity files, the CA bundle.
const ownFiles = "Étoile's own files"

// layerLog remembers which layer of the staged tree (Étoile's own files,
// an overlay, K3s, an extension) put each path there, so that a conflict
// with a later layer, or a bad module an extension brought, names that
// layer: the staged tree is a temporary folder, gone when the user reads
// the error. A nil *layerLog records nothing and knows nothing.
type layerLog struct {
	root string            // the staged tree
	by   map[string]string // slash path in the tree → the layer that made it
	in   map[string]string // slash path of a folder → the last layer that put something in it
}

func newLayerLog(root string) *layerLog {
	return &layerLog{root: root, by: map[string]string{}, in: map[string]string{}}
}

// put records that layer made p (slash-separated, relative to the tree).
func (l *layerLog) put(p, layer string) {
	if l == nil || layer == "" {
		return
	}
	p = path.Clean(filepath.ToSlash(p))
	l.by[p] = layer
	if d := path.Dir(p); d != "." {
		l.in[d] = layer
	}
}

// of returns the layer that made p, or "" when not known.
func (l *layerLog) of(p string) string {
	if l == nil {
		return ""
	}
	return l.by[path.Clean(filepath.ToSlash(p))]
}

// filled returns the layer that last put something in the folder p, or
// else the one that made it.
func (l *layerLog) filled(p string) string {
	if l == nil {
		return ""
	}
	p = path.Clean(filepath.ToSlash(p))
	if layer := l.in[p]; layer != "" {
		return layer
	}
	return l.by[p]
}

// nameLayer fills in the earlier layer of a *layerConflict in err from
// what l recorded, and returns err. It must see the conflict before any
// fmt.Errorf wraps it: the wrapper's message is made then.
func (l *layerLog) nameLayer(err error) error {
	var lc *layerConflict
	if l != nil && errors.As(err, &lc) && lc.Earlier == "" {
		if lc.Folder {
			lc.Earlier = l.filled(lc.Path)
		} else {
			lc.Earlier = l.of(lc.Path)
		}
	}
	return err
}

// layerConflict is a path that a layer has as one kind of entry (a file,
// a folder, a symlink) where an earlier layer put another.
type layerConflict struct {
	Path    string // slash-separated, relative to the staged tree
	Folder  bool   // the earlier layer has a folder there
	Earlier string // the earlier layer (overlays[0] site, extensions[1] nvidia), "" when not known
	unknown string // what to say when Earlier is not known; "": an overlay, Étoile's own files
	msg     func(earlier string) string
}

func (e *layerConflict) Error() string {
	earlier := e.Earlier
	if earlier == "" {
		earlier = e.unknown
	}
	if earlier == "" {
		earlier = "an overlay, Étoile's own files"
	}
	return e.msg(earlier)
}

// writeInRoot replaces rel under root with r's bytes, mode kept past the
// umask.
func writeInRoot(root *os.Root, rel string, r io.Reader, mode fs.FileMode) error {
	_ = root.Remove(rel)
	out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", filepath.ToSlash(rel), err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return root.Chmod(rel, mode)
}

// stageFile copies the host file src to rel in the staged tree dir.
func stageFile(dir, rel, src string, mode fs.FileMode) error {
	w, err := openStage(dir)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.file(rel, src, nil, mode)
}

// stageWriter writes what Étoile itself puts in the staged tree (identity
// files, the CA bundle, K3s) through the same guard as the layers: its
// folders must be real folders, not symlinks a layer left.
type stageWriter struct{ root *os.Root }

func openStage(dir string) (stageWriter, error) {
	r, err := os.OpenRoot(dir)
	return stageWriter{r}, err
}

func (w stageWriter) Close() error { return w.root.Close() }

// mkdirAll makes the folder rel and its parents, refusing a symlink or a
// file on the way (what realDirs checks; what it makes is new folders).
func (w stageWriter) mkdirAll(rel string) error {
	if err := w.realDirs(rel); err != nil {
		return err
	}
	return w.root.MkdirAll(rel, 0o755)
}

// realDirs checks that the parts of rel that exist are folders, not
// symlinks or files (what does not exist yet is made safely later).
func (w stageWriter) realDirs(rel string) error {
	cur := ""
	for _, part := range strings.Split(filepath.ToSlash(filepath.Clean(rel)), "/") {
		cur = filepath.Join(cur, part)
		have, err := w.root.Lstat(cur)
		if err != nil {
			return nil
		}
		if err := mustBeDir(w.root, cur, have, "a folder Étoile writes into"); err != nil {
			return err
		}
	}
	return nil
}

// file writes rel from the host file src (or data when src is "").
func (w stageWriter) file(rel, src string, data []byte, mode fs.FileMode) error {
	var r io.Reader = bytes.NewReader(data)
	if src != "" {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	return w.fileFrom(rel, r, mode)
}

// fileFrom writes rel from r.
func (w stageWriter) fileFrom(rel string, r io.Reader, mode fs.FileMode) error {
	if err := w.mkdirAll(filepath.Dir(rel)); err != nil {
		return err
	}
	if have, err := w.root.Lstat(rel); err == nil && have.IsDir() {
		p := filepath.ToSlash(rel)
		return &layerConflict{Path: p, Folder: true, unknown: "an overlay or extension", msg: func(earlier string) string {
			return fmt.Sprintf("%s is a folder in %s, where Étoile writes a file: remove it", p, earlier)
		}}
	}
	return writeInRoot(w.root, rel, r, mode)
}

// verifiedFile is file from the host file src, which must hold sum (its
// SHA-256, hex) as it is copied: what was verified earlier in the build and
// changed since (a release folder edited meanwhile) is never shipped. An
// empty sum is a programming error.
func (w stageWriter) verifiedFile(rel, src, sum string, mode fs.FileMode) error {
	if sum == "" {
		return fmt.Errorf("%s: no checksum to copy it against", src)
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if err := w.fileFrom(rel, io.TeeReader(f, h), mode); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(sum) {
		_ = w.root.Remove(rel)
		return fmt.Errorf("%s changed after it was verified: sha256 %s, expected %s — was it modified during the build? Build again", src, got, sum)
	}
	return nil
}

// symlink makes rel a symlink to to.
func (w stageWriter) symlink(rel, to string) error {
	if err := w.mkdirAll(filepath.Dir(rel)); err != nil {
		return err
	}
	if have, err := w.root.Lstat(rel); err == nil && have.IsDir() {
		p := filepath.ToSlash(rel)
		return &layerConflict{Path: p, Folder: true, unknown: "an overlay or extension", msg: func(earlier string) string {
			return fmt.Sprintf("%s is a folder in %s, where Étoile makes a symlink: remove it", p, earlier)
		}}
	}
	_ = w.root.Remove(rel)
	return w.root.Symlink(to, rel)
}

var errNoCache = errors.New("no cache folder: set XDG_CACHE_HOME or HOME")

// DefaultCacheDir is $XDG_CACHE_HOME/etoile, else ~/.cache/etoile.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "etoile"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", errNoCache
	}
	return filepath.Join(home, ".cache", "etoile"), nil
}

// CABundlePath is where the system image keeps the CA certificates, in
// Debian's place, where Go's crypto/x509 (K3s, containerd, the agent) and
// most tools look, and where the agent adds the machine config's own.
const CABundlePath = config.CABundlePath

// fetchCABundle makes the CA bundle from Debian's ca-certificates package
// the way update-ca-certificates does by default: every Mozilla certificate
// it ships, in the order of their names, each checked to be one.
func fetchCABundle(ctx context.Context, f *debian.Fetcher, work string) (string, *debian.Package, error) {
	const pkg, certDir = "ca-certificates", "usr/share/ca-certificates/mozilla/"
	p, err := f.Fetch(ctx, pkg)
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(work, "pkg-"+pkg)
	if err := p.ExtractContext(ctx, dir, func(path string) bool {
		path = strings.TrimPrefix(path, "./")
		return strings.HasPrefix(path, certDir) && strings.HasSuffix(path, ".crt")
	}); err != nil {
		return "", nil, fmt.Errorf("unpacking %s: %w", pkg, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, certDir, "*.crt"))
	if err != nil || len(files) == 0 {
		return "", nil, fmt.Errorf("package %s %s has no certificates in /%s: is it the expected package?", p.Name, p.Version, certDir)
	}
	sort.Strings(files)
	var bundle bytes.Buffer
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return "", nil, err
		}
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "CERTIFICATE" {
			return "", nil, fmt.Errorf("package %s %s: %s is not a PEM certificate", p.Name, p.Version, filepath.Base(name))
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return "", nil, fmt.Errorf("package %s %s: %s: %w", p.Name, p.Version, filepath.Base(name), err)
		}
		bundle.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			bundle.WriteByte('\n')
		}
	}
	out := filepath.Join(work, "ca-certificates.crt")
	return out, p, os.WriteFile(out, bundle.Bytes(), 0o644)
}

// buildUmask sets the process's umask to 022 for a build and returns what
// puts the old one back: the staged tree's modes (0755 folders, 0644
// files) go into the system image as they are, so a builder whose umask is
// 077 would otherwise make an image whose /etc only root can read, and
// different bytes than everyone else's.
func buildUmask() (restore func()) {
	old := syscall.Umask(0o022)
	return func() { syscall.Umask(old) }
}

// verityModuleUse is what the ISO and the raw disk need dm_verity for: the
// build appends a hash tree to their system image and puts etoile.verity=
// on their command lines, and the agent maps the image through dm-verity
// (dm_mod, dm_bufio and reed_solomon come with it from modules.dep).
const verityModuleUse = "the system image checked by dm-verity against etoile.verity="

// outputModules are the modules the agent needs to find and mount the
// system image of each output, with what each is for.
var outputModules = map[string][][2]string{
	OutputISO: {{"squashfs", "the system image"}, {"overlay", "the writable root"}, {"loop", "the system image file on the ISO"},
		{"isofs", "the ISO9660 volume"}, {"sr_mod", "the ISO as a CD"}, {"sd_mod", "the ISO written to a USB stick"},
		{"usb_storage", "the ISO written to a USB stick"}, {"dm_verity", verityModuleUse}},
	OutputRaw: {{"squashfs", "the system image"}, {"overlay", "the writable root"}, {"sd_mod", "a SATA or SCSI boot disk"},
		{"dm_verity", verityModuleUse}},
	OutputNetboot: {{"squashfs", "the system image"}, {"overlay", "the writable root"}, {"loop", "the downloaded system image file"}},
}

// checkOutputModules refuses a module list with which an output the spec
// asks for cannot boot: the agent would look for its medium and never find
// it. Modules built into the kernel count as there.
func checkOutputModules(outputs []string, mods []kernel.Module, k *kernel.Kernel) error {
	have := map[string]bool{}
	for _, m := range mods {
		have[m.Name] = true
	}
	// Each module once, with what each output needs it for.
	var missing []string
	why := map[string][]string{}
	for _, o := range outputs {
		for _, need := range outputModules[o] {
			name, what := need[0], need[1]
			if have[name] || k.Builtin(name) {
				continue
			}
			if _, seen := why[name]; !seen {
				missing = append(missing, name)
			}
			if !slices.Contains(why[name], what) {
				why[name] = append(why[name], what)
			}
		}
	}
	if len(missing) > 0 {
		list := make([]string, len(missing))
		for i, name := range missing {
			list[i] = name + " (" + strings.Join(why[name], "; ") + ")"
		}
		return fmt.Errorf("spec field modules lacks what the outputs %s need to boot: %s; add them (the default spec lists them: etoile build --print-default-spec)",
			strings.Join(outputs, ", "), strings.Join(list, ", "))
	}
	return nil
}

// checkNvidiaRuntime warns when the image carries an NVIDIA container
// runtime without what it runs (its hook, nvidia-container-cli, ldconfig,
// the driver's libraries in ld.so.cache, or a CDI spec): pods asking for
// runtimeClassName nvidia would fail on every GPU node. The agent says the
// same at boot; a warning, since a site may add the rest at run time.
func checkNvidiaRuntime(stage string, log *slog.Logger) {
	rts := agentk3s.Runtimes(stage)
	if problems := agentk3s.NvidiaRuntimeProblems(stage, rts); len(problems) > 0 {
		log.Warn("the image's NVIDIA container runtime lacks what it needs: pods with runtimeClassName: nvidia will fail to start; add it to the extension (see the README's Image extensions)",
			"missing", strings.Join(problems, "; "))
	}
}
