package nvdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Make creates the nodes under dev (normally /dev), as nvidia-modprobe
// does: a file that is already the right character device keeps its
// place (its owner and mode are set again); anything else at that path is
// replaced. It returns the paths it created or corrected, and the first
// error after trying every node.
func Make(dev string, nodes []Node) (changed []string, err error) {
	for _, n := range nodes {
		p := filepath.Join(dev, n.Path)
		c, e := makeOne(p, n)
		if c {
			changed = append(changed, p)
		}
		if e != nil && err == nil {
			err = e
		}
	}
	return changed, err
}

func makeOne(p string, n Node) (changed bool, err error) {
	want := unix.Mkdev(n.Major, n.Minor)
	var st unix.Stat_t
	switch e := unix.Lstat(p, &st); {
	case e == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && uint64(st.Rdev) == want:
		if st.Mode&0o7777 == uint32(n.Mode.Perm()) && int(st.Uid) == n.UID && int(st.Gid) == n.GID {
			return false, nil
		}
		changed = true
	case e == nil:
		if err := os.Remove(p); err != nil {
			return false, fmt.Errorf("replacing %s (not the device %d:%d): %w", p, n.Major, n.Minor, err)
		}
		fallthrough
	case errors.Is(e, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return false, err
		}
		if err := unix.Mknod(p, unix.S_IFCHR|uint32(n.Mode.Perm()), int(want)); err != nil {
			return false, fmt.Errorf("making %s (%d:%d): %w", p, n.Major, n.Minor, err)
		}
		changed = true
	default:
		return false, e
	}
	// mknod's mode passes through the umask: set it, and the owner, exactly.
	if err := os.Chmod(p, n.Mode.Perm()); err != nil {
		return changed, err
	}
	if err := os.Lchown(p, n.UID, n.GID); err != nil {
		return changed, err
	}
	return changed, nil
}
