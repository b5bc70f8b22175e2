package boot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/efivar"
	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/agent/kmod"
	"github.com/etoile-os/etoile/agent/mount"
	"golang.org/x/sys/unix"
)

const release = "6.1.0-50-amd64"

type fixedClock time.Duration

func (c fixedClock) SinceBoot() time.Duration { return time.Duration(c) }

// machineRoot lays out what a QEMU q35 machine with a virtio disk and a
// virtio NIC shows at boot, with the kernel's modules.
func machineRoot(t *testing.T, cmdline string) string {
	t.Helper()
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"proc/cmdline":                 cmdline + "\n",
		"sys/class/tty/console/active": "tty0 ttyS0\n",
		"dev/tty0":                     "",
		"dev/ttyS0":                    "",
		"sys/bus/pci/devices/0000:00:02.0/modalias": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n",
		"sys/bus/pci/devices/0000:00:03.0/modalias": "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
		// What virtio_pci would make appear; a recorder loads nothing, so
		// they are there from the start.
		"sys/bus/virtio/devices/virtio0/modalias": "virtio:d00000002v00001AF4\n",
		"sys/bus/virtio/devices/virtio1/modalias": "virtio:d00000001v00001AF4\n",
		"etc/etoile/modules":                      "# written by the image build\nloop\nsquashfs\noverlay\nisofs\nwireguard-not-shipped\n",
	})
	fakeroot.Modules(t, root, release, "../kmod/testdata/modules.dep", "../kmod/testdata/modules.alias")
	return root
}

func boot(t *testing.T, root string, opts Options) (Ready, string, *mount.Recorder, *kmod.Recorder, error) {
	t.Helper()
	var out bytes.Buffer
	mr, lr := &mount.Recorder{}, &kmod.Recorder{}
	opts.Root, opts.Stdout, opts.Mounter, opts.Loader = root, &out, mr, lr
	if opts.Clock == nil {
		opts.Clock = fixedClock(1500 * time.Millisecond)
	}
	if opts.WaitScale == 0 {
		opts.WaitScale = 0.01
	}
	m := New(opts)
	ready, err := m.Boot(context.Background())
	return ready, out.String(), mr, lr, err
}

func ops(r *mount.Recorder) []string {
	var s []string
	for _, o := range r.Recorded() {
		s = append(s, o.String())
	}
	return s
}

func TestBootISO(t *testing.T) {
	root := machineRoot(t, "BOOT_IMAGE=/isolinux/vmlinuz console=tty0 console=ttyS0")
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "not really squashfs"})
	fakeroot.Block(t, root, "vda", false, "", make([]byte, 1<<16))
	fakeroot.Block(t, root, "sr0", false, "", iso)

	ready, out, mr, lr, err := boot(t, root, Options{})
	if err != nil {
		t.Fatalf("boot failed: %v\n%s", err, out)
	}
	want := "etoile: ready version=dev boot=bios source=iso slot=none ip=none"
	if got := ready.String(); got != want {
		t.Errorf("ready line %q, want %q", got, want)
	}
	// Exactly one ready line on each console, and on stdout under --root.
	for _, c := range []string{"tty0", "ttyS0"} {
		b, err := os.ReadFile(filepath.Join(root, "dev", c))
		if err != nil || string(b) != want+"\n" {
			t.Errorf("console %s holds %q, want the ready line once", c, b)
		}
	}
	if strings.Count(out, "etoile: ready ") != 1 {
		t.Errorf("stdout shows the ready line %d times:\n%s", strings.Count(out, "etoile: ready "), out)
	}
	// Each step is logged with the boot clock and its duration, in order.
	stepRE := regexp.MustCompile(`(?m)^etoile: step=([a-z-]+) t=1\.50s( took=\S+)?( \S+)*$`)
	var steps []string
	for _, m := range stepRE.FindAllStringSubmatch(out, -1) {
		steps = append(steps, m[1])
		if m[1] != "ready" && !strings.HasPrefix(m[2], " took=") {
			t.Errorf("step %s has no duration (took=): %q", m[1], m[0])
		}
	}
	wantSteps := []string{"mount-api", "cmdline", "drivers", "find-image", "mount-system", "switch-root", "network", "ready", "late-modules"}
	if !slices.Equal(steps, wantSteps) {
		t.Errorf("steps %q, want %q\n%s", steps, wantSteps, out)
	}
	dev := filepath.Join(root, "dev", "sr0")
	wantOps := []string{
		"mount -t proc proc /proc ",
		"mount -t sysfs sysfs /sys ",
		"mount -t devtmpfs devtmpfs /dev mode=0755",
		"mount -t tmpfs tmpfs /dev/shm mode=1777",
		"mount -t devpts devpts /dev/pts mode=0620,ptmxmode=0666",
		"mount -t tmpfs tmpfs /run mode=0755",
		"mount -t cgroup2 cgroup2 /sys/fs/cgroup nsdelegate",
		"mount -t iso9660 " + dev + " /run/etoile/media ",
		"loop /run/etoile/media/etoile/system.sqfs /dev/loop0",
		"mount -t squashfs /dev/loop0 /run/etoile/system ",
		"mount -t tmpfs tmpfs /run/etoile/overlay mode=0755",
		"mount -t overlay overlay /sysroot lowerdir=/run/etoile/system,upperdir=/run/etoile/overlay/upper,workdir=/run/etoile/overlay/work",
		"mount -t  /init /sysroot/usr/bin/etoile-agent ",
		"mount -t   /sysroot/usr/bin/etoile-agent ",
		"mount -t  /lib/modules/" + release + " /sysroot/lib/modules/" + release + " ",
		"mount -t   /sysroot/lib/modules/" + release + " ",
		"switch-root /sysroot",
		"mount -t   / ",
	}
	if got := ops(mr); !slices.Equal(got, wantOps) {
		t.Errorf("mounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantOps, "\n"))
	}
	// After the switch every mount is made shared (mount --make-rshared /),
	// as systemd does: pods' mount propagation needs it.
	if rec := mr.Recorded(); len(rec) == 0 || rec[len(rec)-1].Flags != unix.MS_REC|unix.MS_SHARED {
		t.Errorf("the last mount is not --make-rshared /: %+v", rec[len(rec)-1])
	}
	loads := lr.Loaded()
	for _, m := range []string{"virtio_pci", "virtio_blk", "virtio_net", "loop", "squashfs", "overlay", "isofs", "cdrom"} {
		if !slices.Contains(loads, m) {
			t.Errorf("module %s not loaded; loaded %q", m, loads)
		}
	}
	if !strings.Contains(out, "module not in image module=wireguard_not_shipped") {
		t.Errorf("a listed module missing from the image is not warned about:\n%s", out)
	}
}

