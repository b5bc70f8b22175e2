package kernel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// normName folds '-' into '_', as the kernel and kmod do for module names.
func normName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// nameFromPath derives a module name from its file path ("kernel/fs/nls/nls_iso8859-1.ko.xz" -> "nls_iso8859_1").
func nameFromPath(p string) string {
	base, _ := compressionOf(path.Base(p))
	return normName(strings.TrimSuffix(base, ".ko"))
}

// modEntry is one loadable module of the kernel.
type modEntry struct {
	Name     string   // normalised name
	RelPath  string   // path under lib/modules/<ver>, as on disk (with .xz/.zst suffix)
	Deps     []string // on-disk RelPaths of every dependency, modules.dep order
	Aliases  []string
	SoftDeps []string // modules.softdep values ("pre: a b post: c")
}

// index is the depmod view of one kernel's modules folder.
type index struct {
	mods    map[string]*modEntry // by normalised name
	byPath  map[string]*modEntry
	builtin map[string]bool // normalised names of modules built into vmlinuz
	// builtinLines is modules.builtin as shipped, kept for the initramfs.
	builtinLines []string
	// builtinAlias is modules.builtin.alias for the initramfs: the kernel's
	// own, else made from modules.builtin.modinfo (builtinAliases); nil
	// when the kernel has neither.
	builtinAlias []byte
}

func newIndex() *index {
	return &index{mods: map[string]*modEntry{}, byPath: map[string]*modEntry{}, builtin: map[string]bool{}}
}

func (ix *index) add(m *modEntry) {
	ix.mods[m.Name] = m
	ix.byPath[m.RelPath] = m
}

// maxIndexFile bounds the depmod text files we read (real ones are < 2 MiB).
const maxIndexFile = 64 << 20

func readIndexFile(dir, name string) ([]byte, error) {
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxIndexFile {
		return nil, fmt.Errorf("%s is %d bytes, larger than any real %s", p, st.Size(), name)
	}
	return os.ReadFile(p)
}

// parseModulesDep parses modules.dep: "path: dep dep ...". Paths are
// relative to the modules folder (old depmods wrote absolute paths, which
// are cut down to that form).
func parseModulesDep(data []byte) ([]*modEntry, error) {
	var out []*modEntry
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: %q has no ':'", n, line)
		}
		rel, err := cleanModPath(mod)
		if err != nil {
			return nil, fmt.Errorf("modules.dep line %d: %w", n, err)
		}
		if seen[rel] {
			return nil, fmt.Errorf("modules.dep line %d: %s is listed twice", n, rel)
		}
		seen[rel] = true
		e := &modEntry{Name: nameFromPath(rel), RelPath: rel}
		for _, d := range strings.Fields(deps) {
			dr, err := cleanModPath(d)
			if err != nil {
				return nil, fmt.Errorf("modules.dep line %d (%s): %w", n, rel, err)
			}
			e.Deps = append(e.Deps, dr)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	return out, nil
}

// cleanModPath accepts a module path from a depmod file and returns it
// relative to the modules folder, refusing anything that climbs out of it.
func cleanModPath(p string) (string, error) {
	if i := strings.Index(p, "/lib/modules/"); path.IsAbs(p) && i >= 0 {
		// "/lib/modules/<ver>/kernel/x.ko" -> "kernel/x.ko"
		rest := p[i+len("/lib/modules/"):]
		if _, after, ok := strings.Cut(rest, "/"); ok {
			p = after
		}
	}
	c := path.Clean(p)
	if p == "" || path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") || !isModuleFile(c) {
		return "", fmt.Errorf("%q is not a module path inside the modules folder", p)
	}
	return c, nil
}

// parseAliases parses modules.alias lines "alias PATTERN MODULE".
func parseAliases(data []byte) ([][2]string, error) {
	var out [][2]string
	for n, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("modules.alias line %d: %q is not \"alias PATTERN MODULE\"", n+1, line)
		}
		out = append(out, [2]string{f[1], f[2]})
	}
	return out, nil
}

// parseSoftdeps parses modules.softdep lines "softdep MODULE pre: a post: b".
func parseSoftdeps(data []byte) ([][2]string, error) {
	var out [][2]string
	for n, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 3 || f[0] != "softdep" {
			return nil, fmt.Errorf("modules.softdep line %d: %q is not \"softdep MODULE pre: ... post: ...\"", n+1, line)
		}
		out = append(out, [2]string{f[1], strings.Join(f[2:], " ")})
	}
	return out, nil
}

