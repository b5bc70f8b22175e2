package kernel

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/etoile-os/etoile/image/debian"
)

// Module is one loadable module chosen for the image.
type Module struct {
	Name        string // normalised (underscores), e.g. "usb_storage"
	RelPath     string // path under lib/modules/<ver>, WITHOUT .xz/.zst suffix
	Source      string // absolute path of the file on disk (possibly compressed)
	Compression string // "", "xz", "zst" (or "gz")
	// Deps are the RelPaths of every module this one needs, in modules.dep
	// order (load from the end of the list first).
	Deps []string
	// Aliases are the modalias patterns the module handles (modules.alias).
	Aliases []string
	// SoftDeps are modules.softdep values, e.g. "pre: crc32c".
	SoftDeps []string

	meta *kernelMeta
}

// deviceBuses are the modalias prefixes of devices the agent finds on a
// bus and loads drivers for (kmod.Coldplug).
var deviceBuses = []string{"pci:", "usb:", "virtio:", "scsi:", "acpi", "of:", "platform:", "hid:", "mdio:", "serio:",
	"pcmcia:", "ieee1394:", "cpu:", "x86cpu:", "dmi:", "i2c:", "spi:", "auxiliary:", "vmbus:", "xen", "mei:", "pnp:", "input:"}

// DeviceDriver reports whether the module drives hardware the agent finds
// by modalias (a NIC, a disk controller, a CPU feature), rather than being
// needed whatever the hardware (a filesystem, netfilter, wireguard).
func (m Module) DeviceDriver() bool {
	for _, a := range m.Aliases {
		for _, b := range deviceBuses {
			if strings.HasPrefix(a, b) {
				return true
			}
		}
	}
	return false
}

// OnDemand are the modules loaded only when something asks for what they
// do, never on every boot: bonding, which makes an unwanted bond0 when
// loaded without max_bonds=0 (the agent loads it with it when the machine
// config has a bond), and K3sOnDemand, which the kernel asks for when K3s
// uses them.
var OnDemand = append([]string{"bonding"}, normNames(K3sOnDemand)...)

func normNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = normName(n)
	}
	return out
}

