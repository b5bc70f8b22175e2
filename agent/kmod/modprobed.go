package kmod

import (
	"errors"
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

// ModprobeConf is what the modprobe.d files say that the agent's modprobe
// applies: each module's options. Other commands (blacklist, install,
// softdep…) are listed in Ignored, "file:line command".
type ModprobeConf struct {
	Options map[string]string // module → its options, in the files' order
	Files   []string
	Ignored []string
}

// ReadModprobeD reads the `options` lines of every *.conf file of
// ModprobeDirs under root, as kmod does: files in the order of their names,
// a trailing backslash continues a line, '#' starts a comment, module names
// with - or _ alike.
func ReadModprobeD(root string) (ModprobeConf, error) {
	out := ModprobeConf{Options: map[string]string{}}
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
			switch fields[0] {
			case "options":
				if len(fields) < 3 {
					continue
				}
				mod := Normalize(fields[1])
				out.Options[mod] = strings.TrimSpace(out.Options[mod] + " " + strings.Join(fields[2:], " "))
			default:
				out.Ignored = append(out.Ignored, p+":"+strconv.Itoa(i+1)+" "+fields[0])
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