func TestBootDiskSlotUEFI(t *testing.T) {
	root := machineRoot(t, "console=ttyS0 etoile.slot=b")
	// The firmware booted from Boot0001: PciRoot(0x0)/Pci(0x2,0x0), the virtio disk.
	vars := "sys/firmware/efi/efivars/"
	fakeroot.Write(t, root, map[string]string{
		"sys/firmware/efi/runtime":                "",
		vars + "BootCurrent-" + efivar.GlobalGUID: "\x07\x00\x00\x00\x01\x00",
		vars + "Boot0001-" + efivar.GlobalGUID: "\x07\x00\x00\x00" + "\x01\x00\x00\x00\x16\x00" + "A\x00\x00\x00" +
			"\x02\x01\x0c\x00\xd0\x41\x03\x0a\x00\x00\x00\x00" + "\x01\x01\x06\x00\x00\x02" + "\x7f\xff\x04\x00",
		"sys/devices/pci0000:00/0000:00:02.0/modalias": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n",
	})
	fakeroot.Block(t, root, "vda", false, "", nil)
	fakeroot.Block(t, root, "vda1", true, "ETOILE-ESP", nil)
	fakeroot.Block(t, root, "vda2", true, "ETOILE-A", nil)
	fakeroot.Block(t, root, "vda3", true, "ETOILE-B", nil)
	ready, out, mr, _, err := boot(t, root, Options{})
	if err != nil {
		t.Fatalf("boot failed: %v\n%s", err, out)
	}
	if want := "etoile: ready version=dev boot=uefi source=disk slot=b ip=none"; ready.String() != want {
		t.Errorf("ready %q, want %q", ready.String(), want)
	}
	if want := "etoile: booted from option=Boot0001 path=PciRoot(0x0)/Pci(0x2,0x0) pci=0000:00:02.0"; !strings.Contains(out, want) {
		t.Errorf("console lacks %q:\n%s", want, out)
	}
	wantMount := "mount -t squashfs " + filepath.Join(root, "dev", "vda3") + " /run/etoile/system "
	if !slices.Contains(ops(mr), wantMount) {
		t.Errorf("mounts %q lack %q", ops(mr), wantMount)
	}
	for _, op := range ops(mr) {
		if strings.HasPrefix(op, "loop ") {
			t.Errorf("a slot partition is mounted directly, but a loop device was made: %s", op)
		}
	}
}

// loaderPartUUIDVar is the efivarfs file systemd-boot writes for
// LoaderDevicePartUUID: attributes, then the GUID in UTF-16LE upper case,
// NUL-terminated.
func loaderPartUUIDVar(guid string) string {
	v := "\x06\x00\x00\x00"
	for _, c := range guid + "\x00" {
		v += string(c) + "\x00"
	}
	return v
}

// gptDisk is a whole disk's first sectors: a GPT whose partitions have the
// unique GUIDs given, in order.
func gptDisk(t *testing.T, uuids ...string) []byte {
	t.Helper()
	d := make([]byte, 512*(2+4)) // MBR, header, 4 sectors of 128-byte entries
	copy(d[512:], "EFI PART")
	binary.LittleEndian.PutUint64(d[512+72:], 2)
	binary.LittleEndian.PutUint32(d[512+80:], uint32(len(uuids)))
	binary.LittleEndian.PutUint32(d[512+84:], 128)
	for i, u := range uuids {
		h, err := hex.DecodeString(strings.ReplaceAll(u, "-", ""))
		if err != nil || len(h) != 16 {
			t.Fatalf("bad GUID %q", u)
		}
		e := d[1024+128*i:]
		e[0] = 0x28 // any non-zero type
		// GPT stores the first three fields little-endian.
		g := []byte{h[3], h[2], h[1], h[0], h[5], h[4], h[7], h[6]}
		copy(e[16:], append(g, h[8:]...))
	}
	return d
}

