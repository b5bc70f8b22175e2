package boot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/agent/kmod"
	"github.com/etoile-os/etoile/agent/mount"
)

// veritySquashfs is fakeroot.VeritySquashfs's image read back, and its
// etoile.verity= value.
func veritySquashfs(t *testing.T, fill byte) (string, string) {
	t.Helper()
	p, tree := fakeroot.VeritySquashfs(t, 2*4096+7, fill)
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(img), strings.TrimPrefix(tree.Cmdline(), "etoile.verity=")
}

// TestBootPicksTheMediumByRootHash: two Étoile ISOs (a stick of an older
// build at sda, the booted CD at sr0) and no firmware variable naming the
// boot disk (BIOS): the medium whose hash tree gives etoile.verity='s root
// hash is used, not the first by name, whose image the mount would have
// found "damaged". With a root hash neither has, the first, with a warning.
func TestBootPicksTheMediumByRootHash(t *testing.T) {
	older, _ := veritySquashfs(t, 1)
	booted, arg := veritySquashfs(t, 2)
	_, neither := veritySquashfs(t, 3)
	for _, c := range []struct {
		verity, want, log string
	}{
		{arg, "sr0", "using the one whose dm-verity tree has the command line's root hash"},
		{neither, "sda", "the firmware does not say which one booted: using the first"},
	} {
		root := machineRoot(t, "console=ttyS0 etoile.verity="+c.verity)
		fakeroot.Block(t, root, "sda", false, "", fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": older}))
		fakeroot.Block(t, root, "sr0", false, "", fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": booted}))
		var out bytes.Buffer
		m := New(Options{Root: root, Stdout: &out, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.01})
		if _, err := m.Boot(context.Background()); err != nil {
			t.Fatalf("boot failed: %v\n%s", err, out.String())
		}
		if m.Device != filepath.Join(root, "dev", c.want) || !strings.Contains(out.String(), c.log) || !strings.Contains(out.String(), "all=sda,sr0") {
			t.Errorf("etoile.verity=%.12s…: device %s, want %s and the line %q naming both\n%s", c.verity, m.Device, c.want, c.log, out.String())
		}
	}
}
