package console

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

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
