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
	k, def := debianKernelAndDefaultSpec(t)
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

// TestCheckOutputModulesNeedsDmVerity: the ISO and the raw disk carry a
// dm-verity hash tree and etoile.verity= on their command lines, so a
// module list without dm_verity (the default spec's, less dm_mod and
// dm_verity) is refused for them, naming it and what it is for; netboot
// needs none. dm_verity alone brings dm_mod, dm_bufio and reed_solomon
// from modules.dep.
func TestCheckOutputModulesNeedsDmVerity(t *testing.T) {
	k, def := debianKernelAndDefaultSpec(t)
	var names []string
	for _, m := range def.Modules {
		if m != "dm_verity" && m != "dm_mod" {
			names = append(names, m)
		}
	}
	mods, err := k.Select(names)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{OutputISO, OutputRaw} {
		err := checkOutputModules([]string{out}, mods, k)
		if err == nil || !strings.Contains(err.Error(), "dm_verity (the system image checked by dm-verity against etoile.verity=)") {
			t.Errorf("%s without dm_verity: %v", out, err)
		}
	}
	if err := checkOutputModules([]string{OutputNetboot}, mods, k); err != nil {
		t.Errorf("netboot without dm_verity: %v", err)
	}
	withVerity, err := k.Select(append(names, "dm_verity"))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkOutputModules([]string{OutputISO, OutputRaw}, withVerity, k); err != nil {
		t.Errorf("with dm_verity: %v", err)
	}
	have := map[string]bool{}
	for _, m := range withVerity {
		have[m.Name] = true
	}
	for _, dep := range []string{"dm_mod", "dm_bufio", "reed_solomon"} {
		if !have[dep] && !k.Builtin(dep) {
			t.Errorf("dm_verity selected without %s", dep)
		}
	}
}

// debianKernelAndDefaultSpec resolves Debian's kernel from the cache and
// loads the default spec.
func debianKernelAndDefaultSpec(t *testing.T) (*kernel.Kernel, *ImageSpec) {
	t.Helper()
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
	return k, def
}
