package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/etoile-os/etoile/image/kernel"
)

const testEpoch = 1700000000

// tool returns the path of a host tool or fails naming its Debian package.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %q (apt-get install -y %s)", name, pkg, pkg)
	}
	return p
}

// fakeModules writes three modules, plain, xz and zstd compressed, and
// returns them as kernel.Select would.
func fakeModules(t *testing.T) []kernel.Module {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var xzBuf, zstBuf bytes.Buffer
	xw, _ := xz.NewWriter(&xzBuf)
	xw.Write([]byte("\x7fELF virtio_blk body"))
	xw.Close()
	zw, _ := zstd.NewWriter(&zstBuf)
	zw.Write([]byte("\x7fELF virtio body, odd length"))
	zw.Close()
	return []kernel.Module{
		{Name: "virtio", RelPath: "kernel/drivers/virtio/virtio.ko", Source: write("virtio.ko.zst", zstBuf.Bytes()), Compression: "zst"},
		{Name: "virtio_blk", RelPath: "kernel/drivers/block/virtio_blk.ko", Source: write("virtio_blk.ko.xz", xzBuf.Bytes()), Compression: "xz",
			Deps: []string{"kernel/drivers/virtio/virtio.ko"}, Aliases: []string{"virtio:d00000002v*"}},
		{Name: "usb_storage", RelPath: "kernel/drivers/usb/storage/usb-storage.ko", Source: write("usb-storage.ko", []byte("\x7fELF usb")),
			Deps: []string{"kernel/drivers/usb/core/usbcore.ko"}, SoftDeps: []string{"pre: uas"}},
	}
}

func testOptions(t *testing.T) Options {
	return Options{
		Init:          []byte("#!agent binary"),
		KernelVersion: "6.1.0-test-amd64",
		Modules:       fakeModules(t),
		Epoch:         testEpoch,
		Files: []File{
			{Path: "/etc/etoile/image.json", Data: []byte(`{"version":"1"}`)},
			{Path: "/etc/etoile/empty", Data: []byte{}},
			{Path: "/bin/sh", Link: "/init"},
			{Path: "/var/lib", Mode: fs.ModeDir | 0o700},
		},
	}
}

func decompressZstd(t *testing.T, b []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := io.ReadAll(d)
	if err != nil {
		t.Fatalf("zstd: %v", err)
	}
	return out
}

