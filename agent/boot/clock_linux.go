package boot

import (
	"fmt"
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
