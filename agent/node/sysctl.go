package node

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/etoile-os/etoile/agent/config"
)

// DefaultSysctls are the kernel parameters every node gets unless its
// machine config sets them: the kernel's inotify limits (128 instances per
// user) are too low for a Kubernetes node, where the kubelet, containerd and
// many pods each hold some ("too many open files" from kubectl logs -f).
var DefaultSysctls = map[string]string{
	"fs.inotify.max_user_instances": "8192",
	"fs.inotify.max_user_watches":   "524288",
}

// applySysctls writes the default kernel parameters and the config's (which
// win) under root/proc/sys, reads each back, and logs what the kernel took.
// It returns a warning for each it could not set.
func (n *Node) applySysctls(cfg *config.MachineConfig) []string {
	if _, err := os.Stat(filepath.Join(n.env.Root, "proc/sys")); err != nil {
		return nil // not a machine's root (tests without a proc/sys tree)
	}
	want := maps.Clone(DefaultSysctls)
	if cfg != nil {
		maps.Copy(want, cfg.Sysctls)
	}
	var set, warns []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		path := filepath.Join(n.env.Root, "proc/sys", config.SysctlPath(k))
		err := writeExisting(path, want[k]+"\n")
		if err != nil {
			what := "sysctls." + k
			if _, ok := DefaultSysctls[k]; ok && (cfg == nil || cfg.Sysctls[k] == "") {
				what = "default kernel parameter " + k
			}
			fix := "check the name (sysctl -a lists them) and the value"
			if os.IsNotExist(err) {
				fix = "this kernel has no such parameter (a module not loaded, or a name mistyped): sysctl -a lists them"
			}
			warns = append(warns, fmt.Sprintf("%s: not set to %q: %v (%s)", what, want[k], err, fix))
			n.env.Log.Warn("kernel parameter not set", "name", k, "value", want[k], "reason", err.Error(), "fix", fix)
			continue
		}
		got, _ := os.ReadFile(path)
		set = append(set, k+"="+strings.Join(strings.Fields(string(got)), " "))
	}
	if len(set) > 0 {
		n.env.Log.Info("kernel parameters set", "values", strings.Join(set, " "))
	}
	return warns
}

// writeExisting writes an existing file (a /proc/sys entry cannot be created).
func writeExisting(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