func TestWriteContents(t *testing.T) {
	var buf bytes.Buffer
	st, err := Write(&buf, testOptions(t))
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if st.CompressedSize != int64(buf.Len()) {
		t.Errorf("Stats.CompressedSize %d, wrote %d", st.CompressedSize, buf.Len())
	}
	// Two archives: the modules, uncompressed and padded to 512 bytes, then
	// the rest, compressed.
	if st.ModulesSize <= 0 || st.ModulesSize%512 != 0 || st.ModulesSize >= int64(buf.Len()) {
		t.Fatalf("Stats.ModulesSize = %d of %d bytes", st.ModulesSize, buf.Len())
	}
	first, err := Read(buf.Bytes()[:st.ModulesSize])
	if err != nil {
		t.Fatalf("Read(modules archive): %v", err)
	}
	raw := decompressZstd(t, buf.Bytes()[st.ModulesSize:])
	second, err := Read(raw)
	if err != nil {
		t.Fatalf("Read(main archive): %v", err)
	}
	if want := st.ModulesSize + int64(len(raw)); st.UncompressedSize != want {
		t.Errorf("Stats.UncompressedSize %d, want %d", st.UncompressedSize, want)
	}
	entries, err := ReadImage(buf.Bytes())
	if err != nil {
		t.Fatalf("ReadImage: %v", err)
	}
	if len(entries) != len(first)+len(second) {
		t.Errorf("ReadImage found %d entries, the two archives hold %d+%d", len(entries), len(first), len(second))
	}
	for _, e := range first {
		if e.Mode&sIFMT != sIFDIR && !strings.HasSuffix(e.Path, ".ko.zst") {
			t.Errorf("the modules archive holds %s", e.Path)
		}
	}
	if st.Entries != len(entries) || st.Modules != 3 || st.Devices != 2 || st.Symlinks != 1 {
		t.Errorf("Stats = %+v for %d entries", st, len(entries))
	}
	byPath := map[string]Entry{}
	for i, e := range entries {
		if _, dup := byPath[e.Path]; dup {
			t.Errorf("%s is in both archives", e.Path)
		}
		byPath[e.Path] = e
		if e.UID != 0 || e.GID != 0 || e.Mtime != testEpoch {
			t.Errorf("%s: uid %d gid %d mtime %d", e.Path, e.UID, e.GID, e.Mtime)
		}
		if e.Ino != uint32(i+1) {
			t.Errorf("%s: inode %d, want %d", e.Path, e.Ino, i+1)
		}
		if parent := filepath.Dir(e.Path); parent != "." {
			if p, ok := byPath[parent]; !ok || p.Mode&sIFMT != sIFDIR {
				t.Errorf("%s comes before its parent folder %s", e.Path, parent)
			}
		}
	}
	for _, part := range [][]Entry{first, second} {
		var paths []string
		for _, e := range part {
			paths = append(paths, e.Path)
		}
		if !slices.IsSorted(paths) {
			t.Errorf("entries not sorted: %q", paths)
		}
	}
	for p, e := range byPath {
		if strings.HasSuffix(p, ".zst") {
			e.Data = decompressZstd(t, e.Data)
			byPath[strings.TrimSuffix(p, ".zst")] = e
		}
	}
	mod := "lib/modules/6.1.0-test-amd64/"
	for p, want := range map[string]struct {
		mode uint32
		data string
	}{
		"init":                  {sIFREG | 0o755, "#!agent binary"},
		"dev/console":           {sIFCHR | 0o600, ""},
		"dev/null":              {sIFCHR | 0o666, ""},
		"tmp":                   {sIFDIR | 0o1777, ""},
		"sysroot":               {sIFDIR | 0o755, ""},
		"etc/etoile/image.json": {sIFREG | 0o644, `{"version":"1"}`},
		"etc/etoile/empty":      {sIFREG | 0o644, ""},
		"bin/sh":                {sIFLNK | 0o777, "/init"},
		"var/lib":               {sIFDIR | 0o700, ""},
		mod + "kernel/drivers/block/virtio_blk.ko":        {sIFREG | 0o644, "\x7fELF virtio_blk body"},
		mod + "kernel/drivers/virtio/virtio.ko":           {sIFREG | 0o644, "\x7fELF virtio body, odd length"},
		mod + "kernel/drivers/usb/storage/usb-storage.ko": {sIFREG | 0o644, "\x7fELF usb"},
		mod + "modules.dep": {sIFREG | 0o644, "kernel/drivers/block/virtio_blk.ko.zst: kernel/drivers/virtio/virtio.ko.zst\n" +
			"kernel/drivers/usb/storage/usb-storage.ko.zst:\nkernel/drivers/virtio/virtio.ko.zst:\n"},
		mod + "modules.alias":   {sIFREG | 0o644, "# Aliases extracted from modules themselves.\nalias virtio:d00000002v* virtio_blk\n"},
		mod + "modules.softdep": {sIFREG | 0o644, "# Soft dependencies extracted from modules themselves.\nsoftdep usb_storage pre: uas\n"},
		mod + "modules.builtin": {sIFREG | 0o644, ""},
	} {
		e, ok := byPath[p]
		if !ok {
			t.Errorf("%s missing from the archive", p)
			continue
		}
		if e.Mode != want.mode || string(e.Data) != want.data {
			t.Errorf("%s: mode %o data %q, want %o %q", p, e.Mode, e.Data, want.mode, want.data)
		}
	}
	if c := byPath["dev/console"]; c.Major != 5 || c.Minor != 1 {
		t.Errorf("dev/console is %d,%d, want 5,1", c.Major, c.Minor)
	}
	if c := byPath["dev/null"]; c.Major != 1 || c.Minor != 3 {
		t.Errorf("dev/null is %d,%d, want 1,3", c.Major, c.Minor)
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "mnt", "sysroot", "etc"} {
		if e, ok := byPath[d]; !ok || e.Mode&sIFMT != sIFDIR {
			t.Errorf("folder /%s missing", d)
		}
	}
}

