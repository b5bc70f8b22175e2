//go:build !linux

package k3s

// ContainerdDir is containerd's root under K3s's data-dir (see the Linux build).
const ContainerdDir = "/var/lib/rancher/k3s/agent/containerd"

// PrepareContainerdDir does nothing off Linux.
func PrepareContainerdDir(string) (bool, error) { return false, nil }
