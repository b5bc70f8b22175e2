package k3s

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ContainerdDir is containerd's root under K3s's data-dir
// (/var/lib/rancher/k3s, which Étoile fixes): image contents and the
// snapshots containers run on.
const ContainerdDir = "/var/lib/rancher/k3s/agent/containerd"

// PrepareContainerdDir makes ContainerdDir a file system containerd can
// keep containers on. The system's root is an overlay (the read-only system
// image under a tmpfs), and containerd's default overlayfs snapshotter
// cannot stack its layers on an overlay: K3s would refuse to start
// ("overlayfs" snapshotter cannot be enabled). When ContainerdDir is on an
// overlay, a tmpfs is mounted there (in memory, as the rest of the node's
// writes); the rest of the data-dir (the image's airgap archives and
// manifests) stays as it is. A ContainerdDir already on another file system
// (mounted before, a persistent disk) is left alone. It returns whether it
// mounted.
func PrepareContainerdDir(root string) (bool, error) {
	dir := filepath.Join(root, ContainerdDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("creating %s: %w", ContainerdDir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("reading the file system of %s: %w", ContainerdDir, err)
	}
	if st.Type != unix.OVERLAYFS_SUPER_MAGIC {
		return false, nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return false, fmt.Errorf("mounting a tmpfs at %s for K3s's containers (the root is an overlay, which containerd cannot stack on): %w", ContainerdDir, err)
	}
	return true, nil
}
