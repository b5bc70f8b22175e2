package image

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// readFrom reads the file p of a go-diskfs filesystem.
func readFrom(t *testing.T, fs filesystem.FileSystem, p string) string {
	t.Helper()
	f, err := fs.OpenFile(p, os.O_RDONLY)
	if err != nil {
		t.Fatalf("opening %s: %v", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("reading %s: %v", p, err)
	}
	return string(data)
}

// TestBuiltMediaCommandLines builds the default image (without K3s, with
// only the modules its outputs need, with Debian's kernel from the cache) and reads the command line of each boot
// path back from the media: the ISO's ISOLINUX and systemd-boot entries
// and the raw disk's loader entry start with the build's own arguments
// (etoile.verity=, then etoile.slot=a on the disk), before the consoles and
// the spec's kernel.cmdline, so that nothing of the spec hides them. It also
// checks that every file landed in the output folder was synced to the
// disk under its work-folder name (before its rename), and the output
// folder after all of them were in place.
func TestBuiltMediaCommandLines(t *testing.T) {
	cache, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	agent := buildAgent(t, "")
	tmp := t.TempDir()
	spec := specWithoutK3s(t, tmp)
	if strings.Join(spec.Kernel.Cmdline, " ") != "quiet cryptomgr.notests" {
		t.Fatalf("the default spec's kernel.cmdline is %q: update this test", spec.Kernel.Cmdline)
	}
	// What the three outputs need, no more: a small initramfs.
	spec.Modules = []string{"squashfs", "overlay", "loop", "isofs", "sr_mod", "sd_mod", "usb-storage", "dm_verity"}
	out, err := filepath.Abs(filepath.Join(tmp, "out"))
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu        sync.Mutex
		synced    []string // paths, in order
		atDirSync []string // what out held when it was synced
	)
	t.Cleanup(func() { fsync = (*os.File).Sync })
	fsync = func(f *os.File) error {
		mu.Lock()
		defer mu.Unlock()
		synced = append(synced, f.Name())
		if f.Name() == out {
			ents, _ := os.ReadDir(out)
			for _, e := range ents {
				atDirSync = append(atDirSync, e.Name())
			}
		}
		return f.Sync()
	}
	b := &Builder{Spec: spec, OutDir: out, CacheDir: cache, AgentPath: agent, Epoch: 1}
	res, err := b.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	verity := `etoile\.verity=[0-9a-f]{64}:[0-9a-f]{64}`
	tail := ` console=tty0 console=ttyS0,115200 quiet cryptomgr\.notests`
	check := func(where, got, want string) {
		t.Helper()
		if !regexp.MustCompile(`^` + want + `$`).MatchString(got) {
			t.Errorf("%s: %q, want it to match %s", where, got, want)
		}
	}
	line := func(text, prefix string) string {
		for l := range strings.SplitSeq(text, "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
				return s
			}
		}
		return ""
	}

	// The raw disk: its ESP is partition 1.
	raw, err := diskfs.Open(filepath.Join(out, "etoile-amd64.raw"), diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	esp, err := raw.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	check("the raw disk's loader entry", line(readFrom(t, esp, "/loader/entries/etoile-a.conf"), "options "), verity+` etoile\.slot=a`+tail)

	// The ISO: ISOLINUX (BIOS), and systemd-boot in the El Torito EFI image.
	f, err := os.Open(filepath.Join(out, "etoile-amd64.iso"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	iso, err := iso9660.Read(file.New(f, true), st.Size(), 0, 2048)
	if err != nil {
		t.Fatal(err)
	}
	check("the ISO's isolinux.cfg", line(readFrom(t, iso, "/isolinux/isolinux.cfg"), "APPEND "), `initrd=/boot/initrd\.img `+verity+tail)
	efiboot := filepath.Join(tmp, "efiboot.img")
	if err := os.WriteFile(efiboot, []byte(readFrom(t, iso, "/boot/efiboot.img")), 0o644); err != nil {
		t.Fatal(err)
	}
	ef, err := os.Open(efiboot)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	est, _ := ef.Stat()
	fat, err := fat32.Read(file.New(ef, true), est.Size(), 0, 512)
	if err != nil {
		t.Fatal(err)
	}
	check("the ISO's systemd-boot entry", line(readFrom(t, fat, "/loader/entries/etoile.conf"), "options "), verity+tail)

	// Synced: each landed file in the work folder (before its rename), then
	// the output folder holding them all.
	mu.Lock()
	defer mu.Unlock()
	dirAt := -1
	for i, p := range synced {
		if p == out {
			dirAt = i
		}
	}
	if dirAt < 0 {
		t.Fatalf("the output folder was not synced after the renames (synced: %q)", synced)
	}
	landed := map[string]string{ // artifact → its file in the work folder
		"etoile-amd64-initramfs.img": "initramfs.img", "etoile-amd64-system.sqfs": "system.sqfs",
		"etoile-amd64-vmlinuz": "land-etoile-amd64-vmlinuz", "etoile-amd64.iso": "etoile.iso", "etoile-amd64.raw": "etoile.raw",
		"etoile-amd64.spdx.json": "etoile-amd64.spdx.json", "SHA256SUMS": "SHA256SUMS",
	}
	if len(res.Artifacts)+1 != len(landed) {
		t.Errorf("the build made %d artifacts and SHA256SUMS, the test knows %d", len(res.Artifacts), len(landed)-1)
	}
	for name, staged := range landed {
		found := false
		for _, p := range synced[:dirAt] {
			if filepath.Base(p) == staged && strings.HasPrefix(filepath.Base(filepath.Dir(p)), workPrefix) && filepath.Dir(filepath.Dir(p)) == out {
				found = true
			}
		}
		if !found {
			t.Errorf("%s was not synced in the work folder (as %s) before it was renamed into place (synced: %q)", name, staged, synced)
		}
		if !strings.Contains(strings.Join(atDirSync, "\n")+"\n", name+"\n") {
			t.Errorf("the output folder was synced before %s was in it (it held %q)", name, atDirSync)
		}
	}
}

// TestOutDirDanglingSymlink: -o naming a symlink to nothing says so, and
// what to do, not "mkdir: file exists".
func TestOutDirDanglingSymlink(t *testing.T) {
	tmp := t.TempDir()
	agent := buildAgent(t, "")
	spec, err := ParseSpec(DefaultSpecYAML(), tmp)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "dangl")
	if err := os.Symlink(filepath.Join(tmp, "gone"), link); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{link, filepath.Join(link, "out")} {
		b := &Builder{Spec: spec, OutDir: out, CacheDir: filepath.Join(tmp, "cache"), AgentPath: agent, Epoch: 1}
		_, err := b.Build(context.Background())
		for _, w := range []string{link + " is a dangling symlink", filepath.Join(tmp, "gone"), "remove it", "-o"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("-o %s: %v, want it to say %q", out, err, w)
			}
		}
		if _, err := os.Lstat(link); err != nil {
			t.Errorf("the symlink went: %v", err)
		}
	}
}

// specWithoutK3s is the default spec, read in dir, without K3s (k3s.source:
// none): media builds that need no K3s release.
func specWithoutK3s(t *testing.T, dir string) *ImageSpec {
	t.Helper()
	yaml := strings.Replace(string(DefaultSpecYAML()), "  source: release\n", "  source: none\n", 1)
	spec, err := ParseSpec([]byte(yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}
