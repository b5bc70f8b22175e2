package boot

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/mount"
	"github.com/etoile-os/etoile/agent/sysimage"

	"github.com/etoile-os/etoile/internal/xorriso"
)

// TestFindVolumeOpensWhatItIs: the ETOILE-CFG volume is told from its
// first bytes and opened with the filesystem they show (no FAT attempt for
// an ISO9660 volume); other devices are not opened, and a labelled device
// that does not open is skipped.
func TestFindVolumeOpensWhatItIs(t *testing.T) {
	dir := t.TempDir()
	iso := make([]byte, 64*1024) // the primary volume descriptor of an ISO9660 volume
	iso[32768] = 1
	copy(iso[32769:], "CD001")
	copy(iso[32768+40:], "ETOILE-CFG"+strings.Repeat(" ", 22))
	other := make([]byte, 64*1024)
	for name, data := range map[string][]byte{"vda": other, "vdb": iso, "vdc": iso} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	devs := []string{filepath.Join(dir, "vda"), filepath.Join(dir, "vdb"), filepath.Join(dir, "vdc")}
	var opens []string
	src, labelled, err := findVolume(devs, "ETOILE-CFG", func(dev, fstype string) (config.Source, error) {
		opens = append(opens, filepath.Base(dev)+" "+strings.Join(configFSTypes(fstype), ","))
		if filepath.Base(dev) == "vdb" {
			return nil, errors.New("bad superblock")
		}
		return RawVolumeSource{Device: dev, FSType: fstype}, nil
	})
	if raw, ok := src.(RawVolumeSource); err != nil || !ok || filepath.Base(raw.Device) != "vdc" {
		t.Fatalf("findVolume = %v, %v; want vdc", src, err)
	}
	if want := []string{"vdb iso9660", "vdc iso9660"}; !slices.Equal(opens, want) {
		t.Errorf("opens %q, want %q", opens, want)
	}
	if want := []string{devs[1], devs[2]}; !slices.Equal(labelled, want) {
		t.Errorf("labelled %q, want %q", labelled, want)
	}
	// Only the labelled one that failed: its error, and no volume.
	src, _, err = findVolume(devs[:2], "ETOILE-CFG", func(string, string) (config.Source, error) { return nil, errors.New("bad superblock") })
	if src != nil || err == nil || !strings.Contains(err.Error(), "vdb: bad superblock") {
		t.Errorf("findVolume = %v, %v; want none and vdb's error", src, err)
	}
	if err := configFSProblem("ext4"); err == nil || !strings.Contains(err.Error(), "it is ext4: a config volume is FAT or ISO9660") {
		t.Errorf("an ext4 config volume: %v", err)
	}
	for _, ok := range []string{"vfat", "iso9660", ""} {
		if err := configFSProblem(ok); err != nil {
			t.Errorf("a %q config volume: %v", ok, err)
		}
	}
	if got := configFSTypes(""); !slices.Equal(got, []string{"vfat", "iso9660"}) {
		t.Errorf("an unrecognised volume is tried as %q", got)
	}
}

// TestFindVolumeIgnoresTheLabelsCase: a volume labelled etoile-cfg
// (mkfs.fat -n etoile-cfg, xorriso -V etoile-cfg keep the lower case) is
// the config volume, as cloud-init takes cidata and CIDATA, rather than
// passed over without a word.
func TestFindVolumeIgnoresTheLabelsCase(t *testing.T) {
	dir := t.TempDir()
	iso := make([]byte, 64*1024)
	iso[32768] = 1
	copy(iso[32769:], "CD001")
	copy(iso[32768+40:], "etoile-cfg"+strings.Repeat(" ", 22))
	fat := make([]byte, 64*1024) // a FAT16 boot sector: its label at 43, "FAT16" at 54
	copy(fat[43:], "Etoile-Cfg FAT16   ")
	fat[510], fat[511] = 0x55, 0xAA
	for name, data := range map[string][]byte{"vda": iso, "vdb": fat} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"vda", "vdb"} {
		dev := filepath.Join(dir, name)
		src, labelled, err := findVolume([]string{dev}, config.VolumeLabel, func(dev, fstype string) (config.Source, error) {
			return RawVolumeSource{Device: dev, FSType: fstype}, nil
		})
		if raw, ok := src.(RawVolumeSource); err != nil || !ok || raw.Device != dev || !slices.Equal(labelled, []string{dev}) {
			t.Errorf("%s: findVolume = %v, %q, %v; want it found", name, src, labelled, err)
		}
	}
}

