package kmod

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ModprobeDirs are where kmod's modprobe.d(5) files live, most important
// first: a file in an earlier folder hides one of the same name in a later
// one.
var ModprobeDirs = []string{"/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/lib/modprobe.d", "/usr/lib/modprobe.d"}

// ModprobeConf is what the modprobe.d files say that the agent applies:
// each module's options, the blacklist, the install commands that disable
// a module (install NAME /bin/false) or set it aside (install NAME
// /bin/true), the aliases and the soft dependencies. Other commands
// (remove, other install commands…) are listed in Ignored, "file:line
// command", and so are lines that lack what their command takes, "file:line
// command (malformed)".
type ModprobeConf struct {
	Options   map[string]string // module → its options, in the files' order
	Blacklist map[string]string // module → where it is blacklisted, "file:line"
	Install   []InstallRule     // in the files' order
	Aliases   []AliasRule       // in the files' order
	Softdeps  []SoftdepRule     // in the files' order
	Files     []string
	Ignored   []string
}

// AliasRule is an `alias PATTERN MODULE` line: a name (modprobe my-nic) or
// a device's modalias that PATTERN matches resolves to MODULE. kmod looks
// these up before anything else (a module's own name, modules.alias), and
// the first kind of lookup that finds something is the answer: a device
// whose modalias a modprobe.d alias matches gets that module, not
// modules.alias's. MODULE is a module's name, not looked up again: aliases
// do not chain, so they cannot loop.
type AliasRule struct {
	Pattern string // a shell pattern (kmod matches it with fnmatch), '-' read as '_' outside [ ]
	Module  string
	Source  string // "file:line"
}

// SoftdepRule is a `softdep PATTERN pre: A B post: C` line: the names (a
// module or an alias) to load before and after a module PATTERN matches.
// As with kmod, the first line that matches a module is its soft
// dependencies, and it replaces what modules.softdep has for it (an empty
// one, `softdep NAME`, cancels them).
type SoftdepRule struct {
	Pattern   string // a module name, or a shell pattern (fnmatch)
	Pre, Post []string
	Source    string // "file:line"
}

// InstallRule is an `install PATTERN COMMAND` line whose command Étoile
// follows without running it: false (the hardening idiom that disables a
// module, as for dccp or sctp) makes loading the module fail, true makes it
// do nothing.
type InstallRule struct {
	Pattern string // a module name, or a shell pattern (kmod matches it with fnmatch)
	Command string // as written
	Fail    bool   // false: loading fails; true: loading does nothing
	Source  string // "file:line"
}

// DisabledError is a module that modprobe.d disables (install NAME /bin/false).
type DisabledError struct {
	Module string
	Rule   InstallRule
}

func (e *DisabledError) Error() string {
	return fmt.Sprintf("module %s is disabled by modprobe.d (%s: install %s %s): remove that line to allow it",
		e.Module, e.Rule.Source, e.Rule.Pattern, e.Rule.Command)
}

// InstallSummary lists the install commands followed, "PATTERN=false" or
// "PATTERN=true", comma-separated (for a log line).
func (c ModprobeConf) InstallSummary() string {
	var out []string
	for _, r := range c.Install {
		v := "true"
		if r.Fail {
			v = "false"
		}
		out = append(out, r.Pattern+"="+v)
	}
	return strings.Join(out, ",")
}

// installVerdict tells whether an install command is one Étoile follows:
// false or true, bare or from a system folder, and which.
func installVerdict(cmd []string) (fail, ok bool) {
	if len(cmd) != 1 {
		return false, false
	}
	dir, base := filepath.Split(cmd[0])
	switch dir {
	case "", "/bin/", "/usr/bin/", "/sbin/", "/usr/sbin/":
	default:
		return false, false
	}
	switch base {
	case "false":
		return true, true
	case "true":
		return false, true
	}
	return false, false
}