// TestBootPicksTheBootDisksSlot: two disks hold Étoile's labels (a USB
// stick booted on a server whose disk has Étoile installed); the firmware's
// systemd-boot says which ESP it came from, and the system image and config
// of that disk are used, whatever the order of the names.
func TestBootPicksTheBootDisksSlot(t *testing.T) {
	root := machineRoot(t, "console=ttyS0 etoile.slot=a")
	vars := "sys/firmware/efi/efivars/"
	loader := loaderPartUUIDVar("2B4E6F10-AAAA-4BBB-8CCC-00000000000B")
	fakeroot.Write(t, root, map[string]string{
		"sys/firmware/efi/runtime":                         "",
		vars + "LoaderDevicePartUUID-" + efivar.LoaderGUID: loader,
	})
	fakeroot.Block(t, root, "vda", false, "", gptDisk(t, "1b4e6f10-aaaa-4bbb-8ccc-00000000000a", "1b4e6f10-aaaa-4bbb-8ccc-0000000000a2"))
	fakeroot.Block(t, root, "vda1", true, "ETOILE-ESP", nil)
	fakeroot.Block(t, root, "vda2", true, "ETOILE-A", nil)
	fakeroot.Block(t, root, "vdb", false, "", gptDisk(t, "2b4e6f10-aaaa-4bbb-8ccc-00000000000b", "2b4e6f10-aaaa-4bbb-8ccc-0000000000b2"))
	fakeroot.Block(t, root, "vdb1", true, "ETOILE-ESP", nil)
	fakeroot.Block(t, root, "vdb2", true, "ETOILE-A", nil)
	m := New(Options{Root: root, Stdout: io.Discard, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.01})
	if _, err := m.Boot(context.Background()); err != nil {
		t.Fatalf("boot failed: %v", err)
	}
	if m.Device != filepath.Join(root, "dev", "vdb2") || m.BootDisk != "vdb" {
		t.Errorf("device %s on disk %s, want vdb2 on vdb (the disk systemd-boot came from)", m.Device, m.BootDisk)
	}

	// Without the variable (BIOS, another loader): the first, with a warning.
	os.Remove(filepath.Join(root, vars, "LoaderDevicePartUUID-"+efivar.LoaderGUID))
	var out bytes.Buffer
	m = New(Options{Root: root, Stdout: &out, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.01})
	if _, err := m.Boot(context.Background()); err != nil {
		t.Fatalf("boot failed: %v", err)
	}
	if m.Device != filepath.Join(root, "dev", "vda2") || !strings.Contains(out.String(), "several devices hold the system image") ||
		!strings.Contains(out.String(), "all=vda2,vdb2") {
		t.Errorf("device %s; console:\n%s\nwant vda2 and a warning naming both", m.Device, out.String())
	}

	// The variable names a disk that never shows up: after the whole
	// (scaled) wait, the boot stops naming the GUID and the other disks;
	// another disk's image (its config, its state) is never taken.
	loader = loaderPartUUIDVar("3B4E6F10-AAAA-4BBB-8CCC-00000000000C")
	fakeroot.Write(t, root, map[string]string{vars + "LoaderDevicePartUUID-" + efivar.LoaderGUID: loader})
	out.Reset()
	m = New(Options{Root: root, Stdout: &out, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.01})
	_, err := m.Boot(context.Background())
	if err == nil || m.BootDisk != "" || m.Device != "" {
		t.Fatalf("boot = %v, device %q on disk %q; want it to stop, using no other disk", err, m.Device, m.BootDisk)
	}
	if msg := err.Error(); !strings.Contains(strings.ToLower(msg), "3b4e6f10-aaaa-4bbb-8ccc-00000000000c") || !strings.Contains(msg, "vda2,vdb2") {
		t.Errorf("error %q: want the GUID the firmware booted and the disks seen", msg)
	}
}