// TestConfigVolumeOfAnotherFilesystem: a volume labelled ETOILE-CFG whose
// filesystem the agent does not read (exFAT, which formatting tools choose
// for large sticks; ext4) is refused with what to use instead, and never
// mounted.
func TestConfigVolumeOfAnotherFilesystem(t *testing.T) {
	for fstype, want := range map[string]string{
		"exfat": "it is exfat: a config volume is FAT (FAT12, FAT16 or FAT32; exFAT is another filesystem, which the agent does not read) or ISO9660, as cloud-init's NoCloud (mkfs.vfat -n ETOILE-CFG",
		"ext4":  "it is ext4: a config volume is FAT or ISO9660",
		"ntfs":  "it is ntfs: a config volume is FAT or ISO9660",
	} {
		m := &Machine{}
		src, err := m.openConfigVolume(context.Background(), filepath.Join(t.TempDir(), "vdb"), fstype, func(string, ...any) {},
			func(context.Context, string, string, string) error {
				t.Errorf("%s: mounted", fstype)
				return nil
			})
		if src != nil || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, %v; want %q", fstype, src, err, want)
		}
	}
}

// TestRawVolumeSource reads config.yaml from ISO9660 and FAT32 volumes
// without mounting them; a volume without one is config.ErrNotFound (the
// next source is read), one it cannot read is another error (it is mounted).
func TestRawVolumeSource(t *testing.T) {
	for _, tool := range []string{"xorriso", "mkfs.fat", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install xorriso, dosfstools and mtools (make test-deps does)", tool)
		}
	}
	dir := t.TempDir()
	const cfg = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n"
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	iso, fat, empty, fat16 := filepath.Join(dir, "cfg.iso"), filepath.Join(dir, "cfg.img"), filepath.Join(dir, "empty.iso"), filepath.Join(dir, "fat16.img")
	for _, args := range [][]string{
		{"xorriso", "-as", "mkisofs", "-R", "-J", "-V", "ETOILE-CFG", "-o", iso, src},
		{"xorriso", "-as", "mkisofs", "-R", "-V", "ETOILE-CFG", "-o", empty, t.TempDir()},
		{"mkfs.fat", "-F", "32", "-C", "-n", "ETOILE-CFG", fat, "65536"},
		{"mcopy", "-i", fat, filepath.Join(src, "config.yaml"), "::/config.yaml"},
		{"mkfs.fat", "-F", "16", "-C", "-n", "ETOILE-CFG", fat16, "16384"},
	} {
		run := func() ([]byte, error) { return exec.Command(args[0], args[1:]...).CombinedOutput() }
		if args[0] == "xorriso" {
			run = func() ([]byte, error) { return xorriso.Run(args[1:]...) }
		}
		if out, err := run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	for _, c := range []struct{ dev, fstype string }{{iso, "iso9660"}, {fat, "vfat"}} {
		s := RawVolumeSource{Device: c.dev, FSType: c.fstype}
		if got, err := s.Read(context.Background()); err != nil || string(got) != cfg {
			t.Errorf("%s: %q, %v; want %q", c.fstype, got, err, cfg)
		}
		if !strings.Contains(s.Name(), "ETOILE-CFG") || !strings.Contains(s.Name(), c.dev) {
			t.Errorf("name %q", s.Name())
		}
	}
	if _, err := (RawVolumeSource{Device: empty, FSType: "iso9660"}).Read(context.Background()); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("a volume without config.yaml: err = %v, want config.ErrNotFound", err)
	}
	for _, c := range []struct{ dev, fstype string }{{fat16, "vfat"}, {iso, "ext4"}} {
		if _, err := (RawVolumeSource{Device: c.dev, FSType: c.fstype}).Read(context.Background()); err == nil || errors.Is(err, config.ErrNotFound) {
			t.Errorf("%s as %s: err = %v, want an error that makes the boot mount it", filepath.Base(c.dev), c.fstype, err)
		}
	}
}

// TestMountReadOnlyDoesNotPileUp mounts ext4 volumes (an installed
// machine's state partition) on real loop devices the way a node waiting for
// its config does, read after read: the same device at the same folder
// stays one mount, another device replaces it.
func TestMountReadOnlyDoesNotPileUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("loop devices and mounts need root: run the tests as root (make test does, as CI)")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Fatal("mkfs.ext4 is missing: install e2fsprogs (make test-deps does)")
	}
	dir := t.TempDir()
	var devs []string
	for _, name := range []string{"a.img", "b.img"} {
		img := filepath.Join(dir, name)
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "ETOILE-STATE", img, "8M").CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		dev, err := mount.Linux{}.AttachLoop(img)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { detachLoop(dev) })
		devs = append(devs, dev)
	}
	at := filepath.Join(dir, "cfg")
	t.Cleanup(func() {
		for unix.Unmount(at, unix.MNT_DETACH) == nil {
		}
	})
	mounts := func() []string {
		data, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) > 4 && f[4] == at {
				out = append(out, l)
			}
		}
		return out
	}
	for range 3 {
		if err := MountReadOnly(devs[0], at, []string{"ext4"}); err != nil {
			t.Fatal(err)
		}
	}
	if m := mounts(); len(m) != 1 || !strings.Contains(m[0], " "+devs[0]+" ") || !strings.Contains(m[0], " ro,") {
		t.Fatalf("three mounts of %s at %s gave:\n%s", devs[0], at, strings.Join(m, "\n"))
	}
	if err := MountReadOnly(devs[1], at, []string{"ext4"}); err != nil {
		t.Fatal(err)
	}
	if m := mounts(); len(m) != 1 || !strings.Contains(m[0], " "+devs[1]+" ") {
		t.Fatalf("another device mounted at %s gave:\n%s", at, strings.Join(m, "\n"))
	}
}

