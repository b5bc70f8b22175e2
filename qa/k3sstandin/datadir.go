package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// dataName is the folder under <data-dir>/data the stand-in unpacks into,
// as K3s names its by the hash of its bundled data.
var dataName = "standin-" + version

// busyboxStandIn is what the stand-in writes where K3s's data holds
// k3s-root's busybox (bin/busybox, the shell /bin/sh links to on Étoile):
// a marker, not a shell. Only the path is tested.
const busyboxStandIn = "etoile-k3s-standin: stands where K3s unpacks k3s-root's busybox; not a shell\n"

// unpackData does what K3s's extract does before it runs: unless
// <data-dir>/data/<name>/bin holds its files already, it writes them there
// and points the link <data-dir>/data/current at that folder (the link
// before it is kept as data/previous). It returns the folder.
func unpackData(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "data", dataName)
	if _, err := os.Stat(filepath.Join(dir, "bin", "busybox")); err == nil {
		return dir, nil
	}
	tmp := dir + "-tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Join(tmp, "bin"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "bin", "busybox"), []byte(busyboxStandIn), 0o755); err != nil {
		return "", err
	}
	current, previous := filepath.Join(dataDir, "data", "current"), filepath.Join(dataDir, "data", "previous")
	if _, err := os.Lstat(current); err == nil {
		if err := os.Rename(current, previous); err != nil {
			return "", err
		}
	}
	if err := os.Symlink(dir, current); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("unpacking the data into %s: %w", dir, err)
	}
	return dir, nil
}

// shellIsK3s says why /bin/sh (under root) is not K3s's shell, or nil: the
// link Étoile's image makes to <data-dir>/data/current/bin/busybox, which
// k3s-root's #!/bin/sh scripts (its iptables) need.
func shellIsK3s(root, dataDir string) error {
	sh, err := filepath.EvalSymlinks(filepath.Join(root, "bin", "sh"))
	if err != nil {
		return fmt.Errorf("/bin/sh: %w (K3s's iptables are #!/bin/sh scripts)", err)
	}
	want, err := filepath.EvalSymlinks(filepath.Join(dataDir, "data", "current", "bin", "busybox"))
	if err != nil {
		return fmt.Errorf("K3s's busybox: %w", err)
	}
	if sh != want {
		return fmt.Errorf("/bin/sh is %s, not K3s's busybox %s", sh, want)
	}
	return nil
}