// TestBootWaitsForTheLoaderDiskPastTenSeconds: the disk the firmware booted
// (LoaderDevicePartUUID) appears 15 s (scaled) into the medium's wait, after
// another disk holding Étoile: the boot disk's slot is used, not the other's.
func TestBootWaitsForTheLoaderDiskPastTenSeconds(t *testing.T) {
	root := machineRoot(t, "console=ttyS0 etoile.slot=a")
	vars := "sys/firmware/efi/efivars/"
	fakeroot.Write(t, root, map[string]string{
		"sys/firmware/efi/runtime":                         "",
		vars + "LoaderDevicePartUUID-" + efivar.LoaderGUID: loaderPartUUIDVar("2B4E6F10-AAAA-4BBB-8CCC-00000000000B"),
	})
	fakeroot.Block(t, root, "vda", false, "", gptDisk(t, "1b4e6f10-aaaa-4bbb-8ccc-00000000000a", "1b4e6f10-aaaa-4bbb-8ccc-0000000000a2"))
	fakeroot.Block(t, root, "vda1", true, "ETOILE-ESP", nil)
	fakeroot.Block(t, root, "vda2", true, "ETOILE-A", nil)
	m := New(Options{Root: root, Stdout: io.Discard, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.05})
	// The other disk is seen; the boot disk comes once the slot's been
	// waited for beyond 10 s (scaled: 0.5 s of the 1.5 s wait).
	var seen atomic.Bool
	m.testHookFind = func() { seen.Store(true) }
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for !seen.Load() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(750 * time.Millisecond) // 15 s at this scale
		fakeroot.Block(t, root, "vdb", false, "", gptDisk(t, "2b4e6f10-aaaa-4bbb-8ccc-00000000000b", "2b4e6f10-aaaa-4bbb-8ccc-0000000000b2"))
		fakeroot.Block(t, root, "vdb1", true, "ETOILE-ESP", nil)
		fakeroot.Block(t, root, "vdb2", true, "ETOILE-A", nil)
	}()
	if _, err := m.Boot(context.Background()); err != nil {
		t.Fatalf("boot failed: %v", err)
	}
	if m.Device != filepath.Join(root, "dev", "vdb2") || m.BootDisk != "vdb" {
		t.Errorf("device %s on disk %s, want vdb2 on vdb (the disk systemd-boot came from)", m.Device, m.BootDisk)
	}
}

// TestLoaderPartUUIDWaitsForEFIVars: under UEFI the firmware's variables
// are mounted beside the first driver loads; the medium's choice does not
// read LoaderDevicePartUUID before that is done, and a read that gave up
// waiting is not kept: the next look reads it.
func TestLoaderPartUUIDWaitsForEFIVars(t *testing.T) {
	root := machineRoot(t, "console=ttyS0 etoile.slot=a")
	vars := "sys/firmware/efi/efivars/"
	fakeroot.Write(t, root, map[string]string{
		"sys/firmware/efi/runtime":                         "",
		vars + "LoaderDevicePartUUID-" + efivar.LoaderGUID: loaderPartUUIDVar("2B4E6F10-AAAA-4BBB-8CCC-00000000000B"),
	})
	m := New(Options{Root: root, Stdout: io.Discard, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.01})
	// The boot controller is still being looked for (efivarfs not mounted).
	m.bootCtlDone = make(chan struct{})
	if u := m.loaderPartUUID(); u != "" {
		t.Fatalf("loaderPartUUID before efivarfs = %q, want it to wait and give up", u)
	}
	m.opts.WaitScale = 1 // 5 s: the close below comes well before
	got := make(chan string)
	go func() { got <- m.loaderPartUUID() }()
	time.Sleep(10 * time.Millisecond)
	close(m.bootCtlDone)
	if u := <-got; !strings.EqualFold(u, "2B4E6F10-AAAA-4BBB-8CCC-00000000000B") {
		t.Errorf("loaderPartUUID once efivarfs is there = %q", u)
	}
}

func TestBootHTTP(t *testing.T) {
	image := bytes.Repeat([]byte("system image "), 5000)
	sum := sha256.Sum256(image)
	good := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(image) }))
	defer srv.Close()
	url := srv.URL + "/etoile-amd64-system.sqfs"

	t.Run("good", func(t *testing.T) {
		root := machineRoot(t, "console=ttyS0 etoile.system="+url+" etoile.system.sha256="+good)
		ready, out, mr, _, err := boot(t, root, Options{HTTP: srv.Client()})
		if err != nil {
			t.Fatalf("boot failed: %v\n%s", err, out)
		}
		if want := "etoile: ready version=dev boot=bios source=http slot=none ip=none"; ready.String() != want {
			t.Errorf("ready %q, want %q", ready.String(), want)
		}
		// Attached to its loop device, the file is removed from the
		// writable tmpfs: nothing can change it under the mount.
		if _, err := os.Stat(filepath.Join(root, "run/etoile/system.sqfs")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("downloaded image file still there after the loop device took it (err %v)", err)
		}
		if !slices.Contains(ops(mr), "loop /run/etoile/system.sqfs /dev/loop0") {
			t.Errorf("downloaded image not attached to a loop device: %q", ops(mr))
		}
		// The network comes up before the download.
		if strings.Index(out, "step=network") > strings.Index(out, "step=find-image") {
			t.Errorf("network after find-image:\n%s", out)
		}
	})
	t.Run("bad checksum", func(t *testing.T) {
		bad := strings.Repeat("0", 64)
		root := machineRoot(t, "console=ttyS0 etoile.system="+url+" etoile.system.sha256="+bad)
		_, out, mr, _, err := boot(t, root, Options{HTTP: srv.Client()})
		var se *StepError
		if !errors.As(err, &se) || se.Step != "find-image" {
			t.Fatalf("err = %v, want a find-image StepError", err)
		}
		line := regexp.MustCompile(`(?m)^etoile: error step=find-image reason=".*expected ` + bad + `, actual ` + good + `" fix=".+"$`)
		if !line.MatchString(out) {
			t.Errorf("no error line with both hashes:\n%s", out)
		}
		b, _ := os.ReadFile(filepath.Join(root, "dev/ttyS0"))
		if !line.Match(b) {
			t.Errorf("serial console lacks the error line: %q", b)
		}
		if strings.Contains(out, "etoile: ready") {
			t.Errorf("ready after a refused image:\n%s", out)
		}
		for _, op := range ops(mr) {
			if strings.Contains(op, "squashfs") {
				t.Errorf("refused image mounted: %s", op)
			}
		}
	})
}

