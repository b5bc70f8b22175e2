package mount

import (
	"bufio"
	"strings"
	"testing"
)

func TestMountedIn(t *testing.T) {
	mountinfo := `22 1 0:21 / / rw,relatime - rootfs rootfs rw
23 22 0:5 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
30 22 7:0 / /run/etoile/my\040media ro,relatime - iso9660 /dev/sr0 ro
`
	tests := []struct {
		target string
		want   bool
	}{
		{"/proc", true}, {"/sys", true}, {"/dev", false}, {"/run/etoile/my media", true}, {"/sys/fs/cgroup", false},
	}
	for _, tt := range tests {
		got, err := mountedIn(bufio.NewScanner(strings.NewReader(mountinfo)), tt.target)
		if err != nil || got != tt.want {
			t.Errorf("mounted(%s) = %v, %v; want %v", tt.target, got, err, tt.want)
		}
	}
}

func TestRecorder(t *testing.T) {
	r := &Recorder{AlreadyMounted: map[string]bool{"/proc": true}}
	if ok, _ := r.Mounted("/proc"); !ok {
		t.Error("/proc given as mounted is not")
	}
	_ = r.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755")
	dev, _ := r.AttachLoop("/run/etoile/system.sqfs")
	dev2, _ := r.AttachLoop("/x")
	_ = r.SwitchRoot("/sysroot", []string{"/proc", "/run"})
	if ok, _ := r.Mounted("/run"); !ok || dev != "/dev/loop0" || dev2 != "/dev/loop1" {
		t.Errorf("mounted /run %v, loops %s %s", ok, dev, dev2)
	}
	want := []string{"mount -t tmpfs tmpfs /run mode=0755", "loop /run/etoile/system.sqfs /dev/loop0", "loop /x /dev/loop1", "switch-root /sysroot"}
	for i, op := range r.Recorded() {
		if op.String() != want[i] {
			t.Errorf("op %d = %q, want %q", i, op.String(), want[i])
		}
	}
}

func TestSourceIn(t *testing.T) {
	info := `22 1 0:21 / /proc rw,nosuid - proc proc rw
40 22 8:1 / /run/etoile/state ro,nosuid,nodev,noexec - ext4 /dev/vda3 ro
41 40 8:17 / /run/etoile/state ro - ext4 /dev/sdb3 ro
42 22 0:40 / /run/etoile/my\040cfg ro - vfat /dev/sda ro
`
	for _, c := range []struct {
		target, want string
		ok           bool
	}{
		{"/run/etoile/state", "/dev/sdb3", true}, // the topmost of two
		{"/run/etoile/my cfg", "/dev/sda", true},
		{"/run/etoile/esp", "", false},
	} {
		got, ok := sourceIn(bufio.NewScanner(strings.NewReader(info)), c.target)
		if got != c.want || ok != c.ok {
			t.Errorf("sourceIn(%q) = %q, %v; want %q, %v", c.target, got, ok, c.want, c.ok)
		}
	}
}
