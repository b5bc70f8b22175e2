package boot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestLockedUnlocksAfterAPanic: the boot's locks (the network result, /etc)
// taken through locked are free again once a panic in between is
// recovered: the status, resolv.conf and the ready line take them.
func TestLockedUnlocksAfterAPanic(t *testing.T) {
	var mu sync.Mutex
	func() {
		defer func() { _ = recover() }()
		locked(&mu, func() { panic("in between") })
	}()
	if !mu.TryLock() {
		t.Fatal("the lock is still held after the panic")
	}
	mu.Unlock()
}

// TestShutdownStepsCrashIsAnErrorLine: a panic while a filesystem is
// released or synced at shutdown (each in a goroutine of PID 1's) prints
// an error line with where it happened, and the shutdown goes on.
func TestShutdownStepsCrashIsAnErrorLine(t *testing.T) {
	var out bytes.Buffer
	log := NewLogger(&out, nil)
	unmount := func(target string) error {
		if target == "/a" {
			var m map[string]bool
			m[target] = true // a runtime panic
		}
		return nil
	}
	remount := func(string) error { return errors.New("busy") }
	r := releaseFilesystems(log, []Mount{{Target: "/a", Source: "/dev/sda1"}, {Target: "/b", Source: "/dev/sdb1"}}, unmount, remount, 10*time.Second)
	if len(r.Left) != 1 || !strings.HasPrefix(r.Left[0], "/a (") || len(r.Unmounted) != 1 || r.Unmounted[0] != "/b" {
		t.Errorf("released %+v: want /a left (its unmount crashed, its remount failed) and /b unmounted", r)
	}
	if !syncWithin(log, func() { panic("sync crashed") }, 10*time.Second) {
		t.Error("a sync that crashed was waited for until the end")
	}
	got := out.String()
	for _, want := range []string{
		"etoile: error: releasing /a crashed reason=\"assignment to entry in nil map\" stack=\"boot.TestShutdownStepsCrashIsAnErrorLine.func1 (safety_test.go:",
		"etoile: error: syncing the filesystems crashed reason=\"sync crashed\"",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
}

// TestBootMakesItsRunFolderPrivate: /run/etoile holds the mounted boot
// medium and config volumes (whose config.yaml carries the cluster token
// and registry passwords): the boot makes it root's only (0700), also when
// it was there already with another mode.
func TestBootMakesItsRunFolderPrivate(t *testing.T) {
	root := machineRoot(t, "BOOT_IMAGE=/isolinux/vmlinuz console=tty0 console=ttyS0")
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "not really squashfs"})
	fakeroot.Block(t, root, "sr0", false, "", iso)
	dir := filepath.Join(root, "run/etoile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, out, _, _, err := boot(t, root, Options{}); err != nil {
		t.Fatalf("boot failed: %v\n%s", err, out)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Errorf("/run/etoile has mode %s, want 0700 (root's only)", strconv.FormatUint(uint64(perm), 8))
	}
}

// TestFATVolumesAreRootsOnly: FAT has no owners or modes, so a FAT config
// volume or ESP (a config.yaml with the cluster's secrets) is mounted with
// no permission for group or others; ext4 without replaying its journal.
func TestFATVolumesAreRootsOnly(t *testing.T) {
	opts := map[string]string{}
	for _, o := range strings.Split(mountOptions("vfat"), ",") {
		k, v, _ := strings.Cut(o, "=")
		opts[k] = v
	}
	mask := func(k string) uint64 {
		if opts["umask"] != "" {
			k = "umask"
		}
		n, err := strconv.ParseUint(opts[k], 8, 32)
		if err != nil {
			t.Fatalf("vfat options %q: no %s", mountOptions("vfat"), k)
		}
		return n
	}
	if f := mask("fmask"); f&0o077 != 0o077 {
		t.Errorf("vfat files mask %03o lets group or others in", f)
	}
	if d := mask("dmask"); d&0o077 != 0o077 {
		t.Errorf("vfat folders mask %03o lets group or others in", d)
	}
	if got := mountOptions("ext4"); got != "noload" {
		t.Errorf("ext4 options %q, want noload", got)
	}
}
