package kernel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// fakeKO builds a minimal ELF64 relocatable with a .modinfo section, which
// is all depmod (and scanModules) reads from a module.
func fakeKO(info ...string) []byte {
	var modinfo []byte
	for _, kv := range info {
		modinfo = append(modinfo, kv...)
		modinfo = append(modinfo, 0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	le := binary.LittleEndian
	var b bytes.Buffer
	hdr := make([]byte, 64)
	copy(hdr, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	dataOff := 64
	strOff := dataOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	le.PutUint16(hdr[16:], 1)  // ET_REL
	le.PutUint16(hdr[18:], 62) // EM_X86_64
	le.PutUint32(hdr[20:], 1)
	le.PutUint64(hdr[40:], uint64(shOff))
	le.PutUint16(hdr[52:], 64)
	le.PutUint16(hdr[58:], 64)
	le.PutUint16(hdr[60:], 3)
	le.PutUint16(hdr[62:], 2)
	b.Write(hdr)
	b.Write(modinfo)
	b.Write(shstr)
	b.Write(make([]byte, shOff-b.Len()))
	sh := func(name, typ uint32, flags uint64, off, size int) {
		s := make([]byte, 64)
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[8:], flags)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
		b.Write(s)
	}
	sh(0, 0, 0, 0, 0)
	sh(1, 1, 2, dataOff, len(modinfo)) // .modinfo, PROGBITS, ALLOC
	sh(10, 3, 0, strOff, len(shstr))   // .shstrtab, STRTAB
	return b.Bytes()
}

func compress(t testing.TB, data []byte, comp string) []byte {
	t.Helper()
	var out bytes.Buffer
	switch comp {
	case "":
		return data
	case "xz":
		w, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case "zst":
		w, err := zstd.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	}
	return out.Bytes()
}

type fakeMod struct {
	path string // under lib/modules/<ver>, with suffix
	info []string
}

const fakeVer = "6.1.0-test-amd64"

// fakeTree is a small kernel: compressed and plain modules, a dependency
// chain, a '-' in a file name, an alias-named soft dependency and builtins.
var fakeTree = []fakeMod{
	{"kernel/drivers/block/virtio_blk.ko.xz", []string{"name=virtio_blk", "depends=virtio,virtio_ring", "alias=virtio:d00000002v*"}},
	{"kernel/drivers/virtio/virtio.ko", []string{"name=virtio", "depends="}},
	{"kernel/drivers/virtio/virtio_ring.ko.zst", []string{"name=virtio_ring", "depends=virtio"}},
	{"kernel/drivers/usb/storage/usb-storage.ko.xz", []string{"name=usb_storage", "depends=usbcore,scsi_mod", "alias=usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*"}},
	{"kernel/drivers/usb/core/usbcore.ko", []string{"name=usbcore", "depends=usb-common"}},
	{"kernel/drivers/usb/common/usb-common.ko", []string{"name=usb_common", "depends="}},
	{"kernel/drivers/scsi/scsi_mod.ko", []string{"name=scsi_mod", "depends="}},
	{"kernel/fs/ext4/ext4.ko", []string{"name=ext4", "depends=jbd2", "softdep=pre: crypto-crc32c", "alias=fs-ext4"}},
	{"kernel/fs/jbd2/jbd2.ko", []string{"name=jbd2", "depends="}},
	{"kernel/arch/x86/crypto/crc32c-intel.ko", []string{"name=crc32c_intel", "alias=crypto-crc32c", "alias=crc32c"}},
	{"kernel/drivers/net/ethernet/realtek/r8169.ko", []string{"name=r8169", "softdep=pre: realtek", "softdep=pre: no_such_phy"}},
	{"kernel/net/unused.ko", []string{"name=unused"}},
	{"kernel/lib/crc64.ko", []string{"name=crc64"}},
	{"kernel/lib/crc64-rocksoft.ko", []string{"name=crc64_rocksoft", "depends=crc64", "softdep=pre: crc64"}},
	{"kernel/crypto/crc64_rocksoft_generic.ko", []string{"name=crc64_rocksoft_generic", "depends=crc64", "alias=crypto-crc64-rocksoft"}},
}

var fakeBuiltin = "kernel/net/packet/af_packet.ko\nkernel/drivers/pci/pci-stub.ko\n"

// writeFakeKernel lays out root/vmlinuz and root/lib/modules/<ver>.
func writeFakeKernel(t testing.TB, root string, mods []fakeMod) string {
	t.Helper()
	modDir := filepath.Join(root, "lib", "modules", fakeVer)
	for _, m := range mods {
		_, comp := compressionOf(m.path)
		p := filepath.Join(modDir, m.path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, compress(t, fakeKO(m.info...), comp), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(modDir, "modules.builtin"), []byte(fakeBuiltin), 0o644)
	os.WriteFile(filepath.Join(root, "vmlinuz"), fakeBzImage(fakeVer), 0o644)
	return modDir
}

func names(mods []Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

func TestSelect(t *testing.T) {
	// the same selections must come out of a scanned tree and of one with
	// depmod files (written by writeDepmodFiles, as for a cached package)
	for _, layout := range []string{"scanned", "depmod files"} {
		t.Run(layout, func(t *testing.T) {
			root := t.TempDir()
			modDir := writeFakeKernel(t, root, fakeTree)
			if layout == "depmod files" {
				entries, err := scanModules(modDir)
				if err != nil {
					t.Fatal(err)
				}
				if err := writeDepmodFiles(modDir, entries); err != nil {
					t.Fatal(err)
				}
			}
			k, err := Resolve(context.Background(), Source{Dir: root}, "", nil)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if k.Version != fakeVer || k.Vmlinuz != filepath.Join(root, "vmlinuz") || k.ModulesDir != modDir {
				t.Fatalf("kernel = %+v", k)
			}
			for _, tc := range []struct {
				name string
				ask  []string
				want []string
			}{
				{"transitive deps", []string{"virtio_blk"}, []string{"virtio", "virtio_blk", "virtio_ring"}},
				{"dash or underscore", []string{"usb-storage"}, []string{"scsi_mod", "usb_common", "usb_storage", "usbcore"}},
				{"underscore for dashed file", []string{"usb_storage", "usb-common"}, []string{"scsi_mod", "usb_common", "usb_storage", "usbcore"}},
				{"softdep by alias", []string{"ext4"}, []string{"crc32c_intel", "ext4", "jbd2"}},
				{"softdep by name, missing one ignored", []string{"r8169"}, []string{"r8169"}},
				{"builtin yields nothing", []string{"af_packet", "pci_stub"}, nil},
				{"duplicates", []string{"virtio", "virtio", "virtio_ring"}, []string{"virtio", "virtio_ring"}},
				{"undeclared init request (InitRequests)", []string{"crc64_rocksoft"}, []string{"crc64", "crc64_rocksoft", "crc64_rocksoft_generic"}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					mods, err := k.Select(tc.ask)
					if err != nil {
						t.Fatalf("Select(%q): %v", tc.ask, err)
					}
					if got := names(mods); !slices.Equal(got, tc.want) {
						t.Errorf("Select(%q) = %q, want %q", tc.ask, got, tc.want)
					}
				})
			}
			mods, err := k.Select([]string{"virtio_blk"})
			if err != nil {
				t.Fatal(err)
			}
			blk := mods[1]
			if blk.RelPath != "kernel/drivers/block/virtio_blk.ko" || blk.Compression != "xz" ||
				blk.Source != filepath.Join(modDir, "kernel/drivers/block/virtio_blk.ko.xz") {
				t.Errorf("virtio_blk = %+v", blk)
			}
			// modules.dep order: dependents first, so loading from the end works
			if want := []string{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko"}; !slices.Equal(blk.Deps, want) {
				t.Errorf("virtio_blk deps = %q, want %q", blk.Deps, want)
			}
			if !slices.Equal(blk.Aliases, []string{"virtio:d00000002v*"}) {
				t.Errorf("virtio_blk aliases = %q", blk.Aliases)
			}
			for _, m := range mods {
				rc, err := m.Open()
				if err != nil {
					t.Fatalf("Open %s: %v", m.Name, err)
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.HasPrefix(data, []byte("\x7fELF")) || !bytes.Contains(data, []byte("name="+m.Name)) {
					t.Errorf("Open(%s) did not yield the decompressed module (%v)", m.Name, err)
				}
			}
		})
	}
}

func TestSelectReportsAllMissing(t *testing.T) {
	root := t.TempDir()
	writeFakeKernel(t, root, fakeTree)
	k, err := Resolve(context.Background(), Source{Dir: root}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Select([]string{"virtio_blk", "nosuch-one", "af_packet", "nosuch_two"})
	var me *MissingModulesError
	if !errors.As(err, &me) {
		t.Fatalf("Select error = %v, want *MissingModulesError", err)
	}
	if !slices.Equal(me.Names, []string{"nosuch-one", "nosuch_two"}) {
		t.Errorf("missing = %q", me.Names)
	}
	for _, w := range []string{"nosuch-one", "nosuch_two", fakeVer, "modules.dep"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// TestSelectInconsistentFolder: a folder whose modules.dep names a file it
// lacks is the folder's fault, with the fix for a folder (depmod).
func TestSelectInconsistentFolder(t *testing.T) {
	root := t.TempDir()
	modDir := writeFakeKernel(t, root, fakeTree)
	k, err := Resolve(context.Background(), Source{Dir: root}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(modDir, "kernel/fs/jbd2/jbd2.ko")); err != nil {
		t.Fatal(err)
	}
	_, err = k.Select([]string{"ext4"})
	var ie *InconsistentError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "jbd2") || !strings.Contains(err.Error(), "run depmod "+fakeVer) {
		t.Errorf("Select with a module file missing: %v", err)
	}
}

func TestSelectIsDeterministic(t *testing.T) {
	root := t.TempDir()
	writeFakeKernel(t, root, fakeTree)
	k, err := Resolve(context.Background(), Source{Dir: root}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"virtio_blk", "usb-storage", "ext4", "r8169", "unused"}
	first, err := k.Select(all)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		slices.Reverse(all)
		again, _ := k.Select(all)
		if !slices.Equal(names(again), names(first)) {
			t.Fatalf("selection order changed: %q vs %q", names(again), names(first))
		}
	}
	if !slices.IsSorted(names(first)) {
		t.Errorf("selection not sorted: %q", names(first))
	}
}

func TestIndexFiles(t *testing.T) {
	root := t.TempDir()
	writeFakeKernel(t, root, fakeTree)
	k, err := Resolve(context.Background(), Source{Dir: root}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := k.Select([]string{"virtio_blk", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	files, err := IndexFiles(mods, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"modules.dep": "kernel/arch/x86/crypto/crc32c-intel.ko:\n" +
			"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n" +
			"kernel/drivers/virtio/virtio.ko:\n" +
			"kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n" +
			"kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\n" +
			"kernel/fs/jbd2/jbd2.ko:\n",
		"modules.alias": "# Aliases extracted from modules themselves.\n" +
			"alias crypto-crc32c crc32c_intel\nalias crc32c crc32c_intel\n" +
			"alias virtio:d00000002v* virtio_blk\nalias fs-ext4 ext4\n",
		"modules.softdep": "# Soft dependencies extracted from modules themselves.\nsoftdep ext4 pre: crypto-crc32c\n",
		"modules.builtin": fakeBuiltin,
	}
	for name, w := range want {
		if got := string(files[name]); got != w {
			t.Errorf("%s =\n%s\nwant\n%s", name, got, w)
		}
	}
	// Device drivers load with their hardware; the rest on every boot.
	if got := Always([]string{"virtio_blk", "ext4", "not-selected"}, mods); !slices.Equal(got, []string{"ext4", "not-selected"}) {
		t.Errorf("Always = %q, want ext4 and the unknown name", got)
	}
	// bonding loads when the machine config makes a bond (with
	// max_bonds=0), never on every boot: it would make a stray bond0.
	if got := Always([]string{"ext4", "bonding"}, mods); !slices.Equal(got, []string{"ext4"}) {
		t.Errorf("Always = %q, want ext4 without bonding", got)
	}
	// What K3s's networking has the kernel ask for loads then, in either
	// spelling of its name: the default image ships it all, and would
	// otherwise load some fifty modules on every boot.
	if got := Always(append([]string{"ext4", "nft-masq", "ip6table-nat"}, K3sOnDemand...), mods); !slices.Equal(got, []string{"ext4"}) {
		t.Errorf("Always = %q, want ext4 without K3s's on-demand modules", got)
	}
	for _, m := range K3sOnDemand {
		if !slices.Contains(DefaultModules, m) {
			t.Errorf("K3sOnDemand's %s is not in the default image (DefaultModules)", m)
		}
	}
	// Compressed modules are named with their suffix, as depmod does.
	zstFiles, err := IndexFiles(mods, ".zst")
	if err != nil {
		t.Fatal(err)
	}
	zst := string(zstFiles["modules.dep"])
	if !strings.Contains(zst, "kernel/fs/ext4/ext4.ko.zst: kernel/fs/jbd2/jbd2.ko.zst\n") {
		t.Errorf("modules.dep with .zst names =\n%s", zst)
	}
}

func TestResolveErrors(t *testing.T) {
	noVmlinuz := t.TempDir()
	writeFakeKernel(t, noVmlinuz, fakeTree[:1])
	os.Remove(filepath.Join(noVmlinuz, "vmlinuz"))
	noModules := t.TempDir()
	os.WriteFile(filepath.Join(noModules, "vmlinuz"), fakeBzImage(fakeVer), 0o644)
	twoVersions := t.TempDir()
	writeFakeKernel(t, twoVersions, fakeTree[:1])
	os.MkdirAll(filepath.Join(twoVersions, "lib/modules/5.10.0-other"), 0o755)
	badDeps := t.TempDir()
	writeFakeKernel(t, badDeps, []fakeMod{{"kernel/a.ko", []string{"name=a", "depends=b"}}})
	cycle := t.TempDir()
	writeFakeKernel(t, cycle, []fakeMod{{"kernel/a.ko", []string{"name=a", "depends=b"}}, {"kernel/b.ko", []string{"name=b", "depends=a"}}})
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)

	for _, tc := range []struct {
		name string
		src  Source
		want []string
	}{
		{"both set", Source{Package: "linux-image-amd64", Dir: "/x"}, []string{"both", "only one"}},
		{"no vmlinuz", Source{Dir: noVmlinuz}, []string{"kernel.dir", "vmlinuz", "boot/vmlinuz-" + fakeVer}},
		{"no modules", Source{Dir: noModules}, []string{"kernel.dir", "lib/modules/<version>"}},
		{"two module folders", Source{Dir: twoVersions}, []string{"several", "5.10.0-other"}},
		{"missing folder", Source{Dir: "/nonexistent/kernel"}, []string{"kernel.dir", "/nonexistent/kernel"}},
		{"not a folder", Source{Dir: file}, []string{"not a folder"}},
		{"unknown dependency", Source{Dir: badDeps}, []string{"kernel/a.ko", "depends on b"}},
		{"dependency cycle", Source{Dir: cycle}, []string{"depends on itself"}},
		{"package without cache", Source{Package: "linux-image-amd64"}, []string{"cache"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(context.Background(), tc.src, "", nil)
			if err == nil {
				t.Fatalf("Resolve succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDirWithBootLayout(t *testing.T) {
	root := t.TempDir()
	writeFakeKernel(t, root, fakeTree[:3])
	os.Remove(filepath.Join(root, "vmlinuz"))
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+fakeVer), fakeBzImage(fakeVer), 0o644)
	k, err := Resolve(context.Background(), Source{Dir: root}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Vmlinuz != filepath.Join(root, "boot", "vmlinuz-"+fakeVer) {
		t.Errorf("Vmlinuz = %s", k.Vmlinuz)
	}
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add([]byte("kernel/a.ko: kernel/b.ko.xz kernel/c.ko\nkernel/b.ko.xz:\n# comment\n"))
	f.Add([]byte("/lib/modules/6.1/kernel/a.ko: /lib/modules/6.1/kernel/b.ko\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseModulesDep(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			for _, p := range append([]string{e.RelPath}, e.Deps...) {
				if strings.HasPrefix(p, "/") || strings.HasPrefix(p, "../") || p == ".." || !isModuleFile(p) {
					t.Fatalf("accepted path %q", p)
				}
			}
		}
	})
}

func FuzzParseAliasSoftdep(f *testing.F) {
	f.Add([]byte("alias pci:v00008086d* e1000e\nsoftdep ext4 pre: crc32c post: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if as, err := parseAliases(data); err == nil {
			for _, a := range as {
				if a[0] == "" || a[1] == "" || strings.ContainsAny(a[0]+a[1], " \t\n") {
					t.Fatalf("bad alias %q", a)
				}
			}
		}
		if ss, err := parseSoftdeps(data); err == nil {
			for _, s := range ss {
				_ = preSoftDeps([]string{s[1]})
			}
		}
		_ = parseModinfo(data)
	})
}

// fakeBzImage is the start of an x86 bzImage for kernel ver: what
// checkImage reads (the boot sector's signature, "HdrS", kernel_version).
func fakeBzImage(ver string) []byte {
	b := make([]byte, 0x400)
	b[0x1FE], b[0x1FF] = 0x55, 0xAA
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x20E:], 0x100)
	copy(b[0x300:], ver+" (test@example.com) #1 SMP")
	return b
}

func TestCheckImage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := checkImage(write("ok", fakeBzImage(fakeVer)), fakeVer); err != nil {
		t.Errorf("a bzImage of the modules' kernel: %v", err)
	}
	if err := checkImage(write("other", fakeBzImage("6.1.0-56-amd64")), "6.2.0-fake"); err == nil || !strings.Contains(err.Error(), "is kernel 6.1.0-56-amd64, but the modules are in lib/modules/6.2.0-fake") {
		t.Errorf("another kernel's modules: %v", err)
	}
	for name, data := range map[string][]byte{"text": []byte("#!/bin/sh\necho\n"), "empty": nil} {
		if err := checkImage(write(name, data), fakeVer); err == nil || !strings.Contains(err.Error(), "is not a kernel image") {
			t.Errorf("%s: %v", name, err)
		}
	}
	arm := make([]byte, 0x40)
	copy(arm[0x38:], "ARM\x64")
	if err := checkImage(write("arm64", arm), fakeVer); err != nil {
		t.Errorf("an arm64 Image: %v", err)
	}
}
