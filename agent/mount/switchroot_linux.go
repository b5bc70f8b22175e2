package mount

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SwitchRoot moves PID 1 from the initramfs into newRoot, the way
// switch_root(8) does, without exec'ing anything: the agent keeps running as
// PID 1 with all its state, and only its view of the filesystem changes.
//
//  1. move each mount in move (/proc, /sys, /dev, /run) under newRoot, so
//     they stay mounted;
//  2. mount --move newRoot onto /, chroot into it, chdir /.
//
// pivot_root cannot be used: the initramfs (rootfs) cannot be pivoted away.
// Unlike switch_root(8), the initramfs's files are not deleted: all it holds
// is the agent and the kernel modules, which the new root keeps using
// through bind mounts (see the boot package), so deleting would free nothing.
//
// Between the first move and the chroot, /proc, /sys, /dev and /run are
// missing from the process's view: the switch waits for the readers that
// hold HoldAPI, and they wait for it.
func (Linux) SwitchRoot(newRoot string, move []string) error {
	var st, rootSt unix.Stat_t
	if err := unix.Stat(newRoot, &st); err != nil {
		return fmt.Errorf("switch root: %s: %w", newRoot, err)
	}
	if err := unix.Stat("/", &rootSt); err != nil {
		return fmt.Errorf("switch root: /: %w", err)
	}
	if st.Dev == rootSt.Dev {
		return fmt.Errorf("switch root: %s is not a mount point", newRoot)
	}
	apiMoving.Lock()
	defer apiMoving.Unlock()
	for _, m := range move {
		dst := filepath.Join(newRoot, m)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("switch root: making %s: %w", dst, err)
		}
		if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("switch root: moving %s to %s: %w", m, dst, err)
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: moving %s onto /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: chdir /: %w", err)
	}
	return nil
}
