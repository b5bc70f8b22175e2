package boot

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Clock tells the time since the kernel started. It is a seam so that tests
// see fixed times.
type Clock interface {
	SinceBoot() time.Duration
}

// BootClock reads CLOCK_BOOTTIME, which starts at zero when the kernel does
// (the kernel's own console timestamps count from the same origin) and keeps
// counting through suspend.
type BootClock struct{}

// SinceBoot returns the time since kernel start, or 0 if the clock cannot be read.
func (BootClock) SinceBoot() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Seconds formats a time since boot the way step lines show it ("0.41s").
func Seconds(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// InitRan finds, in the kernel's log records (as /dev/kmsg gives them, one
// per read), the "Run /init as init process" line, and returns its
// timestamp: when the kernel ran the agent as /init, before the Go runtime
// and package initialisation. The timestamp is the third field of a record's
// prefix, in microseconds since kernel start (Documentation/ABI/testing/dev-kmsg).
func InitRan(records [][]byte) (time.Duration, bool) {
	for _, r := range records {
		prefix, msg, ok := bytes.Cut(r, []byte(";"))
		if !ok || !bytes.HasPrefix(msg, []byte("Run ")) || !bytes.Contains(msg, []byte(" as init process")) {
			continue
		}
		f := strings.Split(string(prefix), ",")
		if len(f) < 3 {
			continue
		}
		us, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		return time.Duration(us) * time.Microsecond, true
	}
	return 0, false
}

// readKmsg returns the kernel log records /dev/kmsg holds now.
func readKmsg(path string) ([][]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out [][]byte
	buf := make([]byte, 8192)
	for len(out) < 100000 {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EPIPE: // overwritten while reading: go on from the next
			continue
		case err == unix.EAGAIN: // nothing more for now
			return out, nil
		case err != nil:
			return out, err
		case n <= 0:
			return out, nil
		}
		out = append(out, bytes.Clone(buf[:n]))
	}
	return out, nil
}
