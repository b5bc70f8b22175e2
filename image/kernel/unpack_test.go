package kernel

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/image/debian"
)

// writeDeb builds a gzip-compressed .deb holding files (path -> content).
func writeDeb(t *testing.T, path, control string, files map[string][]byte) {
	t.Helper()
	tgz := func(files map[string][]byte) []byte {
		var raw bytes.Buffer
		gz := gzip.NewWriter(&raw)
		tw := tar.NewWriter(gz)
		for name, data := range files {
			tw.WriteHeader(&tar.Header{Name: "./" + name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
			tw.Write(data)
		}
		tw.Close()
		gz.Close()
		return raw.Bytes()
	}
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", tgz(map[string][]byte{"control": []byte(control)})}, {"data.tar.gz", tgz(files)}} {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUnpackKernelPackage(t *testing.T) {
	dir := t.TempDir()
	deb := filepath.Join(dir, "linux-image-6.1.0-test-amd64_6.1.2-1_amd64.deb")
	mods := "lib/modules/" + fakeVer + "/"
	writeDeb(t, deb, "Package: linux-image-6.1.0-test-amd64\nVersion: 6.1.2-1\nArchitecture: amd64\nDepends: kmod\n", map[string][]byte{
		"boot/vmlinuz-" + fakeVer:                fakeBzImage(fakeVer),
		"boot/System.map-" + fakeVer:             []byte("map"),
		mods + "kernel/drivers/virtio/virtio.ko": fakeKO("name=virtio"),
		mods + "kernel/drivers/block/virtio_blk.ko": fakeKO("name=virtio_blk", "depends=virtio",
			"alias=virtio:d00000002v*"),
		mods + "modules.builtin":           []byte("kernel/net/packet/af_packet.ko\n"),
		"usr/share/doc/linux/changelog.gz": []byte("doc"),
	})
	p, err := debian.ReadPackage(deb)
	if err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join(dir, "kernels", "entry")
	if err := unpackKernel(context.Background(), p, nil, entry, discardLogger()); err != nil {
		t.Fatalf("unpackKernel: %v", err)
	}
	k, err := kernelFromTree(entry, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != fakeVer || filepath.Base(k.Vmlinuz) != "vmlinuz-"+fakeVer {
		t.Errorf("kernel = %+v", k)
	}
	dep, err := os.ReadFile(filepath.Join(k.ModulesDir, "modules.dep"))
	if err != nil || !strings.Contains(string(dep), "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n") {
		t.Errorf("generated modules.dep = %q (%v)", dep, err)
	}
	alias, _ := os.ReadFile(filepath.Join(k.ModulesDir, "modules.alias"))
	if !strings.Contains(string(alias), "alias virtio:d00000002v* virtio_blk\n") {
		t.Errorf("generated modules.alias = %q", alias)
	}
	for _, unwanted := range []string{"usr", "boot/System.map-" + fakeVer} {
		if _, err := os.Stat(filepath.Join(entry, unwanted)); err == nil {
			t.Errorf("%s was unpacked", unwanted)
		}
	}
	if !k.Builtin("af-packet") {
		t.Errorf("af_packet not reported built in")
	}

	// a truncated package fails and leaves neither the entry nor scraps
	data, _ := os.ReadFile(deb)
	os.WriteFile(deb, data[:len(data)-40], 0o644)
	broken := filepath.Join(dir, "kernels", "broken")
	if err := unpackKernel(context.Background(), p, nil, broken, discardLogger()); err == nil {
		t.Fatalf("unpacking a truncated package succeeded")
	}
	left, _ := filepath.Glob(filepath.Join(dir, "kernels", "*"))
	if len(left) != 1 || left[0] != entry {
		t.Errorf("kernel cache holds %q after a failed unpack, want only %s", left, entry)
	}
}

// TestUnpackNotAKernelPackage: a package that holds no kernel (bash, given
// as kernel.package by mistake) is named, with what to give instead — not
// an unpacking folder that is gone by the time the error is read.
func TestUnpackNotAKernelPackage(t *testing.T) {
	dir := t.TempDir()
	deb := filepath.Join(dir, "bash_5.2.15-2_amd64.deb")
	writeDeb(t, deb, "Package: bash\nVersion: 5.2.15-2\nArchitecture: amd64\n", map[string][]byte{"bin/bash": []byte("ELF")})
	p, err := debian.ReadPackage(deb)
	if err != nil {
		t.Fatal(err)
	}
	err = unpackKernel(context.Background(), p, nil, filepath.Join(dir, "kernels", "entry"), discardLogger())
	if err == nil {
		t.Fatal("unpacked bash as a kernel")
	}
	for _, want := range []string{"package bash 5.2.15-2", "not a kernel package", "linux-image-amd64", "kernel.dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), ".unpack-") {
		t.Errorf("error names the unpacking folder: %v", err)
	}
}

func TestImageDependency(t *testing.T) {
	for _, tc := range []struct {
		depends []string
		want    string
	}{
		{[]string{"linux-image-6.1.0-56-amd64 (= 6.1.192-2)"}, "linux-image-6.1.0-56-amd64"},
		{[]string{"kmod", "linux-base (>= 4.3~)", "initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool"}, ""},
		{[]string{"linux-image-6.1.0-56-amd64-unsigned | linux-image-6.1.0-56-amd64"}, "linux-image-6.1.0-56-amd64-unsigned"},
	} {
		r, err := imageDependency(&debian.Package{Name: "linux-image-amd64", Depends: tc.depends})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("imageDependency(%q) = %q, want %q", tc.depends, got, tc.want)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// cachedKernel unpacks a kernel package holding virtio.ko into a cache
// entry, and returns the package, the entry and the module's path in it.
func cachedKernel(t *testing.T) (*debian.Package, string, string) {
	t.Helper()
	dir := t.TempDir()
	deb := filepath.Join(dir, "k.deb")
	module := "lib/modules/" + fakeVer + "/kernel/drivers/virtio/virtio.ko"
	writeDeb(t, deb, "Package: linux-image-6.1.0-test-amd64\nVersion: 6.1.2-1\nArchitecture: amd64\n", map[string][]byte{
		"boot/vmlinuz-" + fakeVer: fakeBzImage(fakeVer),
		module:                    fakeKO("name=virtio"),
	})
	p, err := debian.ReadPackage(deb)
	if err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join(dir, "kernels", "entry")
	if _, err := loadOrUnpack(context.Background(), p, nil, entry, discardLogger()); err != nil {
		t.Fatal(err)
	}
	return p, entry, module
}

func TestDamagedCacheEntryIsUnpackedAgain(t *testing.T) {
	p, entry, module := cachedKernel(t)
	original, err := os.ReadFile(filepath.Join(entry, module))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T)
	}{
		{"modules folder removed", func(t *testing.T) {
			if err := os.RemoveAll(filepath.Join(entry, "lib")); err != nil {
				t.Fatal(err)
			}
		}},
		{"module truncated", func(t *testing.T) {
			if err := os.Truncate(filepath.Join(entry, module), 10); err != nil {
				t.Fatal(err)
			}
		}},
		{"kernel image's bytes changed, size and time kept", func(t *testing.T) {
			vm := filepath.Join(entry, "boot/vmlinuz-"+fakeVer)
			st, err := os.Stat(vm)
			if err != nil {
				t.Fatal(err)
			}
			damaged := fakeBzImage(fakeVer)
			damaged[len(damaged)-1] ^= 0xff
			if err := os.WriteFile(vm, damaged, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(vm, st.ModTime(), st.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		{"module index's bytes changed, size and time kept", func(t *testing.T) {
			// An alias changed is a driver that never loads by itself.
			idx := filepath.Join(entry, "lib/modules", fakeVer, "modules.alias")
			st, err := os.Stat(idx)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(idx)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0x01
			if err := os.WriteFile(idx, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(idx, st.ModTime(), st.ModTime()); err != nil {
				t.Fatal(err)
			}
			if _, err := readManifest(entry, ""); err == nil || !strings.Contains(err.Error(), "modules.alias") {
				t.Errorf("the damaged index passes the entry's check: %v", err)
			}
		}},
		{"file list removed", func(t *testing.T) {
			if err := os.Remove(filepath.Join(entry, manifestName)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage(t)
			k, err := loadOrUnpack(context.Background(), p, nil, entry, discardLogger())
			if err != nil {
				t.Fatalf("loadOrUnpack on a damaged entry: %v", err)
			}
			if mods, err := k.Select([]string{"virtio"}); err != nil || len(mods) != 1 {
				t.Errorf("Select after repair = %v, %v", mods, err)
			}
			if got, err := os.ReadFile(filepath.Join(entry, module)); err != nil || !bytes.Equal(got, original) {
				t.Errorf("module after repair: %d bytes, %v", len(got), err)
			}
			if vm, err := os.ReadFile(filepath.Join(entry, "boot/vmlinuz-"+fakeVer)); err != nil || !bytes.Equal(vm, fakeBzImage(fakeVer)) {
				t.Errorf("kernel image after repair = %q, %v", vm, err)
			}
			if _, err := readManifest(entry, filepath.Join(entry, "boot/vmlinuz-"+fakeVer)); err != nil {
				t.Errorf("the repaired entry does not check: %v", err)
			}
		})
	}
}

// TestDamagedModuleFoundWhenRead: a module whose bytes changed with its
// size and time kept (bit rot, a restored backup) passes the quick check of
// the entry, but not the build's selection of it: the entry is unpacked
// again from its package in the same build, which goes on with the module
// as packaged.
func TestDamagedModuleFoundWhenRead(t *testing.T) {
	p, entry, module := cachedKernel(t)
	path := filepath.Join(entry, module)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(original)
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	k, err := loadOrUnpack(context.Background(), p, nil, entry, log)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := k.Select([]string{"virtio"})
	if err != nil {
		t.Fatalf("selecting the damaged module: %v, want the entry unpacked again and the build going on", err)
	}
	r, err := mods[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, original) {
		t.Errorf("the module read after the repair: %d bytes, %v; want the packaged %d bytes", len(got), err, len(original))
	}
	if !strings.Contains(logs.String(), "unpacking it again") || !strings.Contains(logs.String(), module) {
		t.Errorf("no warning naming the damaged module:\n%s", logs.String())
	}
	if _, err := readManifest(entry, k.Vmlinuz); err != nil {
		t.Errorf("the repaired entry does not check: %v", err)
	}
}

// TestChangedCacheEntryNamesWhatChanged: the entry's quick check says what
// differs, the size or the modification time, with both values.
func TestChangedCacheEntryNamesWhatChanged(t *testing.T) {
	_, entry, module := cachedKernel(t)
	path := filepath.Join(entry, module)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	unpacked := st.ModTime()
	touched := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(path, touched, touched); err != nil {
		t.Fatal(err)
	}
	_, err = readManifest(entry, "")
	for _, w := range []string{module, "modification time", "2031-05-06T07:08:09Z", unpacked.UTC().Format(time.RFC3339)} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("time changed: error = %v, want it to name %q", err, w)
		}
	}
	if err != nil && strings.Contains(err.Error(), "size") {
		t.Errorf("time changed: error = %v names the size, which did not change", err)
	}

	if err := os.Truncate(path, 10); err != nil {
		t.Fatal(err)
	}
	_, err = readManifest(entry, "")
	for _, w := range []string{module, "size is 10 bytes", fmt.Sprintf("was %d", st.Size())} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("size changed: error = %v, want it to name %q", err, w)
		}
	}
}
