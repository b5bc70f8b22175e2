package sysimage

import (
	"bytes"
	"errors"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// fatImage writes a FAT32 filesystem of size bytes holding files (path →
// content), as the image build writes the raw disk's ESP (go-diskfs).
func fatImage(t *testing.T, size int64, files map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "esp.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	fsys, err := fat32.Create(file.New(f, false), size, 0, 512, "ETOILE-ESP", true)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := fsys.Mkdir(filepath.Dir(name)); err != nil {
			t.Fatal(err)
		}
		h, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	return p
}

func TestReadFATFile(t *testing.T) {
	const cfg = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n"
	// A file over many 512-byte clusters, and a folder with more entries
	// than one cluster holds.
	big := strings.Repeat("0123456789abcdef", 1000)
	files := map[string]string{"/etoile/config.yaml": cfg, "/EFI/BOOT/BOOTX64.EFI": "MZ", "/loader/big.conf": big}
	for i := range 40 {
		files["/many/a-long-file-name-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))+".txt"] = "n"
	}
	img := fatImage(t, 64<<20, files)
	for name, want := range map[string]string{
		"/etoile/config.yaml":                 cfg,
		"/efi/boot/bootx64.efi":               "MZ", // FAT names are case-insensitive
		"/loader/big.conf":                    big,
		"/many/a-long-file-name-xxxxxxbb.txt": "n",
	} {
		if got, err := ReadFATFile(img, name, 1<<20); err != nil || string(got) != want {
			t.Errorf("%s: got %d bytes, %v; want %d bytes", name, len(got), err, len(want))
		}
	}
	if _, err := ReadFATFile(img, "/etoile/config.yaml", 10); err == nil || !strings.Contains(err.Error(), "larger than 10 bytes") {
		t.Errorf("over the limit: err = %v", err)
	}
	for _, missing := range []string{"/etoile/other.yaml", "/nothere/config.yaml", "/etoile/config.yaml/x"} {
		if _, err := ReadFATFile(img, missing, 1<<20); !errors.Is(err, iofs.ErrNotExist) {
			t.Errorf("%s: err = %v, want fs.ErrNotExist", missing, err)
		}
	}
	if _, err := ReadFATFile(img, "/etoile", 1<<20); err == nil || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("a folder: err = %v", err)
	}
}

// TestReadFATFileMkfs reads a file written by the classic tools (mkfs.fat,
// mtools), as an operator would put a config on the ESP by hand.
func TestReadFATFileMkfs(t *testing.T) {
	for _, tool := range []string{"mkfs.fat", "mmd", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install dosfstools and mtools (make test-deps does)", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "esp.img")
	src := filepath.Join(dir, "config.yaml")
	const cfg = "kind: MachineConfig\n"
	if err := os.WriteFile(src, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"mkfs.fat", "-F", "32", "-C", "-n", "ETOILE-ESP", img, "65536"},
		{"mmd", "-i", img, "::/etoile"},
		{"mcopy", "-i", img, src, "::/etoile/config.yaml"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if got, err := ReadFATFile(img, "/etoile/config.yaml", 1<<20); err != nil || string(got) != cfg {
		t.Fatalf("got %q, %v; want %q", got, err, cfg)
	}
	// FAT16 is not read this way: the caller mounts it.
	img16 := filepath.Join(dir, "fat16.img")
	if out, err := exec.Command("mkfs.fat", "-F", "16", "-C", img16, "16384").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.fat -F 16: %v\n%s", err, out)
	}
	if _, err := ReadFATFile(img16, "/etoile/config.yaml", 1<<20); !errors.Is(err, ErrNotFAT32) {
		t.Fatalf("FAT16: err = %v, want ErrNotFAT32", err)
	}
}

// TestReadFATFileDamaged damages the boot sector, the FAT and the folders
// byte by byte: every read ends with an answer, never a panic or a hang.
func TestReadFATFileDamaged(t *testing.T) {
	img := fatImage(t, 40<<20, map[string]string{"/etoile/config.yaml": "kind: MachineConfig\n"})
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// Where the boot sector, the FAT's first sector and the root folder lie.
	v, err := openFAT32(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	regions := [][2]int64{{0, 512}, {v.fatStart, v.fatStart + 512}, {v.dataStart, v.dataStart + 512}}
	damageEach(orig, regions, 3, []byte{0x00, 0xFF, 0x41}, func(b []byte) {
		_, _ = readFATFile(bytes.NewReader(b), "bad.img", "/etoile/config.yaml", 1<<20)
	})
}
