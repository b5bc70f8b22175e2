package kernel

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/kmod"
)

// fakeBuiltinModinfo is a modules.builtin.modinfo as Debian's kernels ship
// it: NUL-separated module.key=value strings, aliases among other keys, one
// alias twice, and a value no modules.builtin.alias line can hold.
var fakeBuiltinModinfo = "af_packet.license=GPL\x00af_packet.alias=net-pf-17\x00" +
	"crc32c_generic.alias=crypto-crc32c\x00crc32c_generic.alias=crc32c\x00crc32c_generic.description=CRC32c\x00" +
	"af_packet.alias=net-pf-17\x00odd.alias=has space\x00noalias=x\x00debugfs.alias=fs-debugfs\x00"

const fakeBuiltinAlias = "alias net-pf-17 af_packet\nalias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\nalias fs-debugfs debugfs\n"

// TestBuiltinAliasIndex: the initramfs's module index and the system
// image's merged one carry modules.builtin.alias, so that the agent counts
// a modprobe of a built-in module's alias (the kernel's request_module of
// fs-debugfs, crypto-crc32c, net-pf-17) as satisfied: made from
// modules.builtin.modinfo in its order when the kernel ships only that (as
// Debian's do), the kernel's own when it has one, and absent when it has
// neither (an extension's stale one is removed then).
func TestBuiltinAliasIndex(t *testing.T) {
	extra := func(t *testing.T, dir string) {
		t.Helper()
		p := filepath.Join(dir, "extra", "mydrv.ko")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, fakeKO("name=mydrv", "depends=", "vermagic="+fakeVer+" SMP mod_unload"), 0o644); err != nil {
			t.Fatal(err)
		}
		// What a depmod run in the extension's build could leave.
		if err := os.WriteFile(filepath.Join(dir, "modules.builtin.alias"), []byte("alias stale stale\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		files   map[string]string // in the kernel's modules folder
		want    string
		present bool
	}{
		{"from modules.builtin.modinfo", map[string]string{"modules.builtin.modinfo": fakeBuiltinModinfo}, fakeBuiltinAlias, true},
		{"the kernel's own", map[string]string{"modules.builtin.modinfo": fakeBuiltinModinfo, "modules.builtin.alias": "alias fs-vfat vfat\n"},
			"alias fs-vfat vfat\n", true},
		{"neither", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			modDir := writeFakeKernel(t, root, fakeTree)
			for name, data := range tc.files {
				if err := os.WriteFile(filepath.Join(modDir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			k, err := Resolve(context.Background(), Source{Dir: root}, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			mods, err := k.Select([]string{"virtio_blk"})
			if err != nil {
				t.Fatal(err)
			}
			files, err := IndexFiles(mods, ".zst")
			if err != nil {
				t.Fatal(err)
			}
			got, ok := files["modules.builtin.alias"]
			if ok != tc.present || string(got) != tc.want {
				t.Errorf("the initramfs's modules.builtin.alias: present %v, %q; want present %v, %q", ok, got, tc.present, tc.want)
			}
			// Reproducible: the same bytes every time.
			again, err := IndexFiles(mods, ".zst")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again["modules.builtin.alias"], got) {
				t.Errorf("modules.builtin.alias differs between two renderings: %q, %q", got, again["modules.builtin.alias"])
			}

			dir := t.TempDir()
			extra(t, dir)
			if _, err := k.MergeExtras(dir, mods, ".zst", nil); err != nil {
				t.Fatal(err)
			}
			merged, err := os.ReadFile(filepath.Join(dir, "modules.builtin.alias"))
			if tc.present && (err != nil || string(merged) != tc.want) {
				t.Errorf("the system image's modules.builtin.alias: %q, %v; want %q", merged, err, tc.want)
			}
			if !tc.present && err == nil {
				t.Errorf("the system image has a modules.builtin.alias (%q), but the kernel has none", merged)
			}
		})
	}
}

// TestRealKernelBuiltinAlias: Debian's kernel ships modules.builtin.modinfo
// and no modules.builtin.alias; the initramfs's index has one made from it,
// small, with which the agent's modprobe of a built-in module's alias
// (fs-debugfs, crypto-hmac) succeeds instead of failing with "not found".
func TestRealKernelBuiltinAlias(t *testing.T) {
	k := realKernel(t)
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.builtin.alias")); err == nil {
		t.Logf("%s ships modules.builtin.alias: it is copied, not made from modules.builtin.modinfo", k.ModulesDir)
	}
	mods, err := k.Select([]string{"squashfs", "overlay"})
	if err != nil {
		t.Fatal(err)
	}
	files, err := IndexFiles(mods, ".zst")
	if err != nil {
		t.Fatal(err)
	}
	ba := files["modules.builtin.alias"]
	t.Logf("modules.builtin.alias: %d bytes, %d lines", len(ba), bytes.Count(ba, []byte("\n")))
	if len(ba) == 0 || len(ba) > 16<<10 {
		t.Fatalf("modules.builtin.alias is %d bytes, want some and at most 16 KiB", len(ba))
	}
	for _, want := range []string{"alias fs-debugfs debugfs\n", "alias crypto-hmac hmac\n"} {
		if !strings.Contains(string(ba), want) {
			t.Errorf("modules.builtin.alias lacks %q:\n%s", want, ba)
		}
	}

	// The agent, on that index.
	sys, modDir := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(sys, "bus"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(modDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec := &kmod.Recorder{}
	c, err := kmod.NewColdplug(sys, modDir, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, alias := range []string{"fs-debugfs", "crypto-hmac"} {
		if err := c.Modprobe(context.Background(), alias); err != nil {
			t.Errorf("the agent's modprobe %s, built into the kernel: %v", alias, err)
		}
	}
	if len(rec.Loads) != 0 {
		t.Errorf("the agent loaded %q for built-in modules, want nothing", rec.Loads)
	}
}