// ReadModprobeD reads the `options`, `blacklist`, `install`, `alias` and
// `softdep` lines of every *.conf file of ModprobeDirs under root, as kmod
// does: files in the order of their names, a trailing backslash continues a
// line, '#' starts a comment, module names with - or _ alike. Of a module's
// install commands the first counts, as with kmod; one other than false or
// true is not followed (Ignored). A line that lacks what its command takes
// (`alias my-nic` with no module) is skipped, and listed in Ignored: kmod
// skips it too, with a warning.
func ReadModprobeD(root string) (ModprobeConf, error) {
	out := ModprobeConf{Options: map[string]string{}, Blacklist: map[string]string{}}
	installed := map[string]bool{} // patterns with an install command already
	var err error
	out.Files, err = eachConfFile(root, ModprobeDirs, func(p string, data []byte) {
		var line string
		for i, raw := range strings.Split(string(data), "\n") {
			if strings.HasSuffix(raw, "\\") {
				line += strings.TrimSuffix(raw, "\\") + " "
				continue
			}
			line += raw
			fields := strings.Fields(line)
			line = ""
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			where := p + ":" + strconv.Itoa(i+1)
			malformed := func() { out.Ignored = append(out.Ignored, where+" "+fields[0]+" (malformed)") }
			switch fields[0] {
			case "options":
				if len(fields) < 3 {
					malformed()
					continue
				}
				mod := Normalize(fields[1])
				out.Options[mod] = strings.TrimSpace(out.Options[mod] + " " + strings.Join(fields[2:], " "))
			case "blacklist":
				if len(fields) < 2 {
					malformed()
					continue
				}
				if mod := Normalize(fields[1]); out.Blacklist[mod] == "" {
					out.Blacklist[mod] = where
				}
			case "alias":
				if len(fields) < 3 {
					malformed()
					continue
				}
				pattern, ok := underscores(fields[1])
				if !ok {
					malformed() // an unmatched bracket, which kmod refuses
					continue
				}
				out.Aliases = append(out.Aliases, AliasRule{Pattern: pattern, Module: Normalize(fields[2]), Source: where})
			case "softdep":
				if len(fields) < 2 {
					malformed()
					continue
				}
				pattern, ok := underscores(fields[1])
				if !ok {
					malformed()
					continue
				}
				rule := SoftdepRule{Pattern: pattern, Source: where}
				rule.Pre, rule.Post = softdepLists(fields[2:])
				out.Softdeps = append(out.Softdeps, rule)
			case "install":
				if len(fields) < 3 {
					malformed()
					continue
				}
				pattern := Normalize(fields[1])
				if installed[pattern] {
					continue // kmod follows a module's first install command
				}
				installed[pattern] = true
				fail, ok := installVerdict(fields[2:])
				if !ok {
					out.Ignored = append(out.Ignored, where+" install")
					continue
				}
				out.Install = append(out.Install, InstallRule{Pattern: pattern, Command: strings.Join(fields[2:], " "), Fail: fail, Source: where})
			default:
				out.Ignored = append(out.Ignored, where+" "+fields[0])
			}
		}
	})
	return out, err
}

// underscores reads a modprobe.d name or pattern as kmod does: '-' is '_',
// except inside a bracket class ("pci:v*d*sv*sd*bc0[2-3]*" keeps its
// range). An unmatched bracket is refused (false).
func underscores(s string) (string, bool) {
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '-':
			b[i] = '_'
		case ']':
			return s, false
		case '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return s, false
			}
			i += j
		}
	}
	return string(b), true
}

// AddConfigParams puts the modprobe.d options (by module) before the
// command line's parameters for the modules loaded from now on, as kmod's
// modprobe does: the kernel keeps a parameter's last value, so the command
// line wins; Étoile's defaults come only where neither sets a parameter.
func (c *Coldplug) AddConfigParams(conf map[string]string) {
	c.paramsMu.Lock()
	defer c.paramsMu.Unlock()
	merged := maps.Clone(c.conf)
	if merged == nil {
		merged = map[string]string{}
	}
	for mod, opts := range conf {
		merged[mod] = strings.TrimSpace(merged[mod] + " " + opts)
	}
	c.conf = merged
}

// AddModprobeConf applies what modprobe.d says to the modules loaded from
// now on: its options (AddConfigParams), its blacklist — a blacklisted
// module is not loaded for a device's modalias or through an alias (a
// modprobe.d alias too), but is by its own name, as with kmod — its install
// commands false (loading the module fails, by any name and as a
// dependency) and true (loading it does nothing), its aliases (looked up
// first, for names and for devices: AliasRule) and its soft dependencies
// (which replace modules.softdep's: SoftdepRule). What an earlier call
// added comes first.
func (c *Coldplug) AddModprobeConf(conf ModprobeConf) {
	c.AddConfigParams(conf.Options)
	if c.addModprobeConf(conf) != nil {
		// The devices seen before (the initramfs's scan) that an alias
		// now names a driver for are looked at again by the next Scan.
		// configAliases reads the modalias as the aliases were written
		// ('-' as '_'); paramsMu under c.mu, as Reindex takes them.
		c.mu.Lock()
		for ma := range c.seen {
			if len(c.configAliases(ma)) > 0 {
				delete(c.seen, ma)
			}
		}
		c.mu.Unlock()
	}
}

