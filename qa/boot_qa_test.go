//go:build qa

package qa

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBoot boots every scenario and checks its ready line. VMs run two at a
// time (ETOILE_QA_PARALLEL).
func TestBoot(t *testing.T) {
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			out := Artifacts(t, s.Needs...)
			vm := Start(t, Config{Devices: s.Devices(t, out)})
			m := vm.Ready(ReadyTimeout)
			s.CheckReady(t, m)
			// A plain boot of the build's own media has nothing to warn about.
			for _, l := range vm.Lines() {
				if strings.HasPrefix(l.Text, "etoile: warning") {
					t.Errorf("warning on the console: %s", l.Text)
				}
			}
			if s.Source == "iso" || s.Source == "disk" {
				// The medium's system image is mounted through dm-verity.
				vm.Find(regexp.MustCompile(`^etoile: system image mapped through dm-verity, every block checked as it is read root=[0-9a-f]{12} data_blocks=\d+\b`), time.Second)
			}
			// The inventory marks the disk the boot found the system image on,
			// and only it (none for a netboot).
			inv := vm.WaitFor(regexp.MustCompile(`^etoile: hardware inventory disks=\d+ `), time.Minute)
			if inv.Fields["boot_medium"] != s.BootMedium {
				t.Errorf("the inventory's boot medium is %q, want %q: %s", inv.Fields["boot_medium"], s.BootMedium, inv.Line)
			}
			if s.BootPCI != "" {
				// Read from the firmware's BootCurrent, before the drivers load.
				re := regexp.MustCompile(`^etoile: booted from option=Boot[0-9A-F]{4} path=PciRoot\(0x0\)/Pci\(\S+\) pci=` + regexp.QuoteMeta(s.BootPCI) + `$`)
				if !slices.ContainsFunc(vm.Lines(), func(l Line) bool { return re.MatchString(l.Text) }) {
					t.Errorf("the agent did not tell the boot controller %s from the UEFI variables: no console line matches /%s/", s.BootPCI, re)
				}
			}
		})
	}
}

// TestGeneratedHostnameFromLowestMAC: with no host name from DHCP (QEMU's
// user network gives none), a machine with two NICs of different drivers
// (virtio, e1000) is named after the lower MAC, the e1000's: the name is the
// K3s node's. (The race this guards against, a NIC registering after the
// first lease, is not forced here: the unit tests of waitNICs cover it.)
func TestGeneratedHostnameFromLowestMAC(t *testing.T) {
	t.Parallel()
	out, sum := netbootSet(t)
	vm := Start(t, Config{Devices: []Device{SeaBIOS{}, NetbootKernel(t, out, sum), UserNIC{MAC: "52:54:00:99:99:99"}},
		Extra: []string{"-netdev", "user,id=net1", "-device", "e1000,netdev=net1,mac=52:54:00:00:00:01,romfile="}})
	m := vm.WaitFor(regexp.MustCompile(`^etoile: network hostname=\S+ `), ReadyTimeout)
	if m.Fields["hostname"] != "etoile-000001" {
		t.Errorf("hostname %q, want etoile-000001 (the lower MAC, 52:54:00:00:00:01): %s", m.Fields["hostname"], m.Line)
	}
	vm.Ready(ReadyTimeout)
}

// netbootSet is the default image's folder, holding the netboot set, and
// its system image's SHA-256 (etoile.system.sha256).
func netbootSet(t *testing.T) (out, sum string) {
	t.Helper()
	out = Artifacts(t, KernelName, InitramfsName, SystemName)
	sum, err := FileSHA256(filepath.Join(out, SystemName))
	if err != nil {
		t.Fatal(err)
	}
	return out, sum
}

// TestNetbootWrongChecksum hands the agent a wrong etoile.system.sha256: it must
// refuse the image, show both hashes, and stay up.
func TestNetbootWrongChecksum(t *testing.T) {
	t.Parallel()
	out, actual := netbootSet(t)
	// Flip the first hex digit: a well-formed hash that cannot match.
	wrong := map[byte]string{'0': "1"}[actual[0]]
	if wrong == "" {
		wrong = "0"
	}
	wrong += actual[1:]
	vm := Start(t, Config{Devices: []Device{SeaBIOS{}, NetbootKernel(t, out, wrong), UserNIC{}}})
	m := vm.WaitFor(ErrorRE, ReadyTimeout)
	t.Logf("error line: %s", m.Line)
	// PID 1 must neither exit (the kernel would panic) nor carry on to ready.
	vm.Absent(regexp.MustCompile(`Kernel panic|Attempted to kill init|^etoile: ready\b`), 10*time.Second)

	// The error line itself shows both hashes (the README says so).
	for what, h := range map[string]string{"expected": wrong, "actual": actual} {
		if !strings.Contains(m.Line, h) {
			t.Errorf("the error line does not show the %s hash %s: %s", what, h, m.Line)
		}
	}
}

