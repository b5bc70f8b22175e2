package kernel

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// extraFromKernel copies one of the real kernel's modules into dir at rel,
// as an extension would ship an out-of-tree driver, after applying edit to
// its bytes (nil: as it is).
func extraFromKernel(t *testing.T, k *Kernel, name, dir, rel string, edit func([]byte) []byte) {
	t.Helper()
	mods, err := k.Select([]string{name})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(mods, func(m Module) bool { return m.Name == name })
	if i < 0 {
		t.Fatalf("Select(%s) did not return it", name)
	}
	data, err := os.ReadFile(mods[i].Source)
	if err != nil {
		t.Fatal(err)
	}
	if mods[i].Compression != "" {
		t.Fatalf("%s is compressed (%s) in this kernel package; the test edits plain modules", name, mods[i].Compression)
	}
	if edit != nil {
		data = edit(data)
	}
	dst := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceSameLength swaps old for new (same length) in a module's bytes.
func replaceSameLength(t *testing.T, old, new string) func([]byte) []byte {
	return func(b []byte) []byte {
		if len(old) != len(new) || !bytes.Contains(b, []byte(old)) {
			t.Fatalf("cannot replace %q by %q in the module", old, new)
		}
		return bytes.ReplaceAll(b, []byte(old), []byte(new))
	}
}

func readIndex(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMergeExtrasRealModule lays an extension's driver (the kernel's own
// 8139cp, standing in for an out-of-tree one) over an initramfs that lacks
// it and its dependency: the merged index names the initramfs's modules
// where the initramfs keeps them, the extra with its alias, and mii, which
// is copied in from the kernel package.
func TestMergeExtrasRealModule(t *testing.T) {
	k := realKernel(t)
	initramfs, err := k.Select([]string{"virtio_net", "e1000", "squashfs"})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(initramfs, func(m Module) bool { return m.Name == "mii" || m.Name == "8139cp" }) {
		t.Fatal("the initramfs set must lack 8139cp and mii for this test")
	}
	dir := t.TempDir()
	extraFromKernel(t, k, "8139cp", dir, "extra/realtek/8139cp.ko", nil)
	// What a depmod run inside the extension's build left behind.
	for _, f := range []string{"modules.dep", "modules.dep.bin", "modules.alias.bin"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("stale"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ex, err := k.MergeExtras(dir, initramfs, ".zst", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ex.Modules, []string{"8139cp"}) || !slices.Equal(ex.FromKernel, []string{"mii"}) || len(ex.Overrides) != 0 {
		t.Errorf("Extras = %+v, want modules [8139cp], from kernel [mii], no overrides", ex)
	}
	if !slices.Equal(ex.Replaced, []string{"modules.alias.bin", "modules.dep", "modules.dep.bin"}) {
		t.Errorf("Replaced = %v", ex.Replaced)
	}
	for _, f := range []string{"modules.dep.bin", "modules.alias.bin", "modules.builtin.bin"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || !bytes.HasPrefix(b, []byte{0xB0, 0x07, 0xF4, 0x57}) {
			t.Errorf("%s is not a fresh kmod index (%v): %.20q", f, err, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "kernel/drivers/net/mii.ko")); err != nil {
		t.Errorf("mii not copied in from the kernel: %v", err)
	}
	dep := readIndex(t, dir, "modules.dep")
	for _, want := range []string{
		"extra/realtek/8139cp.ko: kernel/drivers/net/mii.ko\n",
		"kernel/drivers/net/mii.ko:\n",
	} {
		if !strings.Contains(dep, want) {
			t.Errorf("modules.dep lacks %q:\n%s", want, dep)
		}
	}
	// The initramfs's own lines, as its index has them.
	initIndex, err := IndexFiles(initramfs, ".zst")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(initIndex["modules.dep"])), "\n") {
		if !strings.Contains(dep, line+"\n") {
			t.Errorf("modules.dep lacks the initramfs's line %q:\n%s", line, dep)
		}
	}
	alias := readIndex(t, dir, "modules.alias")
	if !strings.Contains(alias, "alias pci:v000010ECd00008139sv*sd*bc*sc*i* 8139cp\n") || !strings.Contains(alias, " e1000\n") {
		t.Errorf("modules.alias lacks 8139cp's or e1000's aliases:\n%s", alias)
	}
	if b := readIndex(t, dir, "modules.builtin"); !strings.Contains(b, "kernel/") {
		t.Errorf("modules.builtin is not the kernel's: %q", b)
	}
}

// TestMergeExtrasOverride: an extension's module with the name of one of the
// initramfs's (a vendor's newer NIC driver) is what the merged index names.
func TestMergeExtrasOverride(t *testing.T) {
	k := realKernel(t)
	initramfs, err := k.Select([]string{"e1000"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	extraFromKernel(t, k, "e1000", dir, "updates/e1000.ko", nil)
	ex, err := k.MergeExtras(dir, initramfs, ".zst", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ex.Overrides, []string{"e1000"}) {
		t.Errorf("Overrides = %v, want [e1000]", ex.Overrides)
	}
	dep := readIndex(t, dir, "modules.dep")
	if !strings.Contains(dep, "updates/e1000.ko:") || strings.Contains(dep, "e1000.ko.zst") {
		t.Errorf("modules.dep does not name the extension's e1000 alone:\n%s", dep)
	}
}

// TestMergeExtrasRefuses: a module built for another kernel, one that needs
// a module nobody has, a file that is no module, and two modules of one
// name are build errors naming the file and what to do.
func TestMergeExtrasRefuses(t *testing.T) {
	k := realKernel(t)
	other := strings.Replace(k.Version, k.Version[len(k.Version)-len("-amd64")-2:len(k.Version)-len("-amd64")], "99", 1)
	if len(other) != len(k.Version) || other == k.Version {
		t.Fatalf("cannot make another release name of %s's length: %s", k.Version, other)
	}
	cases := []struct {
		name  string
		setup func(dir string)
		want  []string
	}{
		{"other kernel", func(dir string) {
			extraFromKernel(t, k, "8139cp", dir, "extra/8139cp.ko", replaceSameLength(t, "vermagic="+k.Version, "vermagic="+other))
		}, []string{"extra/8139cp.ko", "built for kernel " + other, "image's kernel is " + k.Version, "linux-headers-" + k.Version}},
		{"missing dependency", func(dir string) {
			extraFromKernel(t, k, "8139cp", dir, "extra/8139cp.ko", replaceSameLength(t, "depends=mii\x00", "depends=zzz\x00"))
		}, []string{"extra/8139cp.ko", "needs module zzz", "neither in the extensions nor in kernel " + k.Version, "add zzz"}},
		{"not a module", func(dir string) {
			if err := os.WriteFile(filepath.Join(dir, "nvidia.ko"), []byte("#!/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"nvidia.ko", "not an ELF kernel module"}},
		{"two of one name", func(dir string) {
			extraFromKernel(t, k, "8139cp", dir, "extra/8139cp.ko", nil)
			extraFromKernel(t, k, "8139cp", dir, "updates/8139cp.ko", nil)
		}, []string{"updates/8139cp.ko", "same module name as extra/8139cp.ko"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.setup(dir)
			_, err := k.MergeExtras(dir, nil, ".zst", nil)
			var me *ExtraModuleError
			if !errors.As(err, &me) {
				t.Fatalf("MergeExtras = %v, want an *ExtraModuleError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err == nil {
				t.Error("modules.dep written despite the error")
			}
		})
	}
}

// TestMergeExtrasEmpty: a folder without modules is left alone.
func TestMergeExtrasEmpty(t *testing.T) {
	k := realKernel(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ex, err := k.MergeExtras(dir, nil, ".zst", nil)
	if err != nil || len(ex.Modules) != 0 {
		t.Fatalf("MergeExtras = %+v, %v", ex, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err == nil {
		t.Error("modules.dep written for a folder without modules")
	}
}

// TestMergeExtrasModulesLoadD: a module the system image's modules-load.d
// names is copied in from the kernel when the initramfs lacks it, nothing
// is written when the initramfs has it, and a name no module has is an
// error naming the file.
func TestMergeExtrasModulesLoadD(t *testing.T) {
	k := realKernel(t)
	initramfs, err := k.Select([]string{"overlay"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lib/modules", k.Version) // made only when needed
	ex, err := k.MergeExtras(dir, initramfs, ".zst", map[string]string{"overlay": "/etc/modules-load.d/a.conf"})
	if err != nil || len(ex.FromKernel) != 0 {
		t.Fatalf("MergeExtras(overlay, in the initramfs) = %+v, %v", ex, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s made with nothing to hold (%v)", dir, err)
	}
	ex, err = k.MergeExtras(dir, initramfs, ".zst", map[string]string{"tcp_bbr": "/etc/modules-load.d/a.conf", "overlay": "/etc/modules-load.d/a.conf"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ex.FromKernel, []string{"tcp_bbr"}) || len(ex.Modules) != 0 {
		t.Errorf("Extras = %+v, want tcp_bbr from the kernel", ex)
	}
	if dep := readIndex(t, dir, "modules.dep"); !strings.Contains(dep, "kernel/net/ipv4/tcp_bbr.ko:") || !strings.Contains(dep, "overlay.ko.zst:") {
		t.Errorf("modules.dep:\n%s", dep)
	}
	// An alias, as systemd-modules-load takes it: the module that has it.
	ex, err = k.MergeExtras(t.TempDir(), initramfs, ".zst", map[string]string{"rtnl-link-vlan": "/etc/modules-load.d/vlan.conf"})
	if err != nil || !slices.Contains(ex.FromKernel, "8021q") {
		t.Errorf("modules-load.d alias rtnl-link-vlan: %+v, %v; want 8021q from the kernel", ex, err)
	}
	_, err = k.MergeExtras(t.TempDir(), initramfs, ".zst", map[string]string{"no_such_module": "/usr/lib/modules-load.d/site.conf"})
	if err == nil || !strings.Contains(err.Error(), "/usr/lib/modules-load.d/site.conf") || !strings.Contains(err.Error(), "names module no_such_module") {
		t.Errorf("unknown modules-load.d name: %v", err)
	}
}

// TestMergeExtrasStaleIndexAlone: an extension that left only a depmod
// index behind (no modules) gets the initramfs's index in its place, so that
// laid over the initramfs's it hides nothing.
func TestMergeExtrasStaleIndexAlone(t *testing.T) {
	k := realKernel(t)
	initramfs, err := k.Select([]string{"overlay"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("extra/gone.ko:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ex, err := k.MergeExtras(dir, initramfs, ".zst", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ex.Replaced, []string{"modules.dep"}) {
		t.Errorf("Replaced = %v", ex.Replaced)
	}
	if dep := readIndex(t, dir, "modules.dep"); strings.Contains(dep, "gone.ko") || !strings.Contains(dep, "overlay.ko.zst:") {
		t.Errorf("modules.dep after the merge:\n%s", dep)
	}
}

// TestMergeExtrasNeverWritesThroughSymlinks: an extension whose modules
// folder holds a symlink out of it (kernel -> a folder on the build
// machine) does not get the kernel's modules copied there.
func TestMergeExtrasNeverWritesThroughSymlinks(t *testing.T) {
	k := realKernel(t)
	initramfs, err := k.Select([]string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	outside := t.TempDir()
	extraFromKernel(t, k, "8139cp", dir, "extra/realtek/8139cp.ko", nil)
	if err := os.Symlink(outside, filepath.Join(dir, "kernel")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.MergeExtras(dir, initramfs, ".zst", nil); err == nil {
		t.Error("MergeExtras wrote mii through a symlink out of the modules folder without an error")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("files written outside the modules folder: %v", ents)
	}
}