func TestWriteIsDeterministic(t *testing.T) {
	for _, comp := range []string{"zstd", "xz", "none"} {
		t.Run(comp, func(t *testing.T) {
			opts := testOptions(t)
			opts.Compression = comp
			var a, b bytes.Buffer
			if _, err := Write(&a, opts); err != nil {
				t.Fatal(err)
			}
			// the same input given in another order must not change a byte
			slices.Reverse(opts.Files)
			slices.Reverse(opts.Modules)
			if _, err := Write(&b, opts); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("two runs differ (%d vs %d bytes)", a.Len(), b.Len())
			}
			opts.Epoch++
			var c bytes.Buffer
			Write(&c, opts)
			if bytes.Equal(a.Bytes(), c.Bytes()) {
				t.Errorf("Epoch is not reflected in the output")
			}
		})
	}
}

// cpioBoth runs GNU cpio with args (e.g. -tv, or -i …) on both archives
// of img in dir: on the file itself for the modules archive, then on what
// dec (zstd or xz) decompresses from where that archive ends (cpio reports
// its length in 512-byte blocks). It returns their output, one after the
// other. None of these tools is Étoile's.
func cpioBoth(t *testing.T, img, dec, cpio, dir, args string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	first := exec.Command("sh", "-c", `"$0" `+args+` < "$1"`, cpio, img)
	first.Dir, first.Stdout, first.Stderr = dir, &out, &errOut
	if err := first.Run(); err != nil {
		t.Fatalf("cpio %s (modules archive): %v\n%s", args, err, errOut.String())
	}
	var blocks int
	if _, err := fmt.Sscanf(strings.TrimSpace(errOut.String()), "%d blocks", &blocks); err != nil || blocks <= 0 {
		t.Fatalf("cpio did not report the modules archive's length: %q", errOut.String())
	}
	errOut.Reset()
	second := exec.Command("sh", "-c", `dd if="$1" bs=512 skip="$2" status=none | "$0" -d -c | "$3" --quiet `+args, dec, img, strconv.Itoa(blocks), cpio)
	second.Dir, second.Stdout, second.Stderr = dir, &out, &errOut
	if err := second.Run(); err != nil {
		t.Fatalf("dd | %s -d | cpio %s (main archive): %v\n%s", dec, args, err, errOut.String())
	}
	return out.String()
}

