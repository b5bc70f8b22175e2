package console

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

func TestBroadcast(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		// The kernel lists every console= given; ../x must never be opened.
		"sys/class/tty/console/active": "tty0 ttyS0 ../x hvc0\n",
		"dev/tty0":                     "",
		"dev/ttyS0":                    "",
		// hvc0 is listed but has no node: skipped, the others still get the line.
	})
	var fallback bytes.Buffer
	b := Broadcaster{SysDir: filepath.Join(root, "sys"), DevDir: filepath.Join(root, "dev"), Fallback: &fallback}
	reached, _ := b.Println("etoile: ready version=dev")
	if !slices.Equal(reached, []string{"tty0", "ttyS0"}) {
		t.Errorf("reached %q", reached)
	}
	for _, c := range []string{"tty0", "ttyS0"} {
		if got, _ := os.ReadFile(filepath.Join(root, "dev", c)); string(got) != "etoile: ready version=dev\n" {
			t.Errorf("%s holds %q", c, got)
		}
	}
	if fallback.Len() != 0 {
		t.Errorf("fallback used although consoles were reached: %q", fallback.String())
	}
	// No sysfs yet (an error before /sys is mounted): the line goes to the fallback.
	b.SysDir = filepath.Join(root, "nosys")
	if _, err := b.Println("etoile: error step=mount-api"); err == nil || fallback.String() != "etoile: error step=mount-api\n" {
		t.Errorf("fallback got %q, err %v", fallback.String(), err)
	}
}

// TestNoFlowControl: a console (a pseudo-terminal stands in for the serial
// port) that honours XON/XOFF has it turned off, so that an XOFF byte from
// the other side cannot block the agent's writes; a console that is not a
// terminal is skipped.
func TestNoFlowControl(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	sys, dev := filepath.Join(root, "sys"), filepath.Join(root, "dev")
	if err := os.MkdirAll(filepath.Join(sys, "class/tty/console"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sys, "class/tty/console/active"), []byte("tty0 ttyS0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	slave := fmt.Sprintf("/dev/pts/%d", n)
	if err := os.Symlink(slave, filepath.Join(dev, "ttyS0")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dev, "tty0"), nil, 0o600); err != nil { // not a terminal
		t.Fatal(err)
	}
	s, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Iflag |= unix.IXON
	if err := unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	changed, err := NoFlowControl(sys, dev)
	if err != nil || len(changed) != 1 || changed[0] != "ttyS0" {
		t.Errorf("NoFlowControl changed %v, err %v; want ttyS0 only", changed, err)
	}
	if tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS); err != nil || tio.Iflag&unix.IXON != 0 {
		t.Errorf("ttyS0 still honours XON/XOFF (iflag %#o, %v)", tio.Iflag, err)
	}
}