// addModprobeConf is AddModprobeConf under paramsMu (which c.mu, taken
// before it elsewhere, must not be taken under); it returns the new alias
// index, nil when conf adds no alias.
func (c *Coldplug) addModprobeConf(conf ModprobeConf) *Aliases {
	c.paramsMu.Lock()
	defer c.paramsMu.Unlock()
	bl := maps.Clone(c.blacklist)
	if bl == nil {
		bl = map[string]string{}
	}
	for mod, where := range conf.Blacklist {
		if bl[mod] == "" {
			bl[mod] = where
		}
	}
	c.blacklist = bl
	c.install = append(slices.Clip(c.install), conf.Install...)
	c.softdeps = append(slices.Clip(c.softdeps), conf.Softdeps...)
	if len(conf.Aliases) > 0 {
		// Indexed as modules.alias is: a device's modalias is matched
		// against them on every scan.
		c.aliasRules = append(slices.Clip(c.aliasRules), conf.Aliases...)
		a := &Aliases{byPrefix: map[string][]aliasEntry{}}
		for _, r := range c.aliasRules {
			a.add(r.Pattern, r.Module)
		}
		c.confAliases = a
		return a
	}
	return nil
}

// configAliases returns the modules modprobe.d's aliases name for name (a
// name or a device's modalias), in the files' order, each once.
func (c *Coldplug) configAliases(name string) []string {
	c.paramsMu.RLock()
	a := c.confAliases
	c.paramsMu.RUnlock()
	if a == nil {
		return nil
	}
	n, ok := underscores(name)
	if !ok {
		return nil // kmod refuses to look such a name up
	}
	return a.Lookup(n)
}

// driversFor returns the modules for a device's modalias: modprobe.d's
// aliases that match it if some do, else those of modules.alias (a), as
// kmod looks them up.
func (c *Coldplug) driversFor(a *Aliases, modalias string) []string {
	if mods := c.configAliases(modalias); len(mods) > 0 {
		return mods
	}
	return a.Lookup(modalias)
}

// forBus reports whether modules.alias or modprobe.d has an alias for the
// devices of a bus (Aliases.ForBus).
func (c *Coldplug) forBus(name string) bool {
	if c.aliases.Load().ForBus(name) {
		return true
	}
	c.paramsMu.RLock()
	defer c.paramsMu.RUnlock()
	return c.confAliases.ForBus(name)
}

// softdepsFor returns the names to load before and after module m: those
// of modprobe.d's first softdep line that matches m, else modules.softdep's.
// A modprobe.d line always wins here; kmod reads modules.softdep as one more
// configuration file among modprobe.d's, in name order, so there a file that
// sorts after it (zz.conf) does not override it. Étoile's rule is the
// simpler one the README states.
func (c *Coldplug) softdepsFor(m string) (pre, post []string) {
	c.paramsMu.RLock()
	for _, r := range c.softdeps {
		if r.Pattern == m || Match(r.Pattern, m) {
			c.paramsMu.RUnlock()
			return r.Pre, r.Post
		}
	}
	c.paramsMu.RUnlock()
	return c.deps.Load().Softdeps(m)
}

// blacklistedBy tells where modprobe.d blacklists module m, or "".
func (c *Coldplug) blacklistedBy(m string) string {
	c.paramsMu.RLock()
	defer c.paramsMu.RUnlock()
	return c.blacklist[m]
}

// installFor returns the install command modprobe.d has for module m that
// Étoile follows, if any: the first whose pattern matches, as with kmod.
func (c *Coldplug) installFor(m string) (InstallRule, bool) {
	c.paramsMu.RLock()
	defer c.paramsMu.RUnlock()
	for _, r := range c.install {
		if r.Pattern == m || Match(r.Pattern, m) {
			return r, true
		}
	}
	return InstallRule{}, false
}

// paramsFor is module m's parameters: modprobe.d's, the command line's,
// then the defaults neither sets.
func (c *Coldplug) paramsFor(m string) string {
	c.paramsMu.RLock()
	defer c.paramsMu.RUnlock()
	p := strings.TrimSpace(c.conf[m] + " " + c.Params[m])
	if d := c.Defaults[m]; d != "" {
		p = WithDefaults(map[string]string{m: p}, map[string]string{m: d})[m]
	}
	return p
}

// eachConfFile reads the *.conf files of dirs under root (confFiles), in
// order, handing each to read; it returns the files read.
func eachConfFile(root string, dirs []string, read func(p string, data []byte)) ([]string, error) {
	files, err := confFiles(root, dirs)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, p := range files {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return done, err
		}
		done = append(done, p)
		read(p, data)
	}
	return done, nil
}

// confFiles lists the *.conf files of dirs under root by name, a name in an
// earlier folder hiding the same name in a later one (systemd's and kmod's
// rule), in the order of their names: paths in the machine's view.
func confFiles(root string, dirs []string) ([]string, error) {
	byName := map[string]string{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for _, e := range entries {
			if _, taken := byName[e.Name()]; taken || !strings.HasSuffix(e.Name(), ".conf") || e.IsDir() {
				continue
			}
			byName[e.Name()] = filepath.Join(dir, e.Name())
		}
	}
	var out []string
	for _, base := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[base])
	}
	return out, nil
}