// otherDisk is a second virtio disk, at PCI slot 1, that the firmware does
// not boot from.
type otherDisk struct{ Path string }

func (o otherDisk) QEMUArgs(dir string) ([]string, error) {
	cp, err := workCopy(o.Path, dir, "other-disk", "disk image")
	if err != nil {
		return nil, err
	}
	return []string{"-drive", "if=none,id=other0,format=raw,file=" + escapeOpt(cp), "-device", "virtio-blk-pci,drive=other0,addr=0x1"}, nil
}

// partUUID reads a partition's unique GUID with sgdisk.
func partUUID(t *testing.T, disk string, n int) string {
	t.Helper()
	b, err := toolCommand("sgdisk", "-i", strconv.Itoa(n), disk).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i %d %s: %v\n%s", n, disk, err, b)
	}
	m := regexp.MustCompile(`Partition unique GUID: (\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("sgdisk -i %d %s: no unique GUID in\n%s", n, disk, b)
	}
	return strings.ToLower(string(m[1]))
}

// TestBootUsesTheBootDisk: a machine with Étoile on two disks, the other
// one unbootable by the firmware (its ESP unreadable):
//   - with its own GUIDs (a server whose disk has Étoile installed, booting
//     a stick), the agent mounts the booted disk's ETOILE-A — the one
//     systemd-boot names through LoaderDevicePartUUID — not the other's;
//   - with the very same image (same GUIDs, dd'ed twice) and the other's
//     ETOILE-A corrupted, the agent tells the disks apart by the controller
//     the firmware booted from (BootCurrent), and the boot succeeds.
//
// Which disk is vda varies (drivers probe asynchronously), so each case
// catches a wrong choice in about half the runs; TestBootPicksTheBootDisksSlot
// (agent/boot) checks the choice when the other disk sorts first.
func TestBootUsesTheBootDisk(t *testing.T) {
	t.Parallel()
	out := Artifacts(t, RawName)
	if err := RequireTools(SgdiskTool); err != nil {
		t.Fatal(err)
	}
	zero := func(t *testing.T, path string, at int64) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(make([]byte, 64<<10), at); err != nil {
			t.Fatal(err)
		}
	}
	for _, sameImage := range []bool{false, true} {
		name := "own GUIDs"
		if sameImage {
			name = "same image"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			other := filepath.Join(t.TempDir(), "installed.raw")
			if err := copyFile(filepath.Join(out, RawName), other); err != nil {
				t.Fatal(err)
			}
			if !sameImage {
				if b, err := toolCommand("sgdisk", "-G", other).CombinedOutput(); err != nil {
					t.Fatalf("sgdisk -G (new GUIDs for the other disk): %v\n%s", err, b)
				}
			}
			zero(t, other, 1<<20) // its ESP (at 1 MiB): the firmware boots the image's disk
			want, wrong := partUUID(t, filepath.Join(out, RawName), 2), partUUID(t, other, 2)
			if sameImage {
				// Its system image unreadable: mounting it fails the boot.
				b, err := toolCommand("sgdisk", "-i", "2", other).CombinedOutput()
				m := regexp.MustCompile(`First sector: (\d+)`).FindSubmatch(b)
				if err != nil || m == nil {
					t.Fatalf("sgdisk -i 2: %v\n%s", err, b)
				}
				first, _ := strconv.ParseInt(string(m[1]), 10, 64)
				zero(t, other, first*512)
			}
			vm := Start(t, Config{Devices: []Device{OVMF{}, otherDisk{Path: other}, VirtioDisk{Path: filepath.Join(out, RawName)}, UserNIC{}}})
			m := vm.Ready(ReadyTimeout)
			if !strings.Contains(m.Line, " slot=a ") {
				t.Errorf("ready line %q", m.Line)
			}
			re := regexp.MustCompile(`^etoile: system image found source=disk partition=ETOILE-A device=vd[ab]2 partuuid=(\S+)$`)
			found := ""
			for _, l := range vm.Lines() {
				if m := re.FindStringSubmatch(l.Text); m != nil {
					found = m[1]
				}
				if strings.HasPrefix(l.Text, "etoile: warning") {
					t.Errorf("warning on the console: %s", l.Text)
				}
			}
			switch {
			case found == want:
			case found == wrong:
				t.Errorf("the agent mounted the other disk's ETOILE-A (%s), not the booted disk's (%s)", wrong, want)
			default:
				t.Errorf("no console line matches /%s/ with the booted disk's partition %s", re, want)
			}
		})
	}
}
