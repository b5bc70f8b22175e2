// Package image turns an ImageSpec into Étoile's boot media: kernel and
// modules, initramfs, system image, ISO, raw disk, netboot set, checksums
// and SBOM.
package image

import (
	"context"
	"debug/elf"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/etoile-os/etoile/agent/cmdline"
	"github.com/etoile-os/etoile/image/debian"
	"github.com/etoile-os/etoile/internal/squashfs"
	"github.com/etoile-os/etoile/schema"
	"github.com/google/go-containerregistry/pkg/name"
)

// KindImageSpec is the kind of document that describes an image.
const KindImageSpec = "ImageSpec"

//go:embed default.yaml
var defaultSpec []byte

// DefaultSpecYAML is the embedded default spec, as shipped.
func DefaultSpecYAML() []byte { return slices.Clone(defaultSpec) }

// ImageSpec is what to build.
type ImageSpec struct {
	APIVersion string        `yaml:"apiVersion"`
	Kind       string        `yaml:"kind"`
	Version    string        `yaml:"version"`
	Arch       string        `yaml:"arch"`
	Kernel     KernelSpec    `yaml:"kernel"`
	Modules    []string      `yaml:"modules"`
	Initramfs  InitramfsSpec `yaml:"initramfs"`
	Overlays   []string      `yaml:"overlays"`
	K3s        K3sSpec       `yaml:"k3s"`
	Extensions []Extension   `yaml:"extensions"`
	Outputs    []string      `yaml:"outputs"`

	// dir is the folder the spec was read from; relative overlay paths
	// are taken from there.
	dir string
	// k3sDir is the K3s release folder given outside the spec (--k3s-dir,
	// ETOILE_K3S_DIR): it replaces the spec's K3s source, so the spec is
	// validated with it (SpecOptions).
	k3sDir string
}

// SpecOptions are what the command line gives besides the spec file, which
// the spec is validated with.
type SpecOptions struct {
	// K3sDir is a K3s release folder (--k3s-dir, ETOILE_K3S_DIR): K3s comes
	// from it whatever k3s.source says, so a spec whose k3s.source is dir
	// needs no k3s.dir, and one whose source is none may list airgapImages.
	K3sDir string
	// KernelDir is a kernel folder (--kernel-dir, absolute): it replaces
	// the spec's kernel.package or kernel.dir, so a kernel.dir that is not
	// a folder on this machine (a CI runner's) does not fail the spec.
	KernelDir string
}

// KernelSpec says where the kernel and its modules come from.
type KernelSpec struct {
	Package string   `yaml:"package"`
	Dir     string   `yaml:"dir"`
	Cmdline []string `yaml:"cmdline"`
}

// K3sSpec says which K3s the system image carries and where it comes from.
type K3sSpec struct {
	// Version is a K3s release, e.g. v1.34.9+k3s1; empty: the pinned default.
	Version string `yaml:"version"`
	// Source is release (download and verify), oci (pull an image), dir (a
	// local release folder) or none (an image without K3s).
	Source string `yaml:"source"`
	// Dir is the release folder for source dir.
	Dir string `yaml:"dir"`
	// Image is the OCI image holding /bin/k3s for source oci.
	Image string `yaml:"image"`
	// AirgapTarball is a local airgap images archive for source oci.
	AirgapTarball string `yaml:"airgapTarball"`
	// Registries is a registries.yaml used to pull Image (mirrors, auth).
	Registries string `yaml:"registries"`
	// AirgapImages are more image archives for the site's own workloads,
	// imported by K3s at start like its own.
	AirgapImages []string `yaml:"airgapImages"`
}

// Extension adds to the system image: a folder of files, or the contents of
// a squashfs layer (the way a GPU image adds the NVIDIA driver and the
// container toolkit). Exactly one of Dir and Squashfs is given.
type Extension struct {
	Name     string `yaml:"name"`
	Dir      string `yaml:"dir"`
	Squashfs string `yaml:"squashfs"`
}

// InitramfsSpec tunes the initramfs.
type InitramfsSpec struct {
	Compression string `yaml:"compression"`
}

// Output names accepted in spec.outputs.
const (
	OutputISO     = "iso"
	OutputRaw     = "raw"
	OutputNetboot = "netboot"
)