func TestBootNoMedium(t *testing.T) {
	root := machineRoot(t, "console=ttyS0")
	fakeroot.Block(t, root, "vda", false, "", make([]byte, 1<<16))
	_, out, _, _, err := boot(t, root, Options{WaitScale: 0.002})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "find-image" || !strings.Contains(se.Reason, "vda") || !strings.Contains(se.Fix, "USB stick") {
		t.Fatalf("err = %v, want a find-image error naming the devices seen and what to do\n%s", err, out)
	}
	// The fix names only tools that exist: there is no etoile flash.
	if !strings.Contains(se.Fix, "written whole, e.g. with dd") || strings.Contains(se.Fix, "flash") {
		t.Errorf("fix = %q, want it to say the medium is written whole with dd, and no command that does not exist", se.Fix)
	}
}

// TestBootStopsOnUnusableImageArgument: a mistyped netboot argument stops
// the boot at once naming it, even with an Étoile CD in the drive: booting
// the CD instead would run what the user did not ask for.
func TestBootStopsOnUnusableImageArgument(t *testing.T) {
	root := machineRoot(t, "console=ttyS0 etoile.system=ftp://10.0.2.2/etoile-amd64-system.sqfs etoile.system.sha256="+strings.Repeat("a", 63))
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "not really squashfs"})
	fakeroot.Block(t, root, "sr0", false, "", iso)
	_, out, mr, _, err := boot(t, root, Options{})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "find-image" || !strings.Contains(se.Reason, `etoile.system="ftp://10.0.2.2/etoile-amd64-system.sqfs": want an http:// or https:// URL`) ||
		!strings.Contains(se.Reason, "etoile.system.sha256=") || !strings.Contains(se.Fix, "boot loader") {
		t.Fatalf("err = %v, want a find-image error naming both arguments\n%s", err, out)
	}
	for _, op := range ops(mr) {
		if strings.Contains(op, "sr0") || strings.Contains(op, "squashfs") {
			t.Errorf("the CD was used: %s", op)
		}
	}
}

// TestBootStopsOnBadVerity: a malformed etoile.verity stops the boot at
// find-image naming it: the image would otherwise be mounted unchecked.
func TestBootStopsOnBadVerity(t *testing.T) {
	root := machineRoot(t, "console=ttyS0 etoile.verity="+strings.Repeat("a", 64))
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "not really squashfs"})
	fakeroot.Block(t, root, "sr0", false, "", iso)
	_, out, mr, _, err := boot(t, root, Options{})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "find-image" || !strings.Contains(se.Reason, "etoile.verity=") {
		t.Fatalf("err = %v, want a find-image error naming etoile.verity\n%s", err, out)
	}
	for _, op := range ops(mr) {
		if strings.Contains(op, "squashfs") {
			t.Errorf("the image was mounted: %s", op)
		}
	}
}

// TestBootAsksUSBStickAgain: a USB stick whose host shows no device a
// (scaled) second after it appeared is asked again, and the console says so.
func TestBootAsksUSBStickAgain(t *testing.T) {
	root := machineRoot(t, "console=ttyS0")
	fakeroot.Write(t, root, map[string]string{
		"sys/class/scsi_host/host6/proc_name": "usb-storage\n",
		"sys/class/scsi_host/host6/scan":      "",
		"sys/class/scsi_host/host0/proc_name": "ahci\n",
		"sys/class/scsi_host/host0/scan":      "",
	})
	_, out, _, _, err := boot(t, root, Options{WaitScale: 0.01})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "find-image" {
		t.Fatalf("err = %v, want a find-image error (no medium)\n%s", err, out)
	}
	// The rescan is written in the background (a real one blocks while the
	// host probes): it may land after the boot step gave up.
	scan := filepath.Join(root, "sys/class/scsi_host/host6/scan")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(scan)
		if string(b) == "- - -\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usb-storage host6/scan = %q, want a rescan of every target", b)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "sys/class/scsi_host/host0/scan")); len(b) != 0 {
		t.Errorf("ahci host0/scan = %q, want it untouched", b)
	}
	if !strings.Contains(out, "USB storage not ready, asking it again host=host6") {
		t.Errorf("console does not say the stick was asked again:\n%s", out)
	}
}

