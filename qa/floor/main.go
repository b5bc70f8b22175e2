// Command floor is the trivial init the boot benchmarks measure against: it
// prints one line with the seconds since the kernel started and then idles. The
// time a VM takes to show that line is what firmware, boot loader, kernel and
// initramfs unpacking cost before any of Étoile's own work begins.
package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/kmsg"
)

// ReadyPrefix starts the line the harness waits for.
const ReadyPrefix = "etoile-floor: ready"

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "etoile-floor:", err)
	}
	// After the line that is measured: how the kernel's clock started.
	if recs, err := kmsg.Read(KmsgPath); err == nil {
		clockLine(os.Stdout, recs)
	}
	// PID 1 must never exit: the kernel panics when it does.
	for {
		time.Sleep(time.Hour)
	}
}

// KmsgPath is the kernel log's device node, which the floor's initramfs holds.
const KmsgPath = "/dev/kmsg"

// clockLine prints whether the kernel's clock started late in this boot
// (kmsg.ClockStartedLate), which the harness shows beside the floor's t=.
func clockLine(w io.Writer, recs []kmsg.Record) {
	if c, ok := kmsg.ClockStart(recs); ok {
		fmt.Fprintf(w, "etoile-floor: kernel_clock=%s\n", c)
	}
}

func run(w io.Writer) error {
	// CLOCK_BOOTTIME starts with the kernel, like the agent's t= values.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	secs := float64(ts.Sec) + float64(ts.Nsec)/1e9
	_, err := fmt.Fprintf(w, "\n%s t=%.2fs\n", ReadyPrefix, secs)
	return err
}
