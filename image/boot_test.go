package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/etoile-os/etoile/image/kernel"
)

// isoInputs makes small stand-ins for what writeISO puts on the ISO (an
// arch without a BIOS path, so no ISOLINUX is needed).
func isoInputs(t *testing.T) (work string, arch Arch, k *kernel.Kernel, initrd, system string, boot bootFiles) {
	t.Helper()
	work = t.TempDir()
	mk := func(name, body string) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	arch = Arch{Name: "amd64", EFIBootName: "BOOTX64.EFI", SystemdBoot: "systemd-bootx64.efi", Serial: "ttyS0"}
	k = &kernel.Kernel{Version: "6.1.0-test", Vmlinuz: mk("vmlinuz", "kernel")}
	boot = bootFiles{systemdBoot: mk("systemd-boot.efi", "boot")}
	return work, arch, k, mk("initrd.img", "initrd"), mk("system.sqfs", "system"), boot
}

// TestISORefusesFilesOver4GiB: ISO9660 keeps a file's size in 32 bits; a
// system image of 4 GiB or more is refused, saying its size and the
// outputs that can carry it, instead of landing on the ISO truncated.
func TestISORefusesFilesOver4GiB(t *testing.T) {
	work, arch, k, initrd, system, boot := isoInputs(t)
	// Sparse: no 4 GiB is written.
	if err := os.Truncate(system, 1<<32); err != nil {
		t.Fatal(err)
	}
	b := &Builder{Spec: &ImageSpec{Arch: "amd64"}, Epoch: 1}
	dst := filepath.Join(work, "etoile.iso")
	err := b.writeISO(dst, work, arch, k, initrd, system, boot, "1", "quiet")
	if err == nil {
		t.Fatal("a 4 GiB system image was put on the ISO")
	}
	for _, want := range []string{"system image", "4294967296 bytes", "raw", "netboot", "outputs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := os.Stat(dst); err == nil {
		t.Errorf("%s was written", dst)
	}
	// One byte less fits.
	if err := os.Truncate(system, 1<<32-1); err != nil {
		t.Fatal(err)
	}
	if err := checkISOSizes(map[string]string{"the system image": system}); err != nil {
		t.Errorf("4 GiB - 1: %v", err)
	}
}

// TestISOConfigOnlyRootReads: the machine config baked into the ISO (the
// cluster token, registry passwords) is mode 0400 in its Rock Ridge
// entry, the rest stays world-readable.
func TestISOConfigOnlyRootReads(t *testing.T) {
	work, arch, k, initrd, system, boot := isoInputs(t)
	t.Setenv("TMPDIR", work)
	b := &Builder{Spec: &ImageSpec{Arch: "amd64"}, Epoch: 1, MachineConfig: []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n")}
	dst := filepath.Join(work, "etoile.iso")
	if err := b.writeISO(dst, work, arch, k, initrd, system, boot, "1", "quiet"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	iso, err := iso9660.Read(file.New(f, true), st.Size(), 0, 2048)
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{}
	ents, err := iso.ReadDir("etoile")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		modes[strings.ToLower(e.Name())] = info.Mode().Perm()
	}
	if got, ok := modes["config.yaml"]; !ok || got != 0o400 {
		t.Errorf("/etoile/config.yaml mode %v (present %v), want 0400 (entries %v)", got, ok, modes)
	}
	if got := modes["system.sqfs"]; got != 0o444 {
		t.Errorf("/etoile/system.sqfs mode %v, want 0444", got)
	}
}
