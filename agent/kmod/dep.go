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
	bad     []badLines          // what reading each file skipped
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

// ParseDeps reads modules.dep ("path: dep-path dep-path…"). A malformed
// line is skipped (readLines); a file none of whose lines is one is an
// error naming its first line.
func ParseDeps(r io.Reader) (*Deps, error) {
	d, err := parseDeps(r)
	if err == nil {
		err = d.bad[0].unusable()
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

// parseDeps reads modules.dep; d.bad[0] is what it skipped.
func parseDeps(r io.Reader) (*Deps, error) {
	d := &Deps{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{},
		pre: map[string][]string{}, post: map[string][]string{}}
	bad, err := readLines("modules.dep", `"path.ko: dependency.ko …"`, r, func(line string) bool {
		file, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(file) == "" {
			return false
		}
		name := ModuleName(file)
		d.path[name] = strings.TrimSpace(file)
		var deps []string
		for _, f := range strings.Fields(rest) {
			deps = append(deps, ModuleName(f))
		}
		d.deps[name] = deps
		return true
	})
	d.bad = append(d.bad, bad)
	return d, err
}

// AddBuiltin reads modules.builtin (one path per line): modules compiled into
// the kernel need no loading, so asking for them is not an error. A
// malformed line is skipped (readLines).
func (d *Deps) AddBuiltin(r io.Reader) error {
	bad, err := readLines("modules.builtin", `"path.ko"`, r, func(line string) bool {
		if strings.ContainsAny(line, " \t") {
			return false
		}
		d.builtin[ModuleName(line)] = true
		return true
	})
	d.bad = append(d.bad, bad)
	return err
}

// AddSoftdeps reads modules.softdep ("softdep mod pre: a b post: c"). A
// soft dependency is not a symbol dependency, so depmod cannot see it, but
// the module does not work without it: libcrc32c needs the crc32c cipher,
// which only a softdep names, and nf_tables needs libcrc32c. A malformed
// line is skipped (readLines).
func (d *Deps) AddSoftdeps(r io.Reader) error {
	bad, err := readLines("modules.softdep", `"softdep <module> pre: <module>… post: <module>…"`, r, func(line string) bool {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			return false
		}
		mod := Normalize(f[1])
		pre, post := softdepLists(f[2:])
		d.pre[mod] = append(d.pre[mod], pre...)
		d.post[mod] = append(d.post[mod], post...)
		return true
	})
	d.bad = append(d.bad, bad)
	return err
}

// softdepLists splits a softdep line's words after its module ("pre: a b
// post: c") into the names to load before and after it. Names before any
// pre: or post: are malformed, and kmod ignores them too.
func softdepLists(words []string) (pre, post []string) {
	var dst *[]string
	for _, w := range words {
		switch w {
		case "pre:":
			dst = &pre
		case "post:":
			dst = &post
		default:
			if dst != nil {
				*dst = append(*dst, w)
			}
		}
	}
	return pre, post
}

// badLines is what reading a depmod file skipped: how many lines it could
// not parse, and the first of them.
type badLines struct {
	file, want string // "modules.alias", and what a line looks like
	count      int    // lines skipped
	line       int    // the first one's number
	text       string // the first one, shortened
	good       int    // lines read
}

// unusable is the error of a file that has lines, none of which could be
// read: not what its name says (a truncated or foreign file).
func (b badLines) unusable() error {
	if b.count == 0 || b.good > 0 {
		return nil
	}
	return fmt.Errorf("%s line %d: %q: want %s (no line of the file is one: rebuild the image)", b.file, b.line, b.text, b.want)
}

// readLines hands parse each line of a depmod file (file, whose lines look
// like want) that is neither blank nor a '#' comment, trimmed. A line
// parse rejects is skipped and counted, as modprobe skips a line it cannot
// parse: one damaged line must not cost the machine every driver. Lines
// have no length limit (a file in the initramfs is in memory already).
func readLines(file, want string, r io.Reader, parse func(line string) bool) (badLines, error) {
	b := badLines{file: file, want: want}
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		s, err := br.ReadString('\n')
		if line := strings.TrimSpace(s); line != "" && line[0] != '#' {
			switch {
			case parse(line):
				b.good++
			case b.count == 0:
				b.line, b.text = n, line
				if len(b.text) > 120 {
					b.text = b.text[:120] + "…"
				}
				fallthrough
			default:
				b.count++
			}
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, fmt.Errorf("reading %s: %w", file, err)
		}
	}
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
