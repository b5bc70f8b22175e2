package kmsg

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// Read returns the records the kernel's log (path, normally /dev/kmsg)
// holds now, oldest first, without waiting for more.
func Read(path string) ([]Record, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var raw [][]byte
	buf := make([]byte, 8192)
	for len(raw) < 100000 {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EPIPE: // overwritten while reading: go on from the next
			continue
		case err == unix.EAGAIN: // nothing more for now
			return ParseAll(raw), nil
		case err != nil:
			return ParseAll(raw), err
		case n <= 0:
			return ParseAll(raw), nil
		}
		raw = append(raw, bytes.Clone(buf[:n]))
	}
	return ParseAll(raw), nil
}
