package kmsg

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// maxRecords is how many of the newest records Read keeps.
const maxRecords = 100000

// Read returns the records the kernel's log (path, normally /dev/kmsg)
// holds now, oldest first (the newest maxRecords of them), without waiting
// for more.
func Read(path string) ([]Record, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var raw [][]byte
	newest := func() []Record { return ParseAll(raw[max(0, len(raw)-maxRecords):]) }
	buf := make([]byte, 8192)
	for reads := 0; reads < 10*maxRecords; reads++ {
		if len(raw) == 2*maxRecords {
			raw = append(raw[:0:0], raw[maxRecords:]...)
		}
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EPIPE: // overwritten while reading: go on from the next
			continue
		case err == unix.EAGAIN: // nothing more for now
			return newest(), nil
		case err != nil:
			return newest(), err
		case n <= 0:
			return newest(), nil
		}
		raw = append(raw, bytes.Clone(buf[:n]))
	}
	return newest(), nil
}
