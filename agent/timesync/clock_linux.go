package timesync

import (
	"time"

	"golang.org/x/sys/unix"
)

// KernelClock is the system clock (CLOCK_REALTIME), changed through
// clock_settime and adjtimex.
type KernelClock struct{}

// Now reads the clock.
func (KernelClock) Now() time.Time { return time.Now() }

// Step sets the clock to now + offset.
func (KernelClock) Step(offset time.Duration) error {
	ts := unix.NsecToTimespec(time.Now().Add(offset).UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// Slew has the kernel add offset gradually (adjtime's single-shot mode,
// ±0.5 ms per second).
func (KernelClock) Slew(offset time.Duration) error {
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: offset.Microseconds()}
	_, err := unix.Adjtimex(&tx)
	return err
}

// MarkSynced clears the kernel's "unsynchronised" status and sets its error
// bounds: with the clock synchronised, the kernel copies it to the RTC every
// 11 minutes.
func (KernelClock) MarkSynced(maxError time.Duration) error {
	var cur unix.Timex
	if _, err := unix.Adjtimex(&cur); err != nil {
		return err
	}
	tx := unix.Timex{
		Modes:    unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
		Status:   cur.Status &^ unix.STA_UNSYNC,
		Maxerror: max(maxError.Microseconds(), 1),
		Esterror: max(maxError.Microseconds()/2, 1),
	}
	_, err := unix.Adjtimex(&tx)
	return err
}
