package image

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image/kernel"
)

// TestCheckOutputModules: with Debian's kernel, the default spec's modules
// boot every output; README's short example (no sr_mod, sd_mod or
// usb-storage, nor loop) is refused with what each missing module is for.
func TestCheckOutputModules(t *testing.T) {
	cache, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, err := kernel.Resolve(context.Background(), kernel.Source{Arch: "amd64"}, cache, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("resolving Debian's kernel: %v", err)
	}
	def, err := LoadSpec("")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := k.Select(def.Modules)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkOutputModules([]string{OutputISO, OutputRaw, OutputNetboot}, mods, k); err != nil {
		t.Errorf("the default spec: %v", err)
	}
	short, err := k.Select([]string{"virtio_pci", "virtio_blk", "nvme", "ahci", "squashfs", "overlay", "isofs", "virtio_net", "e1000e", "br_netfilter"})
	if err != nil {
		t.Fatal(err)
	}
	err = checkOutputModules([]string{OutputISO, OutputRaw, OutputNetboot}, short, k)
	for _, w := range []string{"sr_mod (the ISO as a CD)", "usb_storage (the ISO written to a USB stick)", "sd_mod", "loop", "print-default-spec"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("README's short list for an ISO: %v, want it to say %q", err, w)
		}
	}
	if err := checkOutputModules([]string{OutputNetboot}, short, k); err == nil || !strings.Contains(err.Error(), "loop (the downloaded system image file)") {
		t.Errorf("netboot without loop: %v", err)
	}
	withLoop, err := k.Select([]string{"squashfs", "overlay", "loop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkOutputModules([]string{OutputNetboot}, withLoop, k); err != nil {
		t.Errorf("netboot with squashfs, overlay and loop: %v", err)
	}
}