// Arch holds what differs between CPU architectures, so that nothing else
// assumes amd64.
type Arch struct {
	Name          string // Debian and Go name: amd64
	KernelPackage string // default kernel package (Debian's)
	// UbuntuKernelPackage is the default on an Ubuntu build machine, whose
	// apt has no Debian kernel: its generic kernel, whose modules come in
	// linux-modules-* packages the resolver follows.
	UbuntuKernelPackage string
	EFIBootName         string // removable-media loader name on the ESP
	SystemdBoot         string // file in systemd-boot-efi
	BIOS                bool   // has an ISOLINUX (BIOS) boot path
	Serial              string // first serial console name
	// ELFMachine is what the agent binary must be built for.
	ELFMachine elf.Machine
}

var arches = map[string]Arch{
	"amd64": {Name: "amd64", KernelPackage: "linux-image-amd64", UbuntuKernelPackage: "linux-image-generic", EFIBootName: "BOOTX64.EFI",
		SystemdBoot: "systemd-bootx64.efi", BIOS: true, Serial: "ttyS0", ELFMachine: elf.EM_X86_64},
}

// ArchInfo returns what the build needs to know about arch.
func ArchInfo(arch string) (Arch, bool) {
	a, ok := arches[arch]
	return a, ok
}

var (
	// debianPackageName is Debian policy's package name: no leading '-',
	// so a name is never taken for one of apt-get's options.
	debianPackageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	moduleName        = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	versionText       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~_-]*$`)
)

// ParseSpec decodes and validates a spec. dir is where relative paths
// (overlays, kernel.dir) are taken from.
func ParseSpec(data []byte, dir string) (*ImageSpec, error) {
	return ParseSpecWith(data, dir, SpecOptions{})
}

// ParseSpecWith is ParseSpec validating the spec with what opts give.
func ParseSpecWith(data []byte, dir string, opts SpecOptions) (*ImageSpec, error) {
	var s ImageSpec
	if err := schema.Decode(data, KindImageSpec, &s); err != nil {
		return nil, err
	}
	s.dir, s.k3sDir = dir, opts.K3sDir
	if opts.KernelDir != "" {
		s.Kernel.Package, s.Kernel.Dir = "", opts.KernelDir
	}
	s.applyDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// MaxSpecSize bounds an image spec file (real ones are a few KB).
const MaxSpecSize = 1 << 20

// LoadSpec reads a spec file; an empty path gives the embedded default.
func LoadSpec(path string) (*ImageSpec, error) {
	return LoadSpecContext(context.Background(), path)
}

// LoadSpecContext is LoadSpec that gives up reading when ctx ends (a named
// pipe nobody writes to).
func LoadSpecContext(ctx context.Context, path string) (*ImageSpec, error) {
	return LoadSpecWith(ctx, path, SpecOptions{})
}

// LoadSpecWith is LoadSpecContext validating the spec with what opts give.
func LoadSpecWith(ctx context.Context, path string, opts SpecOptions) (*ImageSpec, error) {
	if path == "" {
		return ParseSpecWith(defaultSpec, ".", opts)
	}
	data, err := schema.ReadFileContext(ctx, path, MaxSpecSize)
	if err != nil {
		return nil, fmt.Errorf("reading image spec: %w", err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("reading image spec %s: %w", path, err)
	}
	s, err := ParseSpecWith(data, abs, opts)
	if err != nil {
		return nil, fmt.Errorf("image spec %s:\n%w", path, err)
	}
	return s, nil
}

// hostIsUbuntu reads os-release: Ubuntu or a distribution built on it,
// whose kernel is linux-image-generic.
var hostIsUbuntu = debian.HostIsUbuntu

func (s *ImageSpec) applyDefaults() {
	if s.Arch == "" {
		s.Arch = "amd64"
	}
	if s.Kernel.Package == "" && s.Kernel.Dir == "" {
		if a, ok := arches[s.Arch]; ok {
			s.Kernel.Package = a.KernelPackage
			if hostIsUbuntu("/etc/os-release") {
				s.Kernel.Package = a.UbuntuKernelPackage
			}
		}
	}
	if s.Initramfs.Compression == "" {
		s.Initramfs.Compression = "zstd"
	}
	if s.Outputs == nil { // left out (an explicit [] is an error: Validate)
		s.Outputs = []string{OutputISO, OutputRaw, OutputNetboot}
	}
	if s.K3s.Source == "" {
		s.K3s.Source = K3sRelease
	}
}

// K3s sources.
const (
	K3sRelease = "release"
	K3sOCI     = "oci"
	K3sDir     = "dir"
	K3sNone    = "none"
)

var extensionName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Bounds of a few free-text fields.
const (
	maxVersion = 64
	// maxSpecCmdline leaves room, in x86's 2048-byte kernel command line,
	// for the arguments the build and the boot loader add.
	maxSpecCmdline = 1536
)

// cmdlineArgProblem says what is wrong with one entry of the spec's kernel
// command line, or "". The build's own arguments come first on every
// command line it writes (etoile.verity=, etoile.slot=, the consoles); an
// entry may not end the kernel's arguments early, replace the agent as the
// first process, or be split differently by the kernel and the agent.
func cmdlineArgProblem(arg string) string {
	if arg == "" {
		return "is empty: each entry is one argument"
	}
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' {
			return "holds a space or a quote: each entry is one argument, without spaces or quotes"
		}
		if c < 0x21 || c > 0x7e {
			what := fmt.Sprintf("the byte 0x%02x", c)
			if r, n := utf8.DecodeRuneInString(arg[i:]); r != utf8.RuneError || n > 1 {
				what = fmt.Sprintf("%U", r)
			}
			return "holds " + what + ", which is not printable ASCII: an entry takes only the characters ! to ~ " +
				"(the kernel reads some control and non-ASCII characters, such as \\v, \\f and U+00A0, as spaces between arguments where the agent does not, so the two would read different arguments)"
		}
	}
	key, _, hasValue := strings.Cut(arg, "=")
	switch {
	case key == "--":
		return "ends the kernel's arguments: what follows it goes to the first process as its own arguments, and the agent stops reading etoile.* arguments there; leave it out"
	case !hasValue:
	case key == "init":
		return "replaces the first process: the kernel would run that program instead of the agent (the initramfs's /init), which finds, checks and mounts the system image; leave it out"
	case key == "rdinit":
		return "replaces the initramfs's /init, the agent, which finds, checks and mounts the system image: the kernel would run that program instead; leave it out"
	case key == "initrd":
		return "is the boot loader's: the build names the initramfs on each medium itself, and the kernel's UEFI stub would try to load this file from the boot partition, where it is not; leave it out"
	case key == "BOOT_IMAGE":
		return "is set by the boot loader (the kernel image it started); leave it out"
	}
	return etoileArgProblem(arg)
}

// etoileArgProblem says what is wrong with an etoile.* argument in the
// spec's kernel command line, or "": the system image's location and
// checksum are the build's (per medium) or the netboot server's to give,
// and an unknown etoile.* argument would only be ignored at boot.
func etoileArgProblem(arg string) string {
	key, val, _ := strings.Cut(arg, "=")
	switch key {
	case "etoile.verity":
		return "is set by the build on the ISO and the raw disk (the dm-verity root hash and salt of the system image it makes, which the agent checks every read against): leave it out of the image spec"
	case "etoile.slot":
		return "is set for each medium by the build (etoile.slot=a on the raw disk's loader entry; none on the ISO): leave it out of the image spec"
	case "etoile.system", "etoile.system.sha256":
		return "is given by the netboot server with each boot (etoile.system= the system image's URL, etoile.system.sha256= its line in SHA256SUMS), not by the image: leave it out of the image spec"
	case "etoile.config":
		if p := cmdline.Parse(arg); p.Config == "" || !(strings.HasPrefix(val, "http://") || strings.HasPrefix(val, "https://")) {
			return "is not an http:// or https:// URL of a machine config"
		}
	case "etoile.debug", "etoile.poweroff":
	default:
		if strings.HasPrefix(key, "etoile.") {
			return "is not an argument the agent knows (etoile.config, etoile.debug, etoile.poweroff): it would be ignored at boot"
		}
	}
	return ""
}

// Validate checks every field and reports all problems at once.
func (s *ImageSpec) Validate() error {
	var errs schema.Errors
	if _, ok := arches[s.Arch]; !ok {
		errs.Add("arch", "%q is not supported yet: use amd64", s.Arch)
	}
	if s.Version != "" && !versionText.MatchString(s.Version) {
		errs.Add("version", "%q: use letters, digits and . + ~ _ - (no spaces)", s.Version)
	} else if len(s.Version) > maxVersion {
		errs.Add("version", "%q is %d characters long: at most %d (it is in the ready line, /etc/os-release and the SBOM)", s.Version, len(s.Version), maxVersion)
	}
	if s.Kernel.Package != "" && !debianPackageName.MatchString(s.Kernel.Package) {
		errs.Add("kernel.package", "%q is not a Debian package name (lower-case letters, digits and + . -, beginning with a letter or digit, at least 2 characters), e.g. linux-image-amd64", s.Kernel.Package)
	}
	if s.Kernel.Package != "" && s.Kernel.Dir != "" {
		errs.Add("kernel", "give either package (%q) or dir (%q), not both", s.Kernel.Package, s.Kernel.Dir)
	}
	if s.Kernel.Dir != "" {
		if st, err := os.Stat(s.resolve(s.Kernel.Dir)); err != nil || !st.IsDir() {
			errs.Add("kernel.dir", "%q is not a folder: it must hold vmlinuz and lib/modules/<version>", s.Kernel.Dir)
		}
	}
	cmdlineLen := 0
	for i, a := range s.Kernel.Cmdline {
		p := fmt.Sprintf("kernel.cmdline[%d]", i)
		cmdlineLen += len(a) + 1
		if msg := cmdlineArgProblem(a); msg != "" {
			errs.Add(p, "%q %s", a, msg)
		}
	}
	if cmdlineLen > maxSpecCmdline {
		errs.Add("kernel.cmdline", "is %d bytes long: at most %d, with Étoile's own arguments, fit the %d bytes the kernel reads from its boot loader", cmdlineLen, maxSpecCmdline, 2048)
	}
	if len(s.Modules) == 0 {
		errs.Add("modules", "empty: list the kernel modules the appliance needs (see the default spec: etoile build --print-default-spec)")
	}
	seen := map[string]bool{}
	for i, m := range s.Modules {
		p := fmt.Sprintf("modules[%d]", i)
		switch {
		case !moduleName.MatchString(m):
			errs.Add(p, "%q is not a module name (letters, digits, _ and -)", m)
		case seen[normModule(m)]:
			errs.Add(p, "%q is listed twice", m)
		}
		seen[normModule(m)] = true
	}
	switch s.Initramfs.Compression {
	case "zstd", "xz", "none":
	default:
		errs.Add("initramfs.compression", "%q: use zstd, xz or none", s.Initramfs.Compression)
	}
	for i, o := range s.Overlays {
		p := fmt.Sprintf("overlays[%d]", i)
		if strings.TrimSpace(o) == "" {
			errs.Add(p, "empty: give a folder (relative paths are taken from the spec file's folder; \".\" for that folder itself)")
			continue
		}
		if st, err := os.Stat(s.resolve(o)); err != nil || !st.IsDir() {
			errs.Add(p, "%q is not a folder (relative paths are taken from the spec file's folder)", o)
		}
	}
	errs = append(errs, s.validateK3s()...)
	names := map[string]bool{}
	for i, e := range s.Extensions {
		p := fmt.Sprintf("extensions[%d]", i)
		if !extensionName.MatchString(e.Name) {
			errs.Add(p+".name", "%q: give a name of lower-case letters, digits and -", e.Name)
		} else if names[e.Name] {
			errs.Add(p+".name", "%q is used twice", e.Name)
		}
		names[e.Name] = true
		switch {
		case (e.Dir == "") == (e.Squashfs == ""):
			errs.Add(p, "give exactly one of dir (a folder of files) or squashfs (a layer file)")
		case e.Dir != "":
			if st, err := os.Stat(s.resolve(e.Dir)); err != nil || !st.IsDir() {
				errs.Add(p+".dir", "%q is not a folder", e.Dir)
			}
		default:
			if st, err := os.Stat(s.resolve(e.Squashfs)); err != nil || !st.Mode().IsRegular() {
				errs.Add(p+".squashfs", "%q is not a file", e.Squashfs)
			} else if msg := squashfsProblem(s.resolve(e.Squashfs)); msg != "" {
				errs.Add(p+".squashfs", "%q %s", e.Squashfs, msg)
			}
		}
	}
	if s.Outputs != nil && len(s.Outputs) == 0 {
		errs.Add("outputs", "empty: list what to make (iso, raw, netboot), or leave outputs out for all three")
	}
	outs := map[string]bool{}
	for i, o := range s.Outputs {
		p := fmt.Sprintf("outputs[%d]", i)
		switch o {
		case OutputISO, OutputRaw, OutputNetboot:
		default:
			errs.Add(p, "%q: use iso, raw or netboot", o)
		}
		if outs[o] {
			errs.Add(p, "%q is listed twice", o)
		}
		outs[o] = true
	}
	return errs.Err()
}

func (s *ImageSpec) validateK3s() schema.Errors {
	var errs schema.Errors
	k := s.K3s
	if k.Version != "" && !k3sVersion.MatchString(k.Version) {
		errs.Add("k3s.version", "%q is not a K3s release version like v1.34.9+k3s1", k.Version)
	}
	only := func(field, value string, sources ...string) {
		if value != "" && !slices.Contains(sources, k.Source) && s.k3sDir == "" {
			errs.Add("k3s."+field, "is only used with source %s (source is %q)", strings.Join(sources, " or "), k.Source)
		}
	}
	switch k.Source {
	case K3sRelease, K3sOCI, K3sNone:
	case K3sDir:
		if s.k3sDir != "" {
			break // --k3s-dir / ETOILE_K3S_DIR gives the folder
		}
		if k.Dir == "" {
			errs.Add("k3s.dir", "missing: source dir needs the folder holding k3s, the airgap tarball and sha256sum-amd64.txt")
		} else if st, err := os.Stat(s.resolve(k.Dir)); err != nil || !st.IsDir() {
			errs.Add("k3s.dir", "%q is not a folder", k.Dir)
		}
	default:
		errs.Add("k3s.source", "%q: use release, oci, dir or none", k.Source)
	}
	only("dir", k.Dir, K3sDir)
	only("image", k.Image, K3sOCI)
	only("airgapTarball", k.AirgapTarball, K3sOCI)
	only("registries", k.Registries, K3sOCI)
	for _, f := range []struct{ field, path string }{{"airgapTarball", k.AirgapTarball}, {"registries", k.Registries}} {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(s.resolve(f.path)); err != nil || !st.Mode().IsRegular() {
			errs.Add("k3s."+f.field, "%q is not a file", f.path)
		} else if f.field == "airgapTarball" {
			if msg := imageArchiveProblem(s.resolve(f.path)); msg != "" {
				errs.Add("k3s."+f.field, "%q %s", f.path, msg)
			}
		}
	}
	if k.Image != "" {
		if _, err := name.ParseReference(k.Image); err != nil {
			errs.Add("k3s.image", "%q is not an image reference like docker.io/rancher/k3s:v1.34.9-k3s1 (%v)", k.Image, err)
		}
	}
	for i, a := range k.AirgapImages {
		if st, err := os.Stat(s.resolve(a)); err != nil || !st.Mode().IsRegular() {
			errs.Add(fmt.Sprintf("k3s.airgapImages[%d]", i), "%q is not a file", a)
		} else if msg := imageArchiveProblem(s.resolve(a)); msg != "" {
			errs.Add(fmt.Sprintf("k3s.airgapImages[%d]", i), "%q %s", a, msg)
		}
	}
	if k.Source == K3sNone && len(k.AirgapImages) > 0 && s.k3sDir == "" {
		errs.Add("k3s.airgapImages", "images need K3s to import them: pick a k3s.source other than none")
	}
	return errs
}

var k3sVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-(rc|alpha|beta)[0-9]+)?\+k3s[0-9]+$`)

