package main

import (
	"fmt"
	"os"
	"strings"
)

// rootShared reads mountinfo (proc(5)) and says why the mount at / is not
// shared, or nil: containerd refuses a pod's HostToContainer or
// Bidirectional mount propagation on a private mount.
func rootShared(mountinfo string) error {
	data, err := os.ReadFile(mountinfo)
	if err != nil {
		return fmt.Errorf("mount propagation: %w", err)
	}
	var root []string // the last mount at /: the one on top
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == "/" {
			root = f
		}
	}
	if root == nil {
		return fmt.Errorf("mount propagation: no mount at / in %s", mountinfo)
	}
	for _, opt := range root[6:] {
		if opt == "-" {
			break
		}
		if strings.HasPrefix(opt, "shared:") {
			return nil
		}
	}
	return fmt.Errorf("mount propagation: / is not a shared mount (%s)", strings.Join(root, " "))
}

// machineID says why the file at path is not a machine-id(5), 32 lowercase
// hex digits and a newline (the kubelet's Node machineID), or nil.
func machineID(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("machine-id: %w", err)
	}
	id := strings.TrimSuffix(string(b), "\n")
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return fmt.Errorf("machine-id: %s holds %q, not 32 lowercase hex digits", path, b)
	}
	return nil
}