// parseBuiltin parses modules.builtin: one module path per line.
func parseBuiltin(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
			out = append(out, line)
		}
	}
	return out
}

// builtinAliasFile returns modDir's modules.builtin.alias, which the
// agent reads so that a modprobe of an alias of a module built into the
// kernel (fs-ext4, crypto-crc32c: request_module's) counts as satisfied:
// the kernel's own when it ships one, else made from
// modules.builtin.modinfo (Debian's kernels ship only that: depmod indexes
// it into modules.builtin.alias.bin), else nil.
func builtinAliasFile(modDir string) ([]byte, error) {
	data, err := readIndexFile(modDir, "modules.builtin.alias")
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading modules.builtin.alias: %w", err)
	}
	data, err = readIndexFile(modDir, "modules.builtin.modinfo")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading modules.builtin.modinfo: %w", err)
	}
	return builtinAliases(data), nil
}

// builtinAliases renders modules.builtin.modinfo (NUL-separated
// "module.key=value" strings) as modules.builtin.alias: a line "alias VALUE
// module" for each module.alias=VALUE, in the file's order (depmod's), each
// line once. A value with white space, which no line of the format can
// hold, is left out.
func builtinAliases(modinfo []byte) []byte {
	var b bytes.Buffer
	seen := map[string]bool{}
	for _, kv := range bytes.Split(modinfo, []byte{0}) {
		key, value, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		mod, field, ok := strings.Cut(key, ".")
		if !ok || field != "alias" || mod == "" || value == "" || strings.ContainsFunc(mod+value, unicode.IsSpace) {
			continue
		}
		line := "alias " + value + " " + mod + "\n"
		if !seen[line] {
			seen[line] = true
			b.WriteString(line)
		}
	}
	return b.Bytes()
}