// TestIndependentTools unpacks the initramfs with dd, zstd/xz and GNU cpio,
// which did not write it.
func TestIndependentTools(t *testing.T) {
	cpio := tool(t, "cpio", "cpio")
	for _, tc := range []struct{ comp, tool, pkg string }{{"zstd", "zstd", "zstd"}, {"xz", "xz", "xz-utils"}} {
		t.Run(tc.comp, func(t *testing.T) {
			dec := tool(t, tc.tool, tc.pkg)
			zstdTool := tool(t, "zstd", "zstd")
			dir := t.TempDir()
			opts := testOptions(t)
			opts.Compression = tc.comp
			img := filepath.Join(dir, "initramfs.img")
			f, _ := os.Create(img)
			if _, err := Write(f, opts); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if tc.comp == "xz" {
				// the kernel's xz decoder needs CRC32 checks
				blocks := strconv.Itoa(int(mustStats(t, opts).ModulesSize / 512))
				out, err := exec.Command("sh", "-c", `dd if="$1" of="$1.xz" bs=512 skip="$2" status=none && "$0" --robot -lv "$1.xz"`, dec, img, blocks).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "CRC32") {
					t.Errorf("xz -lv: %v\n%s", err, out)
				}
			}
			list := cpioBoth(t, img, dec, cpio, dir, "-tv")
			for _, want := range []string{
				"crw-------   1 root     root       5,   1 ", "dev/console",
				"crw-rw-rw-   1 root     root       1,   3 ", "dev/null",
				"-rwxr-xr-x   1 root     root           14 ", "init",
				"lib/modules/6.1.0-test-amd64/modules.alias",
				"lib/modules/6.1.0-test-amd64/kernel/drivers/virtio/virtio.ko.zst",
				"lrwxrwxrwx   1 root     root            5 ", "bin/sh -> /init",
				"drwxrwxrwt ",
			} {
				if !strings.Contains(list, want) {
					t.Errorf("cpio -tv does not show %q:\n%s", want, list)
				}
			}
			// unpack everything but the device nodes (mknod needs root)
			unpack := filepath.Join(dir, "root")
			os.Mkdir(unpack, 0o755)
			cpioBoth(t, img, dec, cpio, unpack, "-i -d --no-absolute-filenames --nonmatching 'dev/*'")
			for p, want := range map[string]string{
				"init": "#!agent binary",
				"lib/modules/6.1.0-test-amd64/kernel/drivers/block/virtio_blk.ko.zst": "\x7fELF virtio_blk body",
				"lib/modules/6.1.0-test-amd64/kernel/drivers/virtio/virtio.ko.zst":    "\x7fELF virtio body, odd length",
				"etc/etoile/image.json": `{"version":"1"}`,
			} {
				file := filepath.Join(unpack, p)
				var got []byte
				var err error
				if strings.HasSuffix(p, ".zst") {
					got, err = exec.Command(zstdTool, "-d", "-c", file).Output()
				} else {
					got, err = os.ReadFile(file)
				}
				if err != nil || string(got) != want {
					t.Errorf("unpacked %s = %q (%v), want %q", p, got, err, want)
				}
			}
		})
	}
}

func mustStats(t *testing.T, opts Options) Stats {
	t.Helper()
	st, err := Write(io.Discard, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"no init", func(o *Options) { o.Init = nil }, "Init"},
		{"bad compression", func(o *Options) { o.Compression = "lz4" }, `"lz4"`},
		{"bad level", func(o *Options) { o.Level = 30 }, "level 30"},
		{"clash with init", func(o *Options) { o.Files = append(o.Files, File{Path: "/init", Data: []byte("x")}) }, "/init clashes"},
		{"relative path", func(o *Options) { o.Files = append(o.Files, File{Path: "etc/x"}) }, "must be absolute"},
		{"unclean path", func(o *Options) { o.Files = append(o.Files, File{Path: "/etc/../x"}) }, "not clean"},
		{"file as parent", func(o *Options) {
			o.Files = append(o.Files, File{Path: "/etc/etoile/image.json/x", Data: []byte("y")})
		}, "needed as a folder"},
		{"module escapes", func(o *Options) { o.Modules[0].RelPath = "../../etc/passwd" }, "RelPath"},
		{"no kernel version", func(o *Options) { o.KernelVersion = "" }, "KernelVersion"},
		{"missing module file", func(o *Options) { o.Modules[0].Source = "/nonexistent.ko.zst" }, "/nonexistent.ko.zst"},
		{"missing source", func(o *Options) { o.Files = append(o.Files, File{Path: "/etc/y", Source: "/nonexistent/y"}) }, "/nonexistent/y"},
		{"epoch", func(o *Options) { o.Epoch = -1 }, "Epoch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			tc.modify(&opts)
			_, err := Write(io.Discard, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	opts := Options{Init: []byte("x"), Compression: "none", Epoch: 1}
	Write(&buf, opts)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Read(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if len(e.Data) > len(data) {
				t.Fatalf("entry larger than input")
			}
		}
	})
}
