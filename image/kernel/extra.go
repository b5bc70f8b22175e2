package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Extras is what MergeExtras found and added.
type Extras struct {
	// Modules are the names of the modules found in the folder (an
	// extension's out-of-tree drivers: NVIDIA's, a vendor's NIC driver), sorted.
	Modules []string
	// FromKernel are the kernel's own modules copied in because an extra
	// needs them and the initramfs does not hold them, sorted.
	FromKernel []string
	// Overrides are the initramfs's modules that an extra of the same name
	// replaces once the system image is mounted (until then, the
	// initramfs's copy is what loads), sorted.
	Overrides []string
	// Replaced are the index files the folder held and MergeExtras wrote
	// over or removed (a depmod run by whoever built the extension knew
	// only its own modules), sorted.
	Replaced []string
}

// ExtraModuleError is a module in an extension that cannot be used with
// the image's kernel.
type ExtraModuleError struct {
	Path   string // relative to the modules folder
	Reason string
	Fix    string
}

func (e *ExtraModuleError) Error() string {
	return fmt.Sprintf("module %s: %s: %s", e.Path, e.Reason, e.Fix)
}

// indexFilePrefix starts the name of every depmod output file.
const indexFilePrefix = "modules."

// MergeExtras makes dir — the system image's lib/modules/<version>, where
// its extensions put their modules — a complete modules folder once laid
// over the initramfs's (the agent mounts the two as one): it checks that
// every module in dir was built for k (vermagic), copies in the kernel's
// own modules the extras depend on that the initramfs does not hold, and
// writes modules.dep, modules.alias, modules.softdep, modules.builtin (and
// modules.builtin.alias, when the kernel has it) for the union, the initramfs's modules named at RelPath+suffix as the
// initramfs stores them. Index files already in dir (from a depmod run
// that knew only the extension) are replaced; other depmod outputs
// (modules.*.bin) are removed so that no tool reads a stale one.
//
// wanted maps the names of modules to load on every boot (the system
// image's modules-load.d) to the file naming them: each must be in the
// initramfs, an extra or built in, or it is copied in from the kernel too.
// dir need not exist; it is made when something goes there.
func (k *Kernel) MergeExtras(dir string, initramfs []Module, suffix string, wanted map[string]string) (*Extras, error) {
	if k.idx == nil {
		return nil, fmt.Errorf("kernel %s has no module index: resolve it with kernel.Resolve", k.Version)
	}
	var paths, indexFiles []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
		case !path.IsAbs(rel) && !strings.Contains(rel, "/") && strings.HasPrefix(rel, indexFilePrefix):
			indexFiles = append(indexFiles, rel)
		case isModuleFile(d.Name()):
			if !d.Type().IsRegular() {
				return &ExtraModuleError{Path: rel, Reason: "is not a regular file (" + d.Type().String() + ")",
					Fix: "put the module file itself in the extension"}
			}
			paths = append(paths, rel)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing the modules in %s: %w", dir, err)
	}
	sort.Strings(paths)
	out := &Extras{}

	// Every module, by name, at its path in the merged folder, with the
	// names it needs: the initramfs's first, the extras over them.
	type mod struct {
		entry  *modEntry
		direct []string // names; for the kernel's own modules, every dependency in modules.dep order
		kernel bool
	}
	all := map[string]*mod{}
	addKernel := func(m Module, at string) {
		e := &modEntry{Name: m.Name, RelPath: at, Aliases: slices.Clone(m.Aliases), SoftDeps: slices.Clone(m.SoftDeps)}
		var direct []string
		for _, d := range m.Deps {
			direct = append(direct, nameFromPath(d))
		}
		all[m.Name] = &mod{entry: e, direct: direct, kernel: true}
	}
	for _, m := range initramfs {
		addKernel(m, m.RelPath+suffix)
	}
	extras := map[string]string{} // name → path
	var needs []string
	for _, rel := range paths {
		mi, err := readModinfo(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, &ExtraModuleError{Path: rel, Reason: err.Error(), Fix: "the extension must hold kernel modules (.ko, .ko.xz, .ko.zst or .ko.gz) built for " + k.Version}
		}
		built := strings.Fields(mi.Vermagic)
		if len(built) == 0 || built[0] != k.Version {
			for_ := "no vermagic"
			if len(built) > 0 {
				for_ = "built for kernel " + built[0]
			}
			return nil, &ExtraModuleError{Path: rel, Reason: for_ + ", but the image's kernel is " + k.Version,
				Fix: "rebuild the module against linux-headers-" + k.Version + " (or pin the image's kernel to the one the module was built for)"}
		}
		name := nameFromPath(rel)
		if prev, ok := extras[name]; ok {
			return nil, &ExtraModuleError{Path: rel, Reason: "has the same module name as " + prev,
				Fix: "keep one of the two in the extensions"}
		}
		extras[name] = rel
		if _, ok := all[name]; ok {
			out.Overrides = append(out.Overrides, name)
		}
		all[name] = &mod{entry: &modEntry{Name: name, RelPath: rel, Aliases: mi.Aliases, SoftDeps: mi.SoftDeps}, direct: mi.Depends}
		out.Modules = append(out.Modules, name)
		needs = append(needs, mi.Depends...)
	}

	// What the extras and modules-load.d need from the kernel: the module,
	// its dependencies and its soft "pre:" dependencies, as Select
	// resolves them.
	for _, n := range slices.Sorted(maps.Keys(wanted)) {
		if all[normName(n)] == nil && k.idx.mods[normName(n)] == nil && !k.idx.builtin[normName(n)] {
			// An alias (rtnl-link-vlan, fs-vfat): the modules that have it.
			if byAlias := k.idx.lookup(n); len(byAlias) > 0 {
				for _, m := range byAlias {
					needs = append(needs, m.Name)
				}
				continue
			}
		}
		needs = append(needs, n)
	}
	var fromKernel []string
	for _, n := range needs {
		n = normName(n)
		switch {
		case all[n] != nil, k.idx.builtin[n], slices.Contains(fromKernel, n):
		case k.idx.mods[n] != nil:
			fromKernel = append(fromKernel, n)
		case wanted[n] != "":
			return nil, &ExtraModuleError{Path: wanted[n], Reason: "names module " + n + ", which is neither in the extensions nor in kernel " + k.Version,
				Fix: "remove it, or add the module to an extension"}
		default:
			var who []string
			for name, m := range all {
				if _, extra := extras[name]; extra && slices.Contains(normAll(m.direct), n) {
					who = append(who, extras[name])
				}
			}
			sort.Strings(who)
			return nil, &ExtraModuleError{Path: strings.Join(who, ", "), Reason: "needs module " + n + ", which is neither in the extensions nor in kernel " + k.Version,
				Fix: "add " + n + " to the extension"}
		}
	}
	if len(fromKernel) > 0 {
		mods, err := k.Select(fromKernel)
		if err != nil {
			return nil, err
		}
		for _, m := range mods {
			if all[m.Name] != nil {
				continue // in the initramfs, or an extra replaces it
			}
			at := m.RelPath
			if m.Compression != "" {
				at += "." + m.Compression
			}
			if err := copyModule(dir, m, filepath.FromSlash(at)); err != nil {
				return nil, err
			}
			addKernel(m, at)
			out.FromKernel = append(out.FromKernel, m.Name)
		}
	}

	if len(paths) == 0 && len(out.FromKernel) == 0 && len(indexFiles) == 0 {
		return out, nil // the initramfs's modules are all there is
	}

	// The index of the union.
	byName := map[string]*modEntry{}
	direct := map[string][]string{}
	for name, m := range all {
		byName[name] = m.entry
		for _, d := range m.direct {
			if d = normName(d); all[d] != nil { // built-in ones need nothing
				direct[name] = append(direct[name], d)
			}
		}
	}
	var entries []*modEntry
	for name, m := range all {
		if m.kernel {
			// The kernel's order, each at its path in the union.
			m.entry.Deps = nil
			for _, d := range direct[name] {
				m.entry.Deps = append(m.entry.Deps, byName[d].RelPath)
			}
		} else {
			deps, err := dependencyOrder(name, direct, byName)
			if err != nil {
				return nil, err
			}
			m.entry.Deps = deps
		}
		entries = append(entries, m.entry)
	}
	for _, f := range indexFiles {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	out.Replaced = indexFiles
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := depmodFiles(entries, func(p string) string { return p })
	var builtin strings.Builder
	for _, l := range k.idx.builtinLines {
		builtin.WriteString(l + "\n")
	}
	files["modules.builtin"] = []byte(builtin.String())
	if k.idx.builtinAlias != nil {
		files["modules.builtin.alias"] = k.idx.builtinAlias
	}
	bins, err := BinaryIndexes(files)
	if err != nil {
		return nil, err
	}
	maps.Copy(files, bins)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	for name, data := range files {
		// Through os.Root: an extension's symlink here goes nowhere
		// outside the modules folder.
		_ = root.Remove(name)
		if err := root.WriteFile(name, data, 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	sort.Strings(out.FromKernel)
	sort.Strings(out.Overrides)
	return out, nil
}

func normAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = normName(n)
	}
	return out
}

// copyModule copies a kernel module file as it is (compressed or not).
// copyModule copies the kernel's module src to rel under dir, through
// os.Root: a symlink an extension put in the modules folder cannot send it
// outside (onto the build machine).
func copyModule(dir string, m Module, rel string) error {
	data, err := m.raw()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return fmt.Errorf("%s: %w", filepath.Dir(rel), err)
	}
	_ = root.Remove(rel)
	return root.WriteFile(rel, data, 0o644)
}
