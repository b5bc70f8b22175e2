package main

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// checkOverlaySnapshotter does what K3s's containerd does before it uses
// its default overlayfs snapshotter: mount an overlay whose layers are in
// the snapshotter's folder under the data dir. On a file system that cannot
// hold an overlay's upper layer (an overlay itself, as a live system's root
// is) K3s stops with the error returned here, in its wording.
func checkOverlaySnapshotter(dataDir string) error {
	containerd := filepath.Join(dataDir, "agent", "containerd")
	dir := filepath.Join(containerd, "io.containerd.snapshotter.v1.overlayfs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	td, err := os.MkdirTemp(dir, "overlayfs-check")
	if err != nil {
		return err
	}
	defer os.RemoveAll(td)
	for _, d := range []string{"lower1", "lower2", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(td, d), 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", filepath.Join(td, "lower2"), filepath.Join(td, "lower1"),
		filepath.Join(td, "upper"), filepath.Join(td, "work"))
	merged := filepath.Join(td, "merged")
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return fmt.Errorf("%q snapshotter cannot be enabled for %q, try using %q or %q: failed to mount overlay: %w",
			"overlayfs", containerd, "fuse-overlayfs", "native", err)
	}
	return unix.Unmount(merged, 0)
}
