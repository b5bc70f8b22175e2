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

// TestCheckOutputModulesNamesEachOnce: a module two outputs need (loop for
// the ISO and for netboot) is listed once, with what each needs it for.
func TestCheckOutputModulesNamesEachOnce(t *testing.T) {
	err := checkOutputModules([]string{OutputISO, OutputRaw, OutputNetboot}, []kernel.Module{{Name: "isofs"}, {Name: "sr_mod"}}, &kernel.Kernel{})
	if err == nil {
		t.Fatal("no error without squashfs, overlay, loop, sd_mod and usb_storage")
	}
	msg := err.Error()
	for _, name := range []string{"squashfs", "overlay", "loop", "sd_mod", "usb_storage"} {
		if n := strings.Count(msg, " "+name+" ("); n != 1 {
			t.Errorf("%s named %d times in %q, want once", name, n, msg)
		}
	}
	for _, w := range []string{
		"loop (the system image file on the ISO; the downloaded system image file)",
		"sd_mod (the ISO written to a USB stick; a SATA or SCSI boot disk)",
		"squashfs (the system image)",
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
	if strings.Contains(msg, "isofs") || strings.Contains(msg, "sr_mod") {
		t.Errorf("error %q names modules the list has", msg)
	}
}
