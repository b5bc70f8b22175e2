// Package image turns an ImageSpec into Étoile's boot media: kernel and
// modules, initramfs, system image, ISO, raw disk, netboot set, checksums
// and SBOM.
package image

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/etoile-os/etoile/schema"
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
	Outputs    []string      `yaml:"outputs"`

	// dir is the folder the spec was read from; relative overlay paths
	// are taken from there.
	dir string
}

// KernelSpec says where the kernel and its modules come from.
type KernelSpec struct {
	Package string   `yaml:"package"`
	Dir     string   `yaml:"dir"`
	Cmdline []string `yaml:"cmdline"`
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
	KernelPackage string // default kernel package
	EFIBootName   string // removable-media loader name on the ESP
	SystemdBoot   string // file in systemd-boot-efi
	BIOS          bool   // has an ISOLINUX (BIOS) boot path
	Serial        string // first serial console name
}

var arches = map[string]Arch{
	"amd64": {Name: "amd64", KernelPackage: "linux-image-amd64", EFIBootName: "BOOTX64.EFI",
		SystemdBoot: "systemd-bootx64.efi", BIOS: true, Serial: "ttyS0"},
}

// ArchInfo returns what the build needs to know about arch.
func ArchInfo(arch string) (Arch, bool) {
	a, ok := arches[arch]
	return a, ok
}

var (
	moduleName  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	versionText = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~_-]*$`)
)

// ParseSpec decodes and validates a spec. dir is where relative paths
// (overlays, kernel.dir) are taken from.
func ParseSpec(data []byte, dir string) (*ImageSpec, error) {
	var s ImageSpec
	if err := schema.Decode(data, KindImageSpec, &s); err != nil {
		return nil, err
	}
	s.dir = dir
	s.applyDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadSpec reads a spec file; an empty path gives the embedded default.
func LoadSpec(path string) (*ImageSpec, error) {
	if path == "" {
		return ParseSpec(defaultSpec, ".")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading image spec: %w", err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("reading image spec %s: %w", path, err)
	}
	s, err := ParseSpec(data, abs)
	if err != nil {
		return nil, fmt.Errorf("image spec %s:\n%w", path, err)
	}
	return s, nil
}

func (s *ImageSpec) applyDefaults() {
	if s.Arch == "" {
		s.Arch = "amd64"
	}
	if s.Kernel.Package == "" && s.Kernel.Dir == "" {
		if a, ok := arches[s.Arch]; ok {
			s.Kernel.Package = a.KernelPackage
		}
	}
	if s.Initramfs.Compression == "" {
		s.Initramfs.Compression = "zstd"
	}
	if len(s.Outputs) == 0 {
		s.Outputs = []string{OutputISO, OutputRaw, OutputNetboot}
	}
}

// Validate checks every field and reports all problems at once.
func (s *ImageSpec) Validate() error {
	var errs schema.Errors
	if _, ok := arches[s.Arch]; !ok {
		errs.Add("arch", "%q is not supported yet: use amd64", s.Arch)
	}
	if s.Version != "" && !versionText.MatchString(s.Version) {
		errs.Add("version", "%q: use letters, digits and . + ~ _ - (no spaces)", s.Version)
	}
	if s.Kernel.Package != "" && s.Kernel.Dir != "" {
		errs.Add("kernel", "give either package (%q) or dir (%q), not both", s.Kernel.Package, s.Kernel.Dir)
	}
	if s.Kernel.Dir != "" {
		if st, err := os.Stat(s.resolve(s.Kernel.Dir)); err != nil || !st.IsDir() {
			errs.Add("kernel.dir", "%q is not a folder: it must hold vmlinuz and lib/modules/<version>", s.Kernel.Dir)
		}
	}
	for i, a := range s.Kernel.Cmdline {
		if a == "" || strings.ContainsAny(a, " \t\r\n\"") {
			errs.Add(fmt.Sprintf("kernel.cmdline[%d]", i), "%q: each entry is one argument, without spaces or quotes", a)
		}
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
		if st, err := os.Stat(s.resolve(o)); err != nil || !st.IsDir() {
			errs.Add(p, "%q is not a folder (relative paths are taken from the spec file's folder)", o)
		}
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
