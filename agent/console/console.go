// Package console writes the lines operators and tests wait for (ready,
// error) on every console the kernel was given (console=tty0
// console=ttyS0…), not only on /dev/console, which reaches just the last one.
package console

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Active lists the console device names from sysDir/class/tty/console/active
// ("tty0 ttyS0"). The kernel lists the preferred console (/dev/console) last.
func Active(sysDir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(sysDir, "class", "tty", "console", "active"))
	if err != nil {
		return nil, fmt.Errorf("reading the active consoles: %w", err)
	}
	var names []string
	for _, n := range strings.Fields(string(b)) {
		// A name is a device under /dev; refuse anything that is not.
		if n == "." || n == ".." || strings.ContainsAny(n, `/\`) {
			continue
		}
		names = append(names, n)
	}
	return names, nil
}

// Broadcaster writes whole lines to each console.
type Broadcaster struct {
	SysDir string // "/sys" or DIR/sys
	DevDir string // "/dev" or DIR/dev
	// Fallback receives the line when no console can be written (no /sys
	// yet, or a tree without consoles), so that the line is never lost.
	Fallback io.Writer
}

// Println writes line (a newline is added) once on every active console and
// returns the names it reached. A console that cannot be opened is skipped:
// one broken serial port must not hide the line from the screen. A console
// device gets the line through its queue (see Queued) and Println returns
// at once, whatever the console does; a console that is a regular file
// (under --root, in tests) is written before Println returns.
func (b Broadcaster) Println(line string) ([]string, error) {
	names, err := cachedActive(b.SysDir)
	var reached []string
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		path := filepath.Join(b.DevDir, n)
		q, err := pathQueue(n, path)
		if err == nil && q != nil {
			q.add(line + "\n")
		} else if err == nil {
			err = appendLine(path, line)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		reached = append(reached, n)
	}
	if len(reached) == 0 && b.Fallback != nil {
		_, err := io.WriteString(b.Fallback, line+"\n")
		return nil, errors.Join(append(errs, err)...)
	}
	return reached, nil
}

// appendLine writes line to a console that is a file.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	// The tty's ONLCR (on by default) turns \n into \r\n for serial lines.
	_, err = io.WriteString(f, line+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// activeFor is how long cachedActive's list is used before it is read again:
// a console whose driver loads late (hvc0 with virtio_console) is written
// from then on, without a read of sysfs for every line.
const activeFor = time.Second

var active struct {
	mu    sync.Mutex
	bySys map[string]activeList
}

type activeList struct {
	names []string
	at    time.Time
}

// cachedActive is Active, read again at most every activeFor. An error is
// not kept: /sys may be mounted by the next line.
func cachedActive(sysDir string) ([]string, error) {
	active.mu.Lock()
	defer active.mu.Unlock()
	if l, ok := active.bySys[sysDir]; ok && time.Since(l.at) < activeFor {
		return l.names, nil
	}
	names, err := Active(sysDir)
	if err != nil {
		return nil, err
	}
	if active.bySys == nil {
		active.bySys = map[string]activeList{}
	}
	active.bySys[sysDir] = activeList{names: names, at: time.Now()}
	return names, nil
}

// NoFlowControl turns the software flow control of each active console off
// (IXON cleared): the kernel's serial consoles honour XON/XOFF by default,
// and one XOFF byte — from a BMC's serial-over-LAN, line noise, or Ctrl-S
// at a terminal — would stop that console's output until an XON came: the
// ready line and a shutdown's lines would wait in its queue, or be
// dropped. It returns the consoles it changed; one that is not a terminal
// is skipped.
func NoFlowControl(sysDir, devDir string) ([]string, error) {
	names, err := Active(sysDir)
	if err != nil {
		return nil, err
	}
	var changed []string
	var errs []error
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join(devDir, n), os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		if err == nil && t.Iflag&unix.IXON != 0 {
			t.Iflag &^= unix.IXON
			if err = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err == nil {
				changed = append(changed, n)
			} else {
				errs = append(errs, fmt.Errorf("%s: turning XON/XOFF off: %w", n, err))
			}
		}
		f.Close()
	}
	return changed, errors.Join(errs...)
}
