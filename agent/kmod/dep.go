package kmod

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// Deps is modules.dep (and modules.builtin): where each module's file is and
// which modules must be loaded before it.
type Deps struct {
	path    map[string]string   // module name → path relative to the modules folder
	deps    map[string][]string // module name → names it needs
	builtin map[string]bool
	pre     map[string][]string // softdep pre: names (modules or aliases) to load first
	post    map[string][]string // softdep post: names to load after
}

// ModuleName turns a modules.dep path ("kernel/fs/isofs/isofs.ko.xz") into the
// module's name ("isofs").
func ModuleName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return Normalize(base)
}

// ParseDeps reads modules.dep ("path: dep-path dep-path…").
func ParseDeps(r io.Reader) (*Deps, error) {
	d := &Deps{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{},
		pre: map[string][]string{}, post: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(file) == "" {
			return nil, fmt.Errorf("modules.dep line %d: %q: want \"path.ko: dependency.ko …\"", n, line)
		}
		name := ModuleName(file)
		d.path[name] = strings.TrimSpace(file)
		var deps []string
		for _, f := range strings.Fields(rest) {
			deps = append(deps, ModuleName(f))
		}
		d.deps[name] = deps
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	return d, nil
}

// AddBuiltin reads modules.builtin (one path per line): modules compiled into
// the kernel need no loading, so asking for them is not an error.
func (d *Deps) AddBuiltin(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			d.builtin[ModuleName(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading modules.builtin: %w", err)
	}
	return nil
}

// AddSoftdeps reads modules.softdep ("softdep mod pre: a b post: c"). A
// soft dependency is not a symbol dependency, so depmod cannot see it, but
// the module does not work without it: libcrc32c needs the crc32c cipher,
// which only a softdep names, and nf_tables needs libcrc32c.
func (d *Deps) AddSoftdeps(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "softdep" {
			continue
		}
		mod := Normalize(f[1])
		var dst *map[string][]string
		for _, tok := range f[2:] {
			switch tok {
			case "pre:":
				dst = &d.pre
			case "post:":
				dst = &d.post
			default:
				// Names before any pre:/post: are malformed; modprobe ignores them too.
				if dst != nil {
					(*dst)[mod] = append((*dst)[mod], tok)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading modules.softdep: %w", err)
	}
	return nil
}

// Softdeps returns the names to load before and after name.
func (d *Deps) Softdeps(name string) (pre, post []string) {
	name = Normalize(name)
	return d.pre[name], d.post[name]
}

// Has reports whether name is a module of modules.dep or built in.
func (d *Deps) Has(name string) bool {
	name = Normalize(name)
	_, ok := d.path[name]
	return ok || d.builtin[name]
}

// Path is the module's file relative to the modules folder, "" if unknown.
func (d *Deps) Path(name string) string { return d.path[Normalize(name)] }

// Builtin reports whether the module is compiled into the kernel.
func (d *Deps) Builtin(name string) bool { return d.builtin[Normalize(name)] }

// MissingError names a module that is neither in modules.dep nor built in.
type MissingError struct{ Module, NeededBy string }

func (e *MissingError) Error() string {
	if e.NeededBy != "" {
		return fmt.Sprintf("module %s (needed by %s) is not in modules.dep", e.Module, e.NeededBy)
	}
	return fmt.Sprintf("module %s is not in modules.dep", e.Module)
}

// Order returns the modules to load for name, dependencies first, name last.
// modules.dep lists every module's full dependency closure, but not always in
// a load order that holds across kernels, so the order is computed here by a
// depth-first walk. Built-in modules are left out. A dependency cycle (which
// depmod refuses, but a hand-made file might hold) is broken, not looped on.
func (d *Deps) Order(name string) ([]string, error) {
	name = Normalize(name)
	var (
		out     []string
		state   = map[string]int{} // 1 visiting, 2 done
		missing error
	)
	var visit func(m, parent string)
	visit = func(m, parent string) {
		if state[m] != 0 {
			return
		}
		state[m] = 1
		if _, ok := d.path[m]; !ok {
			if !d.builtin[m] && missing == nil {
				missing = &MissingError{Module: m, NeededBy: parent}
			}
			state[m] = 2
			return
		}
		for _, dep := range d.deps[m] {
			visit(dep, m)
		}
		state[m] = 2
		out = append(out, m)
	}
	visit(name, "")
	return out, missing
}
