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
// each module's options, the blacklist, and the install commands that
// disable a module (install NAME /bin/false) or set it aside (install NAME
// /bin/true). Other commands (alias, softdep, remove, other install
// commands…) are listed in Ignored, "file:line command".
type ModprobeConf struct {
	Options   map[string]string // module → its options, in the files' order
	Blacklist map[string]string // module → where it is blacklisted, "file:line"
	Install   []InstallRule     // in the files' order
	Files     []string
	Ignored   []string
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

// ReadModprobeD reads the `options`, `blacklist` and `install` lines of
// every *.conf file of ModprobeDirs under root, as kmod does: files in the
// order of their names, a trailing backslash continues a line, '#' starts a
// comment, module names with - or _ alike. Of a module's install commands
// the first counts, as with kmod; one other than false or true is not
// followed (Ignored).
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
			switch fields[0] {
			case "options":
				if len(fields) < 3 {
					continue
				}
				mod := Normalize(fields[1])
				out.Options[mod] = strings.TrimSpace(out.Options[mod] + " " + strings.Join(fields[2:], " "))
			case "blacklist":
				if len(fields) < 2 {
					continue
				}
				if mod := Normalize(fields[1]); out.Blacklist[mod] == "" {
					out.Blacklist[mod] = where
				}
			case "install":
				if len(fields) < 3 {
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
// module is not loaded for a device's modalias or through an alias, but is
// by its own name, as with kmod — and its install commands false (loading
// the module fails, by any name and as a dependency) and true (loading it
// does nothing).
func (c *Coldplug) AddModprobeConf(conf ModprobeConf) {
	c.AddConfigParams(conf.Options)
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
