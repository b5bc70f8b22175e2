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
// many pods each hold some ("too many open files" from kubectl logs -f), and
// so is its number of process ids.
var DefaultSysctls = map[string]string{
	"fs.inotify.max_user_instances": "8192",
	"fs.inotify.max_user_watches":   "524288",
	// The kernel's default is 32768 (1024 per CPU on large machines):
	// a node running many pods runs out of process ids. systemd's
	// 50-pid-max.conf raises it so on 64-bit machines.
	"kernel.pid_max": "4194304",
}

// applySysctls writes the default kernel parameters and the config's (which
// win) under root/proc/sys, reads each back, and logs what the kernel took.
// It returns a warning for each it could not set. A parameter is its file
// (config.SysctlPath): the config's net/ipv4/ip_forward replaces a default
// net.ipv4.ip_forward, rather than both being written in turn.
func (n *Node) applySysctls(cfg *config.MachineConfig) []string {
	if _, err := os.Stat(filepath.Join(n.env.Root, "proc/sys")); err != nil {
		return nil // not a machine's root (tests without a proc/sys tree)
	}
	type param struct {
		name, value string
		deflt       bool // a default, not the config's
	}
	want := map[string]param{} // by its path under /proc/sys
	for k, v := range DefaultSysctls {
		want[config.SysctlPath(k)] = param{k, v, true}
	}
	if cfg != nil {
		// Sorted: of two spellings of one parameter (validation refuses
		// them), the same one wins on every boot.
		for _, k := range slices.Sorted(maps.Keys(cfg.Sysctls)) {
			want[config.SysctlPath(k)] = param{k, cfg.Sysctls[k], false}
		}
	}
	var set, warns []string
	for _, rel := range slices.Sorted(maps.Keys(want)) {
		p := want[rel]
		path := filepath.Join(n.env.Root, "proc/sys", rel)
		err := writeExisting(path, p.value+"\n")
		if err != nil {
			what := "sysctls." + p.name
			if p.deflt {
				what = "default kernel parameter " + p.name
			}
			fix := "check the name (sysctl -a lists them) and the value"
			if os.IsNotExist(err) {
				fix = "this kernel has no such parameter (a module not loaded, or a name mistyped): sysctl -a lists them"
			}
			warns = append(warns, fmt.Sprintf("%s: not set to %q: %v (%s)", what, p.value, err, fix))
			n.env.Log.Warn("kernel parameter not set", "name", p.name, "value", p.value, "reason", err.Error(), "fix", fix)
			continue
		}
		got, _ := os.ReadFile(path)
		set = append(set, p.name+"="+strings.Join(strings.Fields(string(got)), " "))
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