func TestStepPanicIsAnError(t *testing.T) {
	root := machineRoot(t, "console=ttyS0")
	var out bytes.Buffer
	m := New(Options{Root: root, Stdout: &out, Clock: fixedClock(0)})
	err := m.Run(context.Background(), []Step{{Name: "boom", Run: func(context.Context, *Machine) error {
		var p *Machine
		_ = p.opts // nil dereference
		return nil
	}, Fix: "nothing"}})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "boom" || !strings.Contains(se.Reason, "panic") {
		t.Fatalf("err = %v, want a StepError for the panic", err)
	}
	if !strings.Contains(out.String(), `etoile: error step=boom reason="internal error (panic)`) {
		t.Errorf("no error line:\n%s", out.String())
	}
}

func TestReadyLine(t *testing.T) {
	tests := []struct {
		r    Ready
		want string
	}{
		{Ready{Version: "v0.1.0", Boot: "uefi", Source: "disk", Slot: "a", IP: "10.0.2.15"}, "etoile: ready version=v0.1.0 boot=uefi source=disk slot=a ip=10.0.2.15"},
		{Ready{Version: "dev", Boot: "bios", Source: "iso", Slot: "none", IP: "none"}, "etoile: ready version=dev boot=bios source=iso slot=none ip=none"},
		{Ready{Version: "dev", Boot: "bios", Source: "http"}, "etoile: ready version=dev boot=bios source=http slot=none ip=none"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	// The format operators and QA parse: key=value pairs, fixed order.
	re := regexp.MustCompile(`^etoile: ready version=\S+ boot=(bios|uefi) source=(iso|disk|http) slot=(a|b|none) ip=(\d+\.\d+\.\d+\.\d+|none)$`)
	for _, tt := range tests {
		if !re.MatchString(tt.r.String()) {
			t.Errorf("%q does not match %s", tt.r.String(), re)
		}
	}
}

func TestErrorLine(t *testing.T) {
	e := &StepError{Step: "find-image", Reason: `no "ETOILE" volume`, Fix: "insert the USB stick"}
	want := `etoile: error step=find-image reason="no \"ETOILE\" volume" fix="insert the USB stick"`
	if e.Line() != want {
		t.Errorf("got %s, want %s", e.Line(), want)
	}
}

func TestSequenceOrder(t *testing.T) {
	names := func(steps []Step) (s []string) {
		for _, st := range steps {
			s = append(s, st.Name)
		}
		return s
	}
	iso := names(Steps(parse("console=ttyS0")))
	http := names(Steps(parse("etoile.system=http://10.0.2.2/s.sqfs")))
	if !slices.Equal(iso, []string{"mount-api", "cmdline", "drivers", "find-image", "mount-system", "switch-root", "network"}) {
		t.Errorf("iso boot order %q", iso)
	}
	if !slices.Equal(http, []string{"mount-api", "cmdline", "drivers", "network", "find-image", "mount-system", "switch-root"}) {
		t.Errorf("http boot order %q", http)
	}
}

func TestBeforeReady(t *testing.T) {
	root := machineRoot(t, "console=ttyS0 etoile.slot=a")
	fakeroot.Block(t, root, "vda", false, "", nil)
	fakeroot.Block(t, root, "vda2", true, "ETOILE-A", nil)
	var media []string
	ready, out, _, _, err := boot(t, root, Options{BeforeReady: func(ctx context.Context, m *Machine) []string {
		media = m.MediaDirs()
		return []string{"k3s=starting"}
	}})
	if err != nil {
		t.Fatalf("boot: %v\n%s", err, out)
	}
	want := "etoile: ready version=dev boot=bios source=disk slot=a ip=none k3s=starting"
	if ready.String() != want || !strings.Contains(out, want+"\n") {
		t.Errorf("ready %q, want %q\n%s", ready.String(), want, out)
	}
	if media != nil {
		t.Errorf("disk boot reports boot media %q", media)
	}
}

// TestBootLaysImageModulesOver: a system image with modules for the running
// kernel (its extensions' drivers) has that folder laid over the
// initramfs's (an overlay, read-only) instead of hidden by a bind mount, and
// the modules its modules-load.d names load after the ready line.
func TestBootLaysImageModulesOver(t *testing.T) {
	root := machineRoot(t, "BOOT_IMAGE=/isolinux/vmlinuz console=ttyS0")
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "not really squashfs"})
	fakeroot.Block(t, root, "sr0", false, "", iso)
	fakeroot.Write(t, root, map[string]string{
		"sysroot/lib/modules/" + release + "/extra/nvidia.ko": "",
		"etc/modules-load.d/site.conf":                        "# for the site\ndca\nnot-anywhere\n",
		"etc/modprobe.d/dca.conf":                             "options dca debug=1\nblacklist nouveau\n",
	})
	_, out, mr, lr, err := boot(t, root, Options{})
	if err != nil {
		t.Fatalf("boot failed: %v\n%s", err, out)
	}
	mods := "/lib/modules/" + release
	want := "mount -t overlay etoile-modules /sysroot" + mods + " lowerdir=/sysroot" + mods + ":" + mods
	if got := ops(mr); !slices.Contains(got, want) || slices.Contains(got, "mount -t  "+mods+" /sysroot"+mods+" ") {
		t.Errorf("mounts:\n%s\nwant %q and no bind of the initramfs's modules", strings.Join(got, "\n"), want)
	}
	if !strings.Contains(out, "modules-load.d files=/etc/modules-load.d/site.conf modules=dca,not_anywhere") {
		t.Errorf("modules-load.d not read:\n%s", out)
	}
	if !slices.Contains(lr.Loaded(), "dca") {
		t.Errorf("dca (modules-load.d) not loaded: %q", lr.Loaded())
	}
	// The system's modprobe.d options apply to what loads after the switch.
	if !strings.Contains(out, "modprobe.d files=/etc/modprobe.d/dca.conf options_for=dca blacklist=nouveau install=\"\" not_applied=\"\"") {
		t.Errorf("modprobe.d not read:\n%s", out)
	}
	if p := lr.Params["dca"]; !strings.HasPrefix(p, "debug=1") {
		t.Errorf("dca loaded with parameters %q, want modprobe.d's debug=1", p)
	}
	if !strings.Contains(out, "module not in image module=not_anywhere") {
		t.Errorf("a modules-load.d name no module has is not warned about:\n%s", out)
	}
}