// loadIndex reads the depmod files of modDir; when modules.dep is absent (a
// Debian package before its postinst ran depmod) it scans the modules'
// .modinfo sections instead.
func loadIndex(modDir string) (*index, error) {
	ix := newIndex()
	if data, err := readIndexFile(modDir, "modules.builtin"); err == nil {
		ix.builtinLines = parseBuiltin(data)
		for _, l := range ix.builtinLines {
			ix.builtin[nameFromPath(l)] = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading modules.builtin: %w", err)
	}
	builtinAlias, err := builtinAliasFile(modDir)
	if err != nil {
		return nil, err
	}
	ix.builtinAlias = builtinAlias

	depData, err := readIndexFile(modDir, "modules.dep")
	if errors.Is(err, fs.ErrNotExist) {
		gen, err := scanModules(modDir)
		if err != nil {
			return nil, err
		}
		for _, m := range gen {
			ix.add(m)
		}
		return ix, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	entries, err := parseModulesDep(depData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(modDir, "modules.dep"), err)
	}
	for _, e := range entries {
		ix.add(e)
	}
	if data, err := readIndexFile(modDir, "modules.alias"); err == nil {
		aliases, err := parseAliases(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(modDir, "modules.alias"), err)
		}
		for _, a := range aliases {
			if m := ix.mods[normName(a[1])]; m != nil {
				m.Aliases = append(m.Aliases, a[0])
			}
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		// Without it the agent matches no device to its driver at boot:
		// the node never finds its disk, its network or its boot medium.
		return nil, fmt.Errorf("%s has modules.dep but no modules.alias, which the agent needs to load each device's driver at boot: "+
			"run `depmod -b %s %s` to write the module indexes, or remove modules.dep and etoile indexes the modules itself",
			modDir, modulesRoot(modDir), filepath.Base(modDir))
	} else {
		return nil, fmt.Errorf("reading modules.alias: %w", err)
	}
	if data, err := readIndexFile(modDir, "modules.softdep"); err == nil {
		sds, err := parseSoftdeps(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(modDir, "modules.softdep"), err)
		}
		for _, s := range sds {
			if m := ix.mods[normName(s[0])]; m != nil {
				m.SoftDeps = append(m.SoftDeps, s[1])
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading modules.softdep: %w", err)
	}
	return ix, nil
}

// modulesRoot is the root folder holding modDir as lib/modules/<version>
// (or usr/lib/modules/<version>): what depmod -b takes.
func modulesRoot(modDir string) string {
	root := filepath.Dir(filepath.Dir(filepath.Dir(modDir))) // above lib/modules/<version>
	if filepath.Base(filepath.Dir(filepath.Dir(modDir))) == "lib" && filepath.Base(root) == "usr" {
		root = filepath.Dir(root)
	}
	return root
}

// scanModules builds modules.dep information from every module's .modinfo,
// the way busybox's depmod does: modpost already resolved each module's
// symbols into a "depends=" list at kernel build time.
func scanModules(modDir string) ([]*modEntry, error) {
	return scanModulesContext(context.Background(), modDir)
}

// scanModulesContext is scanModules that stops when ctx ends (it looks
// before each module it reads).
func scanModulesContext(ctx context.Context, modDir string) ([]*modEntry, error) {
	var paths []string
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && isModuleFile(d.Name()) {
			rel, err := filepath.Rel(modDir, p)
			if err != nil {
				return err
			}
			paths = append(paths, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing modules in %s: %w", modDir, err)
	}
	sort.Strings(paths)
	byName := map[string]*modEntry{}
	direct := map[string][]string{}
	var entries []*modEntry
	for _, rel := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mi, err := readModinfo(filepath.Join(modDir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		e := &modEntry{Name: nameFromPath(rel), RelPath: rel, Aliases: mi.Aliases, SoftDeps: mi.SoftDeps}
		if prev := byName[e.Name]; prev != nil {
			return nil, fmt.Errorf("two modules are named %s: %s and %s", e.Name, prev.RelPath, rel)
		}
		byName[e.Name] = e
		direct[e.Name] = mi.Depends
		entries = append(entries, e)
	}
	for _, e := range entries {
		deps, err := dependencyOrder(e.Name, direct, byName)
		if err != nil {
			return nil, err
		}
		e.Deps = deps
	}
	return entries, nil
}

// dependencyOrder lists every module that name needs, in modules.dep order:
// a module comes before the modules it depends on, so loading the list from
// its end satisfies each module's needs first (as modprobe does).
func dependencyOrder(name string, direct map[string][]string, byName map[string]*modEntry) ([]string, error) {
	var post []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, from string) error
	visit = func(n, from string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("module %s depends on itself through %s: the modules folder is inconsistent", n, from)
		case 2:
			return nil
		}
		state[n] = 1
		deps := slices.Clone(direct[n])
		sort.Strings(deps)
		for _, d := range deps {
			d = normName(d)
			if byName[d] == nil {
				return fmt.Errorf("module %s depends on %s, which is not in the modules folder", byName[n].RelPath, d)
			}
			if err := visit(d, n); err != nil {
				return err
			}
		}
		state[n] = 2
		if n != name {
			post = append(post, byName[n].RelPath)
		}
		return nil
	}
	if err := visit(name, name); err != nil {
		return nil, err
	}
	slices.Reverse(post)
	return post, nil
}

// writeDepmodFiles writes modules.dep, modules.alias and modules.softdep for
// entries into dir, in depmod's text format.
func writeDepmodFiles(dir string, entries []*modEntry) error {
	files := depmodFiles(entries, func(p string) string { return p })
	for _, name := range []string{"modules.dep", "modules.alias", "modules.softdep"} {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// depmodFiles renders entries (sorted by path) as depmod text files; rename
// maps on-disk paths to the paths to write (the initramfs strips compression
// suffixes because it stores modules decompressed).
func depmodFiles(entries []*modEntry, rename func(string) string) map[string][]byte {
	sorted := slices.Clone(entries)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].RelPath < sorted[j].RelPath })
	var dep, alias, soft bytes.Buffer
	alias.WriteString("# Aliases extracted from modules themselves.\n")
	soft.WriteString("# Soft dependencies extracted from modules themselves.\n")
	for _, e := range sorted {
		dep.WriteString(rename(e.RelPath) + ":")
		for _, d := range e.Deps {
			dep.WriteString(" " + rename(d))
		}
		dep.WriteByte('\n')
		for _, a := range e.Aliases {
			fmt.Fprintf(&alias, "alias %s %s\n", a, e.Name)
		}
		for _, s := range e.SoftDeps {
			fmt.Fprintf(&soft, "softdep %s %s\n", e.Name, s)
		}
	}
	return map[string][]byte{"modules.dep": dep.Bytes(), "modules.alias": alias.Bytes(), "modules.softdep": soft.Bytes()}
}
