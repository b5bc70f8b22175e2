package media

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteRawESPTooSmall: when the kernel and initramfs overflow the ESP,
// the error names the files with their sizes and says what to do (a
// smaller initramfs: fewer modules), not "see FATSize".
func TestWriteRawESPTooSmall(t *testing.T) {
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.img")
	writeFile(t, initrd, randomBytes(30<<20, 3), 0o644)
	opts := rawOptions(t)
	opts.ESPSize = MinFATSize
	opts.ESPFiles = append(espFiles(t), File{Path: "/etoile/a/initrd.img", Source: initrd})
	dst := filepath.Join(dir, "etoile.raw")
	err := WriteRaw(dst, opts)
	if err == nil {
		t.Fatal("a 34 MiB ESP took 43 MiB of files")
	}
	msg := err.Error()
	for _, want := range []string{
		`"ETOILE-ESP"`, "34 MiB", "too small",
		"/etoile/a/initrd.img 30 MiB", "/etoile/vmlinuz 9.0 MiB", "/loader/loader.conf 32 bytes", // the files, largest first
		"initramfs smaller", "modules list", "initramfs.compression: xz", "RawOptions.ESPSize",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "see FATSize") {
		t.Errorf("error points an etoile build user at FATSize:\n%s", msg)
	}
	if i, j := strings.Index(msg, "/etoile/a/initrd.img"), strings.Index(msg, "/etoile/vmlinuz"); i > j {
		t.Errorf("files not listed largest first:\n%s", msg)
	}
	var full *FATFullError
	if !errors.As(err, &full) || full.Size != MinFATSize || len(full.Files) != len(opts.ESPFiles) || full.Need <= full.Room {
		t.Errorf("error %#v is not a FATFullError for the %d files", full, len(opts.ESPFiles))
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed write", dst)
	}
}

// TestWriteFATFullWhileWriting: files that pass the up-front count but run
// go-diskfs out of clusters (long names take more listing entries than it
// counts) get the same listing, from the write that failed.
func TestWriteFATFullWhileWriting(t *testing.T) {
	var names []File
	for i := 0; i < 200; i++ {
		names = append(names, File{Path: fmt.Sprintf("/names/%03d-%s", i, strings.Repeat("long-name-", 10)), Data: []byte{1}})
	}
	dir := t.TempDir()
	// Learn the room from an image far too small.
	err := WriteFAT(filepath.Join(dir, "probe.img"), MinFATSize, append(names, File{Path: "/zzz", Data: make([]byte, 40<<20)}), FATOptions{})
	var full *FATFullError
	if !errors.As(err, &full) || full.Room == 0 {
		t.Fatalf("probe: %v", err)
	}
	// Exactly the room by the up-front count: it passes, the write fails.
	big := full.Room - (full.Need - 40<<20)
	err = WriteFAT(filepath.Join(dir, "x.img"), MinFATSize, append(names, File{Path: "/zzz", Data: make([]byte, big)}), FATOptions{})
	if !errors.As(err, &full) || full.File != "/zzz" || full.Err == nil {
		t.Fatalf("error %v, want a FATFullError from writing /zzz", err)
	}
	for _, want := range []string{"full writing /zzz", "no space left", "201 files", "/zzz " + sizeString(big), "FATSize(files)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