// Resolve returns p as an absolute path, relative ones taken from the
// spec file's folder.
func (s *ImageSpec) Resolve(p string) string {
	if p == "" {
		return ""
	}
	return s.resolve(p)
}

// Wants reports whether the spec asks for output o.
func (s *ImageSpec) Wants(o string) bool { return slices.Contains(s.Outputs, o) }

// OverlayDirs returns the spec's overlay folders as absolute paths.
func (s *ImageSpec) OverlayDirs() []string {
	out := make([]string, len(s.Overlays))
	for i, o := range s.Overlays {
		out[i] = s.resolve(o)
	}
	return out
}

// KernelDir returns kernel.dir as an absolute path, or "".
func (s *ImageSpec) KernelDir() string {
	if s.Kernel.Dir == "" {
		return ""
	}
	return s.resolve(s.Kernel.Dir)
}

func (s *ImageSpec) resolve(p string) string {
	if filepath.IsAbs(p) || s.dir == "" {
		return p
	}
	return filepath.Join(s.dir, p)
}

func normModule(m string) string { return strings.ReplaceAll(m, "-", "_") }

// squashfsProblem says why the file at p is not a squashfs layer the build
// can read (go-diskfs reads squashfs 4.0, little-endian, compressed with
// gzip, lzma, lzo, xz, lz4 or zstd), or "".
func squashfsProblem(p string) string {
	head, err := readHead(p, squashfs.SuperblockLen)
	if err != nil {
		return "cannot be read: " + err.Error()
	}
	sb, err := squashfs.Parse(head)
	if err != nil {
		return "is not a squashfs layer (no squashfs superblock): make one with mksquashfs DIR LAYER.sqfs"
	}
	if sb.Major != 4 {
		return fmt.Sprintf("is squashfs version %d: only version 4 (what mksquashfs writes) is read", sb.Major)
	}
	switch c := sb.Compression; c {
	case squashfs.Gzip, squashfs.LZMA, squashfs.LZO, squashfs.XZ, squashfs.LZ4, squashfs.Zstd:
	default:
		return fmt.Sprintf("uses squashfs compression %d, which the build cannot read: make it with mksquashfs -comp gzip, xz, lz4 or zstd", c)
	}
	return ""
}