// Always lists the names among names whose module is not a device driver
// nor OnDemand: the modules an image loads on every boot (its
// /etc/etoile/modules). Names not in mods are kept (the agent warns about
// them).
func Always(names []string, mods []Module) []string {
	byName := map[string]Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	var out []string
	for _, n := range names {
		if m, ok := byName[normName(n)]; (ok && m.DeviceDriver()) || slices.Contains(OnDemand, normName(n)) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// kernelMeta is what every module of one kernel shares, for the initramfs's
// modules.builtin.
type kernelMeta struct {
	builtin      []string
	builtinAlias []byte            // modules.builtin.alias, nil when the kernel has none
	sums         map[string]string // SHA-256 by absolute path (cache entries)
	entry        string            // the cache entry's folder
}

// sum is the SHA-256 the cache's file list gives path ("" when none).
func (m *kernelMeta) sum(path string) string {
	if m == nil {
		return ""
	}
	return m.sums[path]
}

// raw returns the module's file as it is (compressed or not); one from the
// kernel cache is checked against the file list made when its verified
// package was unpacked.
func (m Module) raw() ([]byte, error) {
	data, err := os.ReadFile(m.Source)
	if err != nil {
		return nil, fmt.Errorf("opening module %s: %w", m.Name, err)
	}
	if want := m.meta.sum(m.Source); want != "" {
		if got := fmt.Sprintf("%x", sha256.Sum256(data)); got != want {
			// The next build unpacks the entry again from the package.
			_ = os.Remove(filepath.Join(m.meta.entry, manifestName))
			return nil, fmt.Errorf("the kernel cache is damaged: %s has SHA-256 %s, not the %s it was unpacked with; the entry %s will be unpacked again from its package: run the build again", m.Source, got, want, m.meta.entry)
		}
	}
	return data, nil
}

// Open yields the decompressed module.
func (m Module) Open() (io.ReadCloser, error) {
	if want := m.meta.sum(m.Source); want != "" {
		data, err := m.raw()
		if err != nil {
			return nil, err
		}
		r, closeFn, err := decompress(bytes.NewReader(data), m.Compression)
		if err != nil {
			return nil, fmt.Errorf("module %s (%s): %w", m.Name, m.Source, err)
		}
		return &moduleReader{Reader: r, closeFns: []func() error{func() error { closeFn(); return nil }}}, nil
	}
	f, err := os.Open(m.Source)
	if err != nil {
		return nil, fmt.Errorf("opening module %s: %w", m.Name, err)
	}
	r, closeFn, err := decompress(f, m.Compression)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("module %s (%s): %w", m.Name, m.Source, err)
	}
	return &moduleReader{Reader: r, closeFns: []func() error{func() error { closeFn(); return nil }, f.Close}}, nil
}

type moduleReader struct {
	io.Reader
	closeFns []func() error
}

func (r *moduleReader) Close() error {
	var first error
	for _, c := range r.closeFns {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// InconsistentError is a modules folder whose modules.dep names files it
// does not hold: the folder's fault, not the spec's.
type InconsistentError struct{ Msg string }

func (e *InconsistentError) Error() string { return e.Msg }

// MissingModulesError lists every requested module the kernel lacks.
type MissingModulesError struct {
	KernelVersion string
	ModulesDir    string
	Names         []string // as requested
}

func (e *MissingModulesError) Error() string {
	return fmt.Sprintf("kernel %s has no module named %s (neither in %s/modules.dep nor built in): correct the image spec's module list or use a kernel that provides them",
		e.KernelVersion, strings.Join(e.Names, ", "), e.ModulesDir)
}

// Select returns the modules named (with '-' and '_' alike) and everything
// they need: modules.dep dependencies and "pre:" soft dependencies that the
// kernel has, transitively. Built-in modules count as present and yield no
// entry. Every missing name is reported in one *MissingModulesError.
//
// From the kernel cache, each chosen module is checked against the file
// list made when its verified package was unpacked: a module whose bytes
// changed with its size and time kept (which the entry's quick check does
// not see) makes the entry unpacked again, and the selection made again,
// in the same build.
func (k *Kernel) Select(names []string) ([]Module, error) {
	mods, err := k.selectOnce(names)
	if err != nil {
		return nil, err
	}
	bad := damagedModule(mods)
	if bad == "" || k.repair == nil {
		return mods, nil // a folder source has no file list: nothing to compare
	}
	if k.log != nil {
		k.log.Warn("kernel cache entry is damaged; unpacking it again from its package", "entry", k.entry, "err", bad)
	}
	fresh, err := k.repair()
	if err != nil {
		return nil, err
	}
	fresh.Packages = k.Packages
	*k = *fresh
	if mods, err = k.selectOnce(names); err != nil {
		return nil, err
	}
	if bad := damagedModule(mods); bad != "" {
		return nil, fmt.Errorf("the kernel cache entry %s is damaged again right after it was unpacked from its verified package (%s): check the disk holding it (dmesg, fsck) and its free space", k.entry, bad)
	}
	return mods, nil
}

// damagedModule names the first module of mods whose file does not have
// the SHA-256 the cache's file list gives it, or "".
func damagedModule(mods []Module) string {
	for _, m := range mods {
		want := m.meta.sum(m.Source)
		if want == "" {
			continue
		}
		got, err := debian.FileSHA256(m.Source)
		if err != nil {
			return err.Error()
		}
		if got != want {
			return fmt.Sprintf("%s has SHA-256 %s, not the %s it was unpacked with", m.Source, got, want)
		}
	}
	return ""
}

func (k *Kernel) selectOnce(names []string) ([]Module, error) {
	if k.idx == nil {
		return nil, fmt.Errorf("kernel %s has no module index: resolve it with kernel.Resolve", k.Version)
	}
	ix := k.idx
	chosen := map[string]*modEntry{}
	var missing, builtin []string
	var problems []string
	var add func(m *modEntry)
	add = func(m *modEntry) {
		if chosen[m.Name] != nil {
			return
		}
		chosen[m.Name] = m
		for _, d := range m.Deps {
			dm := ix.byPath[d]
			if dm == nil {
				problems = append(problems, fmt.Sprintf("modules.dep lists %s as a dependency of %s, but has no entry for it", d, m.RelPath))
				continue
			}
			add(dm)
		}
		for _, target := range preSoftDeps(softDepsOf(m)) {
			for _, sm := range ix.lookup(target) {
				add(sm)
			}
		}
	}
	for _, n := range names {
		nn := normName(strings.TrimSpace(n))
		switch {
		case ix.mods[nn] != nil:
			add(ix.mods[nn])
		case ix.builtin[nn]:
			builtin = append(builtin, nn)
		default:
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, &MissingModulesError{KernelVersion: k.Version, ModulesDir: k.ModulesDir, Names: missing}
	}
	meta := &kernelMeta{builtin: ix.builtinLines, builtinAlias: ix.builtinAlias, sums: k.sums, entry: k.entry}
	var out []Module
	for _, m := range chosen {
		src := filepath.Join(k.ModulesDir, filepath.FromSlash(m.RelPath))
		if st, err := os.Stat(src); err != nil || !st.Mode().IsRegular() {
			problems = append(problems, fmt.Sprintf("module %s is listed in modules.dep but %s is missing", m.Name, src))
			continue
		}
		rel, comp := compressionOf(m.RelPath)
		mod := Module{Name: m.Name, RelPath: rel, Source: src, Compression: comp, Aliases: slices.Clone(m.Aliases), SoftDeps: softDepsOf(m), meta: meta}
		for _, d := range m.Deps {
			dr, _ := compressionOf(d)
			mod.Deps = append(mod.Deps, dr)
		}
		out = append(out, mod)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		fix := "run depmod " + k.Version + " there, or give the folder the module files its modules.dep lists"
		if k.entry != "" {
			fix = "delete the cache entry " + k.entry + " (the next build unpacks it again from its package)"
		}
		return nil, &InconsistentError{Msg: fmt.Sprintf("kernel %s modules folder %s is inconsistent: %s; %s", k.Version, k.ModulesDir, strings.Join(problems, "; "), fix)}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if k.log != nil && len(builtin) > 0 {
		k.log.Debug("modules built into the kernel", "kernel", k.Version, "modules", builtin)
	}
	return out, nil
}

// InitRequests are soft dependencies a module has without declaring them:
// the crypto algorithm its init asks the crypto API for. Without the module
// that provides it, the kernel runs modprobe for "crypto-<algorithm>" in the
// middle of the load (a fork and exec of the agent, about 0.4 s under
// emulation, on the way to a disk) and then falls back to a slower
// implementation. Linux 6.1's crc64-rocksoft (sd_mod needs it through
// t10-pi) declares "pre: crc64", the library, not the algorithm it asks for.
var InitRequests = map[string]string{"crc64_rocksoft": "pre: crypto-crc64-rocksoft"}

// softDepsOf is a module's modules.softdep values and its InitRequests entry
// (unless modules.softdep already has it).
func softDepsOf(m *modEntry) []string {
	out := slices.Clone(m.SoftDeps)
	if extra, ok := InitRequests[m.Name]; ok && !slices.Contains(out, extra) {
		out = append(out, extra)
	}
	return out
}

// preSoftDeps returns the "pre:" targets of modules.softdep values.
func preSoftDeps(values []string) []string {
	var out []string
	for _, v := range values {
		pre := false
		for _, tok := range strings.Fields(v) {
			switch tok {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					out = append(out, tok)
				}
			}
		}
	}
	return out
}

// lookup finds the modules a soft dependency names: a module name, else
// every module with a matching alias (e.g. "crypto-crc32c"). Built-in or
// unknown targets yield nothing, as they do for modprobe.
func (ix *index) lookup(target string) []*modEntry {
	if m := ix.mods[normName(target)]; m != nil {
		return []*modEntry{m}
	}
	if ix.builtin[normName(target)] {
		return nil
	}
	var out []*modEntry
	for _, m := range ix.mods {
		for _, a := range m.Aliases {
			if ok, _ := path.Match(a, target); ok {
				out = append(out, m)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// IndexFiles renders the depmod files for an initramfs holding exactly
// mods (at their RelPath plus suffix: "" decompressed, ".zst" as the
// initramfs writes them): modules.dep, modules.alias,
// modules.softdep, modules.builtin and, when the kernel has it,
// modules.builtin.alias, and kmod's binary indexes of them
// (BinaryIndexes), keyed by file name. Dependencies
// outside mods are left out so the files only name what is there.
func IndexFiles(mods []Module, suffix string) (map[string][]byte, error) {
	have := map[string]bool{}
	for _, m := range mods {
		have[m.RelPath] = true
	}
	var entries []*modEntry
	var builtin []string
	var builtinAlias []byte
	for _, m := range mods {
		e := &modEntry{Name: m.Name, RelPath: m.RelPath, Aliases: m.Aliases, SoftDeps: m.SoftDeps}
		for _, d := range m.Deps {
			if have[d] {
				e.Deps = append(e.Deps, d)
			}
		}
		entries = append(entries, e)
		if m.meta != nil && builtin == nil {
			builtin = m.meta.builtin
		}
		if m.meta != nil && builtinAlias == nil {
			builtinAlias = m.meta.builtinAlias
		}
	}
	files := depmodFiles(entries, func(p string) string { return p + suffix })
	var b bytes.Buffer
	for _, l := range builtin {
		b.WriteString(l + "\n")
	}
	files["modules.builtin"] = b.Bytes()
	if builtinAlias != nil {
		files["modules.builtin.alias"] = builtinAlias
	}
	bins, err := BinaryIndexes(files)
	if err != nil {
		return nil, err
	}
	maps.Copy(files, bins)
	return files, nil
}
