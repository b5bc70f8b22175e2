package k3s

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func fsType(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type
}

// TestPrepareContainerdDirOnOverlay: on a root that is an overlay, as the
// node's is, containerd's root gets a tmpfs, where its overlayfs snapshotter
// can stack its layers; the image's airgap archives stay visible; a second
// call leaves it alone.
func TestPrepareContainerdDirOnOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounting needs root: run the tests as root (make test does, as CI)")
	}
	base := t.TempDir()
	// The lower and upper layers on a tmpfs of their own, as on the node.
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(base, unix.MNT_DETACH) })
	lower, upper, work, root := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "root")
	for _, d := range []string{lower, upper, work, root, filepath.Join(lower, "var/lib/rancher/k3s/agent/images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "var/lib/rancher/k3s/agent/images/site.tar.zst"), []byte("archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", root, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatalf("mounting the overlay root: %v (is the overlay module loaded? modprobe overlay)", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	state := filepath.Join(root, ContainerdDir)
	t.Cleanup(func() { unix.Unmount(state, unix.MNT_DETACH) })
	mounted, err := PrepareContainerdDir(root)
	if err != nil || !mounted {
		t.Fatalf("PrepareContainerdDir = %v, %v; want a tmpfs mounted", mounted, err)
	}
	if got := fsType(t, state); got != unix.TMPFS_MAGIC {
		t.Errorf("%s is on file system %#x, want tmpfs", ContainerdDir, got)
	}
	if b, err := os.ReadFile(filepath.Join(root, "var/lib/rancher/k3s/agent/images/site.tar.zst")); err != nil || string(b) != "archive" {
		t.Errorf("the image's airgap archive is hidden: %q, %v", b, err)
	}
	// What containerd checks: an overlay whose upper layer is in the state dir.
	snap := filepath.Join(state, "io.containerd.snapshotter.v1.overlayfs/check")
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(snap, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("overlay", filepath.Join(snap, "merged"), "overlay", 0,
		"lowerdir="+filepath.Join(snap, "lower")+",upperdir="+filepath.Join(snap, "upper")+",workdir="+filepath.Join(snap, "work")); err != nil {
		t.Errorf("an overlay in the state dir cannot be mounted: %v", err)
	} else {
		unix.Unmount(filepath.Join(snap, "merged"), 0)
	}
	if mounted, err := PrepareContainerdDir(root); err != nil || mounted {
		t.Errorf("second PrepareContainerdDir = %v, %v; want it left alone", mounted, err)
	}
	// Not on an overlay (this test's tmpfs): nothing to do.
	if mounted, err := PrepareContainerdDir(filepath.Join(base, "plain")); err != nil || mounted {
		t.Errorf("PrepareContainerdDir on a plain folder = %v, %v; want nothing mounted", mounted, err)
	}
}