// archiveKinds are the image archive names K3s (and the build, through
// rancher/wharfie) read, with the bytes the file must begin with (at off).
var archiveKinds = []struct {
	suffixes []string
	what     string
	off      int
	magic    string
}{
	{[]string{".tar"}, "a tar archive", 257, "ustar"},
	{[]string{".tar.gz", ".tgz"}, "a gzip-compressed tar archive", 0, "\x1f\x8b"},
	{[]string{".tar.zst", ".tzst"}, "a zstd-compressed tar archive", 0, "\x28\xb5\x2f\xfd"},
	{[]string{".tar.bz2", ".tbz"}, "a bzip2-compressed tar archive", 0, "BZh"},
	{[]string{".tar.lz4"}, "an lz4-compressed tar archive", 0, "\x04\x22\x4d\x18"},
}

// imageArchiveProblem says why the file at p is not an image archive K3s
// imports (by its name's ending and its first bytes), or "".
func imageArchiveProblem(p string) string {
	lower := strings.ToLower(p)
	var names []string
	for _, k := range archiveKinds {
		names = append(names, k.suffixes...)
		for _, suf := range k.suffixes {
			if !strings.HasSuffix(lower, suf) {
				continue
			}
			head, err := readHead(p, k.off+len(k.magic))
			if err != nil {
				return "cannot be read: " + err.Error()
			}
			if len(head) < k.off+len(k.magic) || string(head[k.off:k.off+len(k.magic)]) != k.magic {
				return fmt.Sprintf("is not %s, as its name says: give an image archive as docker save writes it (docker save -o app.tar IMAGE; compress it with zstd, gzip, bzip2 or lz4 and name it so)", k.what)
			}
			return ""
		}
	}
	return fmt.Sprintf("is not named as an image archive K3s imports (%s): give one as docker save writes it (docker save -o app.tar IMAGE)", strings.Join(names, " "))
}

// readHead reads at most n bytes from the start of the file p.
func readHead(p string, n int) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	m, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return buf[:m], nil
}
