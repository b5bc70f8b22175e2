package debian

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

type tarEntry struct {
	Name     string
	Type     byte
	Body     string
	Linkname string
	Mode     int64
}

func compressTar(t testing.TB, comp string, entries []tarEntry) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
			if e.Type == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Linkname, Mode: mode, Size: int64(len(e.Body))}
		if e.Type != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	switch comp {
	case "":
		return raw.Bytes()
	case "xz":
		w, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw.Bytes())
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "zst":
		w, err := zstd.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw.Bytes())
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "gz":
		w := gzip.NewWriter(&out)
		w.Write(raw.Bytes())
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown compression %q", comp)
	}
	return out.Bytes()
}

func arFile(members ...[2]string) []byte {
	var b bytes.Buffer
	b.WriteString(arMagic)
	for _, m := range members {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m[0], 0, 0, 0, "100644", len(m[1]))
		b.WriteString(m[1])
		if len(m[1])%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// buildDeb writes a .deb with the given control file and data entries.
func buildDeb(t testing.TB, dir, control, comp string, data []tarEntry) string {
	t.Helper()
	ext := ".tar"
	if comp != "" {
		ext += "." + comp
	}
	ctl := compressTar(t, comp, []tarEntry{{Name: "./", Type: tar.TypeDir}, {Name: "./control", Type: tar.TypeReg, Body: control}})
	deb := arFile([2]string{"debian-binary", "2.0\n"}, [2]string{"control" + ext, string(ctl)}, [2]string{"data" + ext, string(compressTar(t, comp, data))})
	p := filepath.Join(dir, "test.deb")
	if err := os.WriteFile(p, deb, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const testControl = `Package: linux-image-test
Version: 1:6.1.2-3
Architecture: amd64
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Description: a test
 with a second line
`

var testData = []tarEntry{
	{Name: "./", Type: tar.TypeDir},
	{Name: "./boot/", Type: tar.TypeDir},
	{Name: "./boot/vmlinuz-6.1.2", Type: tar.TypeReg, Body: "kernel"},
	{Name: "./lib/modules/6.1.2/kernel/a.ko", Type: tar.TypeReg, Body: "module a"},
	{Name: "./lib/modules/6.1.2/build", Type: tar.TypeSymlink, Linkname: "/usr/src/linux-headers-6.1.2"},
	{Name: "./lib/modules/6.1.2/kernel/b.ko", Type: tar.TypeLink, Linkname: "./lib/modules/6.1.2/kernel/a.ko"},
	{Name: "./usr/share/doc/x/changelog", Type: tar.TypeReg, Body: "doc"},
	{Name: "./usr/bin/tool", Type: tar.TypeReg, Body: "#!/bin/sh\n", Mode: 0o755},
}

func TestReadPackageAndExtract(t *testing.T) {
	for _, comp := range []string{"xz", "zst", "gz", ""} {
		t.Run("data.tar."+comp, func(t *testing.T) {
			dir := t.TempDir()
			p, err := ReadPackage(buildDeb(t, dir, testControl, comp, testData))
			if err != nil {
				t.Fatalf("ReadPackage: %v", err)
			}
			if p.Name != "linux-image-test" || p.Version != "1:6.1.2-3" || p.Architecture != "amd64" {
				t.Errorf("metadata = %q %q %q", p.Name, p.Version, p.Architecture)
			}
			wantDeps := []string{"kmod", "linux-base (>= 4.3~)", "initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool"}
			if !slices.Equal(p.Depends, wantDeps) {
				t.Errorf("Depends = %q, want %q", p.Depends, wantDeps)
			}
			sum, err := FileSHA256(p.DebPath)
			if err != nil || sum != p.SHA256 {
				t.Errorf("SHA256 = %s, file hashes to %s (%v)", p.SHA256, sum, err)
			}

			dest := filepath.Join(dir, "all")
			if err := p.Extract(dest, nil); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			assertFile(t, filepath.Join(dest, "boot/vmlinuz-6.1.2"), "kernel")
			assertFile(t, filepath.Join(dest, "lib/modules/6.1.2/kernel/b.ko"), "module a")
			if l, err := os.Readlink(filepath.Join(dest, "lib/modules/6.1.2/build")); err != nil || l != "/usr/src/linux-headers-6.1.2" {
				t.Errorf("symlink build -> %q (%v)", l, err)
			}
			a, _ := os.Stat(filepath.Join(dest, "lib/modules/6.1.2/kernel/a.ko"))
			b, _ := os.Stat(filepath.Join(dest, "lib/modules/6.1.2/kernel/b.ko"))
			if a == nil || b == nil || !os.SameFile(a, b) {
				t.Errorf("b.ko is not a hard link to a.ko")
			}
			if st, err := os.Stat(filepath.Join(dest, "usr/bin/tool")); err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("usr/bin/tool mode = %v (%v), want 0755", st.Mode(), err)
			}

			some := filepath.Join(dir, "some")
			keep := func(p string) bool {
				return strings.HasPrefix(p, "boot/vmlinuz-") || strings.HasPrefix(p, "lib/modules/")
			}
			if err := p.Extract(some, keep); err != nil {
				t.Fatalf("Extract with filter: %v", err)
			}
			assertFile(t, filepath.Join(some, "lib/modules/6.1.2/kernel/a.ko"), "module a")
			if _, err := os.Stat(filepath.Join(some, "usr")); !os.IsNotExist(err) {
				t.Errorf("filtered extraction created usr/ (%v)", err)
			}
		})
	}
}

func assertFile(t *testing.T, name, want string) {
	t.Helper()
	got, err := os.ReadFile(name)
	if err != nil || string(got) != want {
		t.Errorf("%s = %q (%v), want %q", name, got, err, want)
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	for _, tc := range []struct {
		name    string
		entries []tarEntry
	}{
		{"dotdot", []tarEntry{{Name: "./../../escaped", Type: tar.TypeReg, Body: "x"}}},
		{"absolute", []tarEntry{{Name: "/escaped", Type: tar.TypeReg, Body: "x"}}},
		{"through symlink", []tarEntry{
			{Name: "./lib", Type: tar.TypeSymlink, Linkname: outside},
			{Name: "./lib/escaped", Type: tar.TypeReg, Body: "x"},
		}},
		{"relative symlink", []tarEntry{
			{Name: "./up", Type: tar.TypeSymlink, Linkname: "../../../../../../../.." + outside},
			{Name: "./up/escaped", Type: tar.TypeReg, Body: "x"},
		}},
		{"hard link out", []tarEntry{{Name: "./h", Type: tar.TypeLink, Linkname: "../../etc/passwd"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := ReadPackage(buildDeb(t, dir, testControl, "gz", tc.entries))
			if err != nil {
				t.Fatal(err)
			}
			err = p.Extract(filepath.Join(dir, "dest"), nil)
			if err == nil {
				t.Fatalf("Extract succeeded, want an error")
			}
			if _, serr := os.Stat(filepath.Join(outside, "escaped")); serr == nil {
				t.Fatalf("a file was written outside the destination")
			}
			if !errors.Is(err, ErrIllegalPath) && !strings.Contains(err.Error(), "escapes") {
				t.Logf("error (not ErrIllegalPath, refused by os.Root): %v", err)
			}
		})
	}
}

func TestReadPackageRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"not ar", "hello world", "not an ar archive"},
		{"truncated", string(arFile([2]string{"debian-binary", "2.0\n"}))[:70], "unexpected EOF"},
		{"no control", string(arFile([2]string{"debian-binary", "2.0\n"})), "no control.tar"},
		{"bad compression", string(arFile([2]string{"control.tar.rar", "x"})), "compression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".deb")
			os.WriteFile(p, []byte(tc.content), 0o644)
			_, err := ReadPackage(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadPackage error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzReadDeb(f *testing.F) {
	f.Add(arFile([2]string{"debian-binary", "2.0\n"}, [2]string{"control.tar", string(compressTar(f, "", []tarEntry{{Name: "./control", Type: tar.TypeReg, Body: testControl}}))}))
	f.Add([]byte(arMagic + "debian-binary   0           0     0     100644  4         `\n2.0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "f.deb")
		os.WriteFile(p, data, 0o644)
		pkg, err := ReadPackage(p)
		if err != nil {
			return
		}
		// whatever the data member holds, nothing may land outside dest
		_ = pkg.Extract(filepath.Join(dir, "dest"), nil)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "f.deb" && e.Name() != "dest" {
				t.Fatalf("extraction wrote %s outside dest", e.Name())
			}
		}
	})
}
