package sysimage

import "golang.org/x/sys/unix"

// freeBytes is the room left on the file system holding dir (a tmpfs: the
// memory it may still take), or -1 when it cannot be told.
func freeBytes(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}
