package fakeroot

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Pty opens a pseudo-terminal, standing in for a console: its master side
// (what a terminal on the other end of a serial line reads) and its slave
// side, the tty, kept open as the kernel keeps PID 1's console open, and
// its path. Both are closed when the test ends.
func Pty(t testing.TB) (master, tty *os.File, path string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	path = "/dev/pts/" + strconv.Itoa(n)
	s, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s, path
}
