package qa

import (
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image"
)

// The netboot scenario and the direct-kernel floors boot with the command line
// the default image's boot loader entries carry after the build's own
// etoile.verity= (and the raw disk's etoile.slot=a): Étoile's consoles, then
// the default spec's kernel.cmdline. A change to one must reach the other, or the
// netboot figures would measure another kernel configuration.
func TestNetbootAppendIsTheDefaultImagesCommandLine(t *testing.T) {
	spec, err := image.ParseSpec(image.DefaultSpecYAML(), ".")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(append([]string{"console=tty0", "console=ttyS0,115200"}, spec.Kernel.Cmdline...), " ")
	if NetbootAppend != want {
		t.Errorf("NetbootAppend = %q, the default image's boot entries have %q", NetbootAppend, want)
	}
}