// With NVIDIA's driver loaded (it publishes /proc/driver/nvidia), the boot
// makes the device files udev would have: the inventory's nvidia-smi,
// waiting for ImageDriversLoaded, opens them; nvidia_uvm's come after
// modules-load.d.
func TestBootMakesNvidiaDeviceFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("making device files needs root: run the tests as root (make test does, as CI)")
	}
	root := machineRoot(t, "BOOT_IMAGE=/isolinux/vmlinuz console=ttyS0")
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "not really squashfs"})
	fakeroot.Block(t, root, "sr0", false, "", iso)
	fakeroot.Write(t, root, map[string]string{
		"proc/driver/nvidia/gpus/0000:00:06.0/information": "Model: \t\t NVIDIA H100 80GB HBM3\nDevice Minor: \t 0\n",
		"proc/devices": "Character devices:\n  1 mem\n195 nvidia-frontend\n\nBlock devices:\n  7 loop\n",
	})
	var out bytes.Buffer
	var driversFirst bool
	beforeReady := func(ctx context.Context, m *Machine) []string {
		select {
		case <-m.ImageDriversLoaded():
			driversFirst = true
		default:
		}
		// nvidia_uvm, as modules-load.d would have it loaded after ready.
		fakeroot.Write(t, root, map[string]string{"proc/devices": "Character devices:\n195 nvidia-frontend\n511 nvidia-uvm\n\n"})
		return nil
	}
	m := New(Options{Root: root, Stdout: &out, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.01, BeforeReady: beforeReady})
	if _, err := m.Boot(context.Background()); err != nil {
		t.Fatalf("boot failed: %v\n%s", err, out.String())
	}
	if !driversFirst {
		t.Error("the services started before the image's drivers were loaded")
	}
	isDev := func(name string, major, minor uint32) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(root, "dev", name), &st); err != nil {
			t.Fatalf("/dev/%s: %v\n%s", name, err, out.String())
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || uint64(st.Rdev) != unix.Mkdev(major, minor) {
			t.Errorf("/dev/%s is not the character device %d:%d", name, major, minor)
		}
	}
	isDev("nvidiactl", 195, 255)
	isDev("nvidia0", 195, 0)
	d := filepath.Join(root, "dev")
	for _, want := range []string{
		"NVIDIA device files made=" + d + "/nvidiactl," + d + "/nvidia0\n",
		"NVIDIA device files made=" + d + "/nvidia-uvm," + d + "/nvidia-uvm-tools\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	isDev("nvidia-uvm", 511, 0)
	isDev("nvidia-uvm-tools", 511, 1)
}

// TestWarningsReachEveryConsole: on a machine, warnings, errors and what
// the boot waits for go to every console (a screen too, not only the
// serial port /dev/console may be); the rest to /dev/console.
func TestWarningsReachEveryConsole(t *testing.T) {
	var out bytes.Buffer
	var all []string
	cl := &consoleLog{out: &out, all: func(l string) { all = append(all, l) }}
	log := NewLogger(cl, slog.LevelInfo)
	log.Info("", "step", "drivers", "t", "1.00s")
	log.Info("waiting for the boot medium", "want", "partition ETOILE-A")
	log.Warn("module load failed", "module", "x")
	if want := []string{`etoile: waiting for the boot medium want="partition ETOILE-A"`, "etoile: warning: module load failed module=x"}; !slices.Equal(all, want) {
		t.Errorf("every console got %q, want %q", all, want)
	}
	if out.String() != "etoile: step=drivers t=1.00s\n" {
		t.Errorf("/dev/console got %q", out.String())
	}
}

