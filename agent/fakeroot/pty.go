package fakeroot

import (
	"bufio"
	"os"
	"strconv"
	"strings"
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

// StoppedPty is Pty standing in for a console whose output is stopped, as
// Scroll Lock stops a screen's (the kernel's stop_tty) or a serial line with
// RTS/CTS and no CTS stops it: XON/XOFF is off (console.NoFlowControl's
// doing) and writes to it wait all the same. start lets its output go
// again; its lines are then read from lines (without the tty's \r).
func StoppedPty(t testing.TB) (tty *os.File, path string, start func(), lines <-chan string) {
	t.Helper()
	m, s, path := Pty(t)
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Iflag &^= unix.IXON
	if err := unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetInt(int(s.Fd()), unix.TCXONC, unix.TCOOFF); err != nil {
		t.Fatal(err)
	}
	c := make(chan string, 10000)
	go func() {
		r := bufio.NewReader(m)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			c <- strings.TrimRight(l, "\r\n")
		}
	}()
	start = func() {
		if err := unix.IoctlSetInt(int(s.Fd()), unix.TCXONC, unix.TCOON); err != nil {
			t.Fatal(err)
		}
	}
	return s, path, start, c
}
