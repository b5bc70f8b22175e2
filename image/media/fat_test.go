package media

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func espFiles(t *testing.T) []File {
	t.Helper()
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	writeFile(t, kernel, randomBytes(9<<20+77, 7), 0o644)
	return []File{
		{Path: "/EFI/BOOT/BOOTX64.EFI", Data: randomBytes(120<<10, 8)},
		{Path: "/loader/loader.conf", Data: []byte("timeout 0\ndefault etoile-a.conf\n")},
		{Path: "/loader/entries/etoile-a.conf", Data: []byte("title Étoile A\nlinux /etoile/vmlinuz\n")},
		{Path: "/etoile/vmlinuz", Source: kernel},
		{Path: "/etoile/initramfs-with-a-long-name.img", Data: randomBytes(3<<20+5, 9)},
		{Path: "/empty", Data: []byte{}},
	}
}

// mtoolsEnv lets mtools read an image without a config file and without
// its sanity checks on odd geometry.
func mtoolsEnv() []string { return append(os.Environ(), "MTOOLS_SKIP_CHECK=1") }

// checkFATContents reads every file back with mtools (image@@offset) and
// checks fsck.vfat finds nothing to fix.
func checkFATContents(t *testing.T, image string, offset int64, files []File, label string, volID uint32) {
	t.Helper()
	mcopy := tool(t, "mcopy", "mtools")
	mdir := tool(t, "mdir", "mtools")
	img := fmt.Sprintf("%s@@%d", image, offset)
	for _, f := range files {
		want := f.Data
		if want == nil {
			var err error
			if want, err = os.ReadFile(f.Source); err != nil {
				t.Fatal(err)
			}
		}
		out := filepath.Join(t.TempDir(), "out")
		cmd := execEnv(mtoolsEnv(), mcopy, "-n", "-i", img, "::"+f.Path, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("mcopy %s: %v\n%s", f.Path, err, b)
			continue
		}
		got, _ := os.ReadFile(out)
		if string(got) != string(want) {
			t.Errorf("%s read back with mcopy differs (%d bytes, want %d)", f.Path, len(got), len(want))
		}
	}
	b, err := execEnv(mtoolsEnv(), mdir, "-i", img, "::/").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, b)
	}
	listing := string(b)
	if !strings.Contains(listing, "Volume in drive : is "+label) {
		t.Errorf("mdir does not show label %q:\n%s", label, listing)
	}
	serial := fmt.Sprintf("%04X-%04X", volID>>16, volID&0xffff)
	if !strings.Contains(listing, serial) {
		t.Errorf("mdir does not show serial %s:\n%s", serial, listing)
	}
}

func TestWriteFAT(t *testing.T) {
	fsck := tool(t, "fsck.vfat", "dosfstools")
	files := espFiles(t)
	size, err := FATSize(files)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "efiboot.img")
	opts := FATOptions{Label: "ETOILE-EFI", VolumeID: 0x1234abcd, Epoch: 1700000000}
	if err := WriteFAT(dst, size, files, opts); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dst)
	if err != nil || st.Size() != size {
		t.Fatalf("image size %v (%v), want %d", st, err, size)
	}
	out := run(t, fsck, "-n", "-v", dst)
	for _, bad := range []string{"differ", "uninitialized", "Free cluster summary", "Leaving filesystem unchanged"} {
		if strings.Contains(out, bad) {
			t.Errorf("fsck.vfat -n reports %q:\n%s", bad, out)
		}
	}
	checkFATContents(t, dst, 0, files, "ETOILE-EFI", 0x1234abcd)
	mdir := tool(t, "mdir", "mtools")
	b, err := execEnv(append(mtoolsEnv(), "TZ=UTC"), mdir, "-i", dst, "::/loader/entries").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "2023-11-14  22:13") {
		t.Errorf("entry dates are not the epoch (2023-11-14 22:13): %v\n%s", err, b)
	}
}

func TestWriteFATReproducible(t *testing.T) {
	files := espFiles(t)
	opts := FATOptions{Label: "ETOILE-EFI", VolumeID: 7, Epoch: 1600000000}
	a := filepath.Join(t.TempDir(), "a.img")
	b := filepath.Join(t.TempDir(), "b.img")
	if err := WriteFAT(a, MinFATSize, files, opts); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // FAT times have 2 s resolution
	// Listing order must not matter.
	rev := append([]File(nil), files...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if err := WriteFAT(b, MinFATSize, rev, opts); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, a, b)
}

func TestWriteFATBadInput(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		size  int64
		files []File
		opts  FATOptions
		want  string
	}{
		{"too small", 1 << 20, nil, FATOptions{}, "minimum"},
		{"relative path", MinFATSize, []File{{Path: "EFI/x", Data: []byte{1}}}, FATOptions{}, "absolute"},
		{"missing source", MinFATSize, []File{{Path: "/x", Source: filepath.Join(dir, "nope")}}, FATOptions{}, "nope"},
		{"duplicate", MinFATSize, []File{{Path: "/x", Data: []byte{1}}, {Path: "/x", Data: []byte{2}}}, FATOptions{}, "twice"},
		{"long label", MinFATSize, nil, FATOptions{Label: "ABCDEFGHIJKL"}, "11"},
		{"does not fit", MinFATSize, []File{{Path: "/big", Data: make([]byte, 40<<20)}}, FATOptions{}, "/big"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(dir, tc.name+".img")
			err := WriteFAT(dst, tc.size, tc.files, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("%s exists after a failed write", dst)
			}
			if _, err := os.Stat(dst + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("%s.tmp left behind", dst)
			}
		})
	}
}