// TestBootTellsSameImagesApartByController: the very same image on two
// disks (same GUIDs: LoaderDevicePartUUID names both); the firmware's
// BootCurrent names the controller it booted from, and that disk's slot is
// used, though the other sorts first.
func TestBootTellsSameImagesApartByController(t *testing.T) {
	root := machineRoot(t, "console=ttyS0 etoile.slot=a")
	vars := "sys/firmware/efi/efivars/"
	loader := loaderPartUUIDVar("5B4E6F10-AAAA-4BBB-8CCC-00000000000E")
	fakeroot.Write(t, root, map[string]string{
		"sys/firmware/efi/runtime":                         "",
		vars + "LoaderDevicePartUUID-" + efivar.LoaderGUID: loader,
		// Boot0001: PciRoot(0x0)/Pci(0x2,0x0), the controller of vdb.
		vars + "BootCurrent-" + efivar.GlobalGUID: "\x07\x00\x00\x00\x01\x00",
		vars + "Boot0001-" + efivar.GlobalGUID: "\x07\x00\x00\x00" + "\x01\x00\x00\x00\x16\x00" + "A\x00\x00\x00" +
			"\x02\x01\x0c\x00\xd0\x41\x03\x0a\x00\x00\x00\x00" + "\x01\x01\x06\x00\x00\x02" + "\x7f\xff\x04\x00",
		"sys/devices/pci0000:00/0000:00:02.0/modalias": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n",
	})
	disk := gptDisk(t, "5b4e6f10-aaaa-4bbb-8ccc-00000000000e", "5b4e6f10-aaaa-4bbb-8ccc-0000000000e2")
	// Each disk's sysfs entry under its controller, /sys/class/block linking to it.
	for name, pci := range map[string]string{"vda": "0000:00:03.0", "vdb": "0000:00:02.0"} {
		dir := "sys/devices/pci0000:00/" + pci + "/virtio/block/" + name
		fakeroot.Write(t, root, map[string]string{
			dir + "/uevent":               "MAJOR=254\nMINOR=0\nDEVNAME=" + name + "\nDEVTYPE=disk\n",
			dir + "/" + name + "2/uevent": "MAJOR=254\nMINOR=2\nDEVNAME=" + name + "2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=ETOILE-A\n",
			"dev/" + name:                 string(disk),
			"dev/" + name + "2":           "",
		})
		os.MkdirAll(filepath.Join(root, "sys/class/block"), 0o755)
		if err := os.Symlink(filepath.Join(root, dir), filepath.Join(root, "sys/class/block", name)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(root, dir, name+"2"), filepath.Join(root, "sys/class/block", name+"2")); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	m := New(Options{Root: root, Stdout: &out, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.01})
	if _, err := m.Boot(context.Background()); err != nil {
		t.Fatalf("boot failed: %v\n%s", err, out.String())
	}
	if m.Device != filepath.Join(root, "dev", "vdb2") || m.BootDisk != "vdb" {
		t.Errorf("device %s on disk %s, want vdb2 (behind the controller the firmware booted)\n%s", m.Device, m.BootDisk, out.String())
	}
	if strings.Contains(out.String(), "very same image") {
		t.Errorf("warned that it could not tell the disks apart:\n%s", out.String())
	}
}

// TestBootSkipsADeviceWhoseReadHangs: a device whose open and read block (a
// FIFO stands in for a failing disk holding a read) is skipped after the
// (scaled) device wait, named once on the console, and the CD is booted.
func TestBootSkipsADeviceWhoseReadHangs(t *testing.T) {
	root := machineRoot(t, "console=ttyS0")
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "x"})
	fakeroot.Block(t, root, "sr0", false, "", iso)
	fakeroot.Block(t, root, "sda", false, "", nil)
	dev := filepath.Join(root, "dev", "sda")
	os.Remove(dev)
	if err := unix.Mkfifo(dev, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan error, 1)
	m := New(Options{Root: root, Stdout: &out, Mounter: &mount.Recorder{}, Loader: &kmod.Recorder{}, Clock: fixedClock(time.Second), WaitScale: 0.01})
	go func() {
		_, err := m.Boot(context.Background())
		done <- err
	}()
	unblock := func() { // the reads still blocked end
		for range 3 {
			if f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	defer unblock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("boot failed: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		unblock()
		<-done
		t.Fatalf("find-image was held by the blocked device; console:\n%s", out.String())
	}
	if m.Device != filepath.Join(root, "dev", "sr0") {
		t.Errorf("device %s, want sr0", m.Device)
	}
	if n := strings.Count(out.String(), "did not answer a read in time"); n != 1 || !strings.Contains(out.String(), "device="+dev) {
		t.Errorf("console:\n%s\nwant one warning naming %s", out.String(), dev)
	}
}

// TestEFIVarsMountedReadOnly: efivarfs, which moves with /sys into the
// running system, is mounted read-only (the agent only reads variables).
func TestEFIVarsMountedReadOnly(t *testing.T) {
	rec := &mount.Recorder{}
	if err := mountEFIVars(rec, EFIVars); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ops) != 1 || rec.Ops[0].FSType != "efivarfs" || rec.Ops[0].Flags&unix.MS_RDONLY == 0 {
		t.Errorf("mounts %+v, want efivarfs read-only", rec.Ops)
	}
}