// TestMountReadOnlyWritesNothing: an ext4 state partition left needing
// journal recovery (a power loss) is mounted and read without a byte of
// it changing — ext4 replays its journal even on a read-only mount, unless
// the device is read-only.
func TestMountReadOnlyWritesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("loop devices and mounts need root: run the tests as root (make test does, as CI)")
	}
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install e2fsprogs (make test-deps does)", tool)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("role: server\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "config.yaml"), filepath.Join(src, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "state.img")
	for _, cmd := range [][]string{
		{"mkfs.ext4", "-q", "-F", "-L", "ETOILE-STATE", "-d", src, img, "8M"},
		{"debugfs", "-w", "-R", "feature needs_recovery", img}, // as a power loss leaves it
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd[0], err, out)
		}
	}
	before, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// Attached writable, as a disk is: the kernel could write to it.
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { detachLoop(dev) })
	at := filepath.Join(dir, "state")
	if err := MountReadOnly(dev, at, []string{"ext4"}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(at, "config.yaml"))
	for unix.Unmount(at, unix.MNT_DETACH) == nil {
	}
	if err != nil || string(got) != "role: server\n" {
		t.Errorf("config.yaml on the state partition: %q, %v", got, err)
	}
	detachLoop(dev)
	after, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("mounting the state partition read-only wrote to it")
	}
}

// detachLoop makes loop device dev writable again (MountReadOnly set it
// read-only, which would outlive it for the next image attached there) and
// detaches it.
func detachLoop(dev string) {
	if f, err := os.Open(dev); err == nil {
		_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, 0)
		f.Close()
	}
	_ = exec.Command("losetup", "-d", dev).Run()
}

// TestLookLogOnlyChanges: a look that finds what the previous one found is
// not logged again (a node waiting for its config looks every 10 s), even
// when an error's wording differs; a different finding is.
func TestLookLogOnlyChanges(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	var l lookLog
	found := func(dev, reason string) []logLine {
		return []logLine{
			{slog.LevelInfo, "reading the config volume without mounting it failed: mounting it", []any{"device", dev, "reason", reason}},
			{slog.LevelWarn, "mounting the config volume", []any{"reason", reason}},
		}
	}
	l.log(log, found("/dev/sda", "I/O error at sector 1"))
	l.log(log, found("/dev/sda", "I/O error at sector 2"))
	if n := strings.Count(out.String(), "mounting the config volume"); n != 1 {
		t.Errorf("the same finding logged %d times:\n%s", n, out.String())
	}
	l.log(log, found("/dev/sdb", "I/O error"))
	l.log(log, nil) // nothing found
	l.log(log, found("/dev/sdb", "I/O error"))
	if n := strings.Count(out.String(), "device=/dev/sdb"); n != 2 {
		t.Errorf("a new device, gone, then back: logged %d times, want 2:\n%s", n, out.String())
	}
}

// TestConfigVolumeThatHangsIsNotMounted: a config volume whose raw read
// does not end (a FIFO stands in for a failing stick) is given up after the
// device wait and not mounted: the kernel's mount would block on it holding
// the lock the root's switch takes. A volume whose raw read fails quickly
// (FAT16, which is read only mounted) is mounted.
func TestConfigVolumeThatHangsIsNotMounted(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "sdb")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() { // let the blocked read end
		if f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}()
	short := filepath.Join(dir, "sdc") // too short for a FAT32 boot sector
	if err := os.WriteFile(short, []byte("not FAT32"), 0o600); err != nil {
		t.Fatal(err)
	}
	sysimage.DeviceReads.Set(50*time.Millisecond, nil)
	defer sysimage.DeviceReads.Set(0, nil)
	m := &Machine{log: slog.New(slog.DiscardHandler)}
	var mounted []string
	mountFS := func(_ context.Context, dev, _, _ string) error {
		mounted = append(mounted, dev)
		return nil
	}
	info := func(string, ...any) {}
	done := make(chan error, 1)
	go func() {
		_, err := m.openConfigVolume(context.Background(), fifo, "vfat", info, mountFS)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "does not answer") || !strings.Contains(err.Error(), fifo) {
			t.Errorf("a config volume that hangs: err = %v, want one naming %s that does not answer", err, fifo)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("opening a config volume that hangs did not end")
	}
	if len(mounted) != 0 {
		t.Errorf("mounted %v: a device that does not answer must not be mounted", mounted)
	}
	src, err := m.openConfigVolume(context.Background(), short, "vfat", info, mountFS)
	if err != nil || !slices.Equal(mounted, []string{short}) {
		t.Fatalf("a volume the raw read cannot read: mounted %v, err %v; want it mounted", mounted, err)
	}
	if src.Name() != config.VolumeSource(ConfigVolumeDir).Name() {
		t.Errorf("source %q, want the mounted volume's", src.Name())
	}
}
