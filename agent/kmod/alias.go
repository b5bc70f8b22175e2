package kmod

import (
	"io"
	"strings"
)

// Aliases is modules.alias, indexed for fast lookup: a boot on a server with
// a thousand devices matches each modalias against ~26000 patterns, which
// must not cost seconds under emulation. Patterns are bucketed by their
// literal prefix (the bytes before the first wildcard), so a lookup only tries
// the patterns whose prefix the modalias starts with.
type Aliases struct {
	byPrefix map[string][]aliasEntry
	// maxPrefix bounds the prefixes tried for a modalias.
	maxPrefix int
	count     int
	buses     map[string]bool // what comes before the first ":" of a pattern
	// builtin is modules.builtin.alias: the aliases of the modules built
	// into the kernel, which a name is looked up in last (resolveName),
	// as kmod does; devices are not matched against them (their drivers
	// bind without help).
	builtin *Aliases
}

type aliasEntry struct {
	pattern string
	module  string
	order   int
}

// ParseAliases reads modules.alias ("alias <pattern> <module>" lines; '#'
// comments and blank lines ignored). A malformed line is skipped, as
// modprobe skips it (readLines): one damaged line must not leave every
// device without its driver. A file none of whose lines is an alias is an
// error naming its first line.
func ParseAliases(r io.Reader) (*Aliases, error) {
	a, bad, err := parseAliases("modules.alias", r)
	if err == nil {
		err = bad.unusable()
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// parseAliases reads file (modules.alias, modules.builtin.alias), and
// what it skipped.
func parseAliases(file string, r io.Reader) (*Aliases, badLines, error) {
	a := &Aliases{byPrefix: map[string][]aliasEntry{}}
	bad, err := readLines(file, `"alias <pattern> <module>"`, r, func(line string) bool {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return false
		}
		a.add(f[1], Normalize(f[2]))
		return true
	})
	return a, bad, err
}

func (a *Aliases) add(pattern, module string) {
	prefix := pattern
	if i := strings.IndexAny(pattern, "*?[\\"); i >= 0 {
		prefix = pattern[:i]
	}
	a.byPrefix[prefix] = append(a.byPrefix[prefix], aliasEntry{pattern: pattern, module: module, order: a.count})
	if bus, _, ok := strings.Cut(pattern, ":"); ok {
		if a.buses == nil {
			a.buses = map[string]bool{}
		}
		a.buses[strings.TrimRight(bus, "*?")] = true
	}
	a.count++
	a.maxPrefix = max(a.maxPrefix, len(prefix))
}

// ForBus reports whether a module has an alias for devices of the bus
// (/sys/bus/NAME): a pattern that starts "NAME:". Platform devices carry
// acpi: and of: modaliases too.
func (a *Aliases) ForBus(name string) bool {
	if a == nil {
		return false
	}
	if name == "platform" {
		return a.buses["platform"] || a.buses["acpi"] || a.buses["of"]
	}
	return a.buses[name]
}

// Len is the number of aliases read.
func (a *Aliases) Len() int { return a.count }

// Lookup returns the modules whose alias pattern matches modalias, each once,
// in modules.alias order (which is the order modprobe would try them).
func (a *Aliases) Lookup(modalias string) []string {
	if a == nil {
		return nil
	}
	type hit struct {
		module string
		order  int
	}
	var hits []hit
	for n := 0; n <= len(modalias) && n <= a.maxPrefix; n++ {
		for _, e := range a.byPrefix[modalias[:n]] {
			if Match(e.pattern, modalias) {
				hits = append(hits, hit{e.module, e.order})
			}
		}
	}
	// Restore file order across buckets (insertion sort: hits are few).
	for i := 1; i < len(hits); i++ {
		for j := i; j > 0 && hits[j].order < hits[j-1].order; j-- {
			hits[j], hits[j-1] = hits[j-1], hits[j]
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, h := range hits {
		if !seen[h.module] {
			seen[h.module] = true
			out = append(out, h.module)
		}
	}
	return out
}

// Normalize gives the kernel's name for a module: '-' and '_' are the same
// in module names, and the kernel reports them with '_'.
func Normalize(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}
