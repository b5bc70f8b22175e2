//go:build qa

package qa

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVerity: the raw disk's system image is mounted through dm-verity.
// Intact, the boot logs the mapped line and gets ready; with a boot entry
// whose etoile.verity= root hash is another build's, the boot stops at
// mount-system saying so, before any mount; with a byte of
// the squashfs's first block flipped (a block the mount reads, past the
// superblock fields the agent reads itself), the mount fails with the
// mount-system error and the medium's fix, and the boot stops there.
func TestVerity(t *testing.T) {
	out := Artifacts(t, RawName)
	if err := RequireTools(SgdiskTool, MtoolsTool); err != nil {
		t.Fatal(err)
	}
	verified := regexp.MustCompile(`^etoile: system image mapped through dm-verity, every block checked as it is read root=[0-9a-f]{12} data_blocks=\d+\b`)
	t.Run("intact", func(t *testing.T) {
		t.Parallel()
		vm := Start(t, Config{Devices: []Device{OVMF{}, VirtioDisk{Path: filepath.Join(out, RawName)}, UserNIC{}}})
		vm.Ready(ReadyTimeout)
		vm.Find(verified, time.Second)
	})
	t.Run("damaged", func(t *testing.T) {
		t.Parallel()
		disk := filepath.Join(t.TempDir(), "damaged.raw")
		if err := copyFile(filepath.Join(out, RawName), disk); err != nil {
			t.Fatal(err)
		}
		b, err := toolCommand("sgdisk", "-i", "2", disk).CombinedOutput()
		name := regexp.MustCompile(`Partition name: '([^']*)'`).FindSubmatch(b)
		first := regexp.MustCompile(`First sector: (\d+)`).FindSubmatch(b)
		if err != nil || first == nil || name == nil || string(name[1]) != "ETOILE-A" {
			t.Fatalf("sgdisk -i 2 (want ETOILE-A): %v\n%s", err, b)
		}
		start, _ := strconv.ParseInt(string(first[1]), 10, 64)
		f, err := os.OpenFile(disk, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		at := start*512 + 2048 // inside block 0, past the 96-byte superblock
		var c [1]byte
		if _, err := f.ReadAt(c[:], at); err != nil {
			t.Fatal(err)
		}
		c[0] ^= 0xff
		if _, err := f.WriteAt(c[:], at); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		bootStopsAtMountSystem(t, disk, "the medium is damaged")
	})
	t.Run("another build's root hash", func(t *testing.T) {
		t.Parallel()
		disk := filepath.Join(t.TempDir(), "other.raw")
		if err := copyFile(filepath.Join(out, RawName), disk); err != nil {
			t.Fatal(err)
		}
		// The ESP's loader entry, its root hash's first digit changed.
		const entry = "::/loader/entries/etoile-a.conf"
		img := disk + "@@1M" // the ESP starts at 1 MiB
		b, err := toolCommand("mtype", "-i", img, entry).Output()
		if err != nil {
			t.Fatalf("mtype %s: %v", entry, err)
		}
		arg := regexp.MustCompile(`etoile\.verity=([0-9a-f])`).FindSubmatchIndex(b)
		if arg == nil {
			t.Fatalf("%s has no etoile.verity=:\n%s", entry, b)
		}
		if b[arg[2]] == '0' {
			b[arg[2]] = '1'
		} else {
			b[arg[2]] = '0'
		}
		conf := filepath.Join(t.TempDir(), "etoile-a.conf")
		if err := os.WriteFile(conf, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if o, err := toolCommand("mcopy", "-o", "-i", img, conf, entry).CombinedOutput(); err != nil {
			t.Fatalf("mcopy: %v\n%s", err, o)
		}
		bootStopsAtMountSystem(t, disk, "another build's image")
	})
}

// bootStopsAtMountSystem boots the raw disk under OVMF and wants the
// mount-system error line saying want, and the boot stopped there (no
// ready line, no kernel panic).
func bootStopsAtMountSystem(t *testing.T, disk, want string) {
	t.Helper()
	vm := Start(t, Config{Devices: []Device{OVMF{}, VirtioDisk{Path: disk}, UserNIC{}}})
	m := vm.WaitFor(ErrorRE, ReadyTimeout)
	t.Logf("error line: %s", m.Line)
	if !strings.Contains(m.Line, "step=mount-system") || !strings.Contains(m.Line, want) {
		t.Errorf("want the mount-system error saying %q, got: %s", want, m.Line)
	}
	vm.Absent(regexp.MustCompile(`Kernel panic|Attempted to kill init|^etoile: ready\b`), 5*time.Second)
}
