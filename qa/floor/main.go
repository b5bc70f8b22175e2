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
)

// ReadyPrefix starts the line the harness waits for.
const ReadyPrefix = "etoile-floor: ready"

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "etoile-floor:", err)
	}
	// PID 1 must never exit: the kernel panics when it does.
	for {
		time.Sleep(time.Hour)
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
