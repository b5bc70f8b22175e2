package nvdev

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// fixture is the real H100 host's snapshot (../inventory/testdata/h100-vm,
// from ../shared/fixtures/hw/h100-vm).
const fixture = "../inventory/testdata/h100-vm"

func write(t *testing.T, path, data string) {
	t.Helper()
	fakeroot.Write(t, filepath.Dir(path), map[string]string{filepath.Base(path): data})
}

// h100Proc lays out the /proc files the driver of the snapshot's host
// publishes: its GPU's information file as captured; /proc/devices, the
// driver's parameters and MIG's capability files written here in the
// driver's format (the snapshot did not copy them).
func h100Proc(t *testing.T) string {
	t.Helper()
	proc := t.TempDir()
	info, err := os.ReadFile(filepath.Join(fixture, "nvidia-gpus-information.txt"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(proc, "driver/nvidia/gpus/0000:00:06.0/information"), string(info))
	write(t, filepath.Join(proc, "driver/nvidia/params"),
		"ResmanDebugLevel: 4294967295\nRmLogonRC: 1\nModifyDeviceFiles: 1\nDeviceFileUID: 0\nDeviceFileGID: 0\nDeviceFileMode: 438\nInitializeSystemMemoryAllocations: 1\n")
	write(t, filepath.Join(proc, "devices"),
		"Character devices:\n  1 mem\n  4 /dev/vc/0\n195 nvidia-frontend\n236 nvidia-caps\n237 nvidia-uvm\n\nBlock devices:\n  7 loop\n238 nvidia-uvm-decoy\n259 blkext\n")
	write(t, filepath.Join(proc, "driver/nvidia/capabilities/mig/config"), "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1\n")
	write(t, filepath.Join(proc, "driver/nvidia/capabilities/mig/monitor"), "DeviceFileMinor: 2\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
	return proc
}

func TestNodesOfTheH100Host(t *testing.T) {
	nodes, err := Nodes(h100Proc(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{
		{Path: "nvidiactl", Major: 195, Minor: 255, Mode: 0o666},
		{Path: "nvidia0", Major: 195, Minor: 0, Mode: 0o666},
		{Path: "nvidia-uvm", Major: 237, Minor: 0, Mode: 0o666},
		{Path: "nvidia-uvm-tools", Major: 237, Minor: 1, Mode: 0o666},
		{Path: "nvidia-caps/nvidia-cap1", Major: 236, Minor: 1, Mode: 0o400},
		{Path: "nvidia-caps/nvidia-cap2", Major: 236, Minor: 2, Mode: 0o444},
	}
	if !slices.Equal(nodes, want) {
		t.Fatalf("nodes:\n got %+v\nwant %+v", nodes, want)
	}
	// The same files the real host had (dev-nvidia.txt: ls of /dev/nvidia*).
	b, err := os.ReadFile(filepath.Join(fixture, "dev-nvidia.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	dir := ""
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.TrimSpace(l) == "":
		case strings.HasSuffix(l, ":"):
			dir = strings.TrimSuffix(strings.TrimPrefix(l, "/dev/"), ":") + "/"
		default:
			listed = append(listed, dir+strings.TrimPrefix(l, "/dev/"))
		}
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Path)
	}
	slices.Sort(listed)
	slices.Sort(got)
	if !slices.Equal(got, listed) {
		t.Errorf("device files %v, the host had %v", got, listed)
	}
}

func TestNodesFollowTheDriversParameters(t *testing.T) {
	proc := h100Proc(t)
	write(t, filepath.Join(proc, "driver/nvidia/params"), "DeviceFileUID: 0\nDeviceFileGID: 44\nDeviceFileMode: 432\nModifyDeviceFiles: 1\n")
	write(t, filepath.Join(proc, "driver/nvidia/gpus/0000:41:00.0/information"), "Model: \t\t NVIDIA H100\nDevice Minor: \t 1\n")
	write(t, filepath.Join(proc, "modules"), "nvidia_uvm 2076672 0 - Live 0x0000000000000000 (POE)\nnvidia_modeset 1724416 0 - Live 0x0000000000000000 (POE)\nnvidia 104071168 2 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000 (POE)\n")
	nodes, err := Nodes(proc)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]Node{}
	for _, n := range nodes {
		byPath[n.Path] = n
	}
	for _, p := range []string{"nvidiactl", "nvidia0", "nvidia1", "nvidia-modeset"} {
		n, ok := byPath[p]
		if !ok {
			t.Fatalf("no %s in %+v", p, nodes)
		}
		if n.Mode != 0o660 || n.GID != 44 {
			t.Errorf("%s: mode %v gid %d, want 0660 and the driver's DeviceFileGID 44", p, n.Mode, n.GID)
		}
	}
	if n := byPath["nvidia-modeset"]; n.Minor != 254 {
		t.Errorf("nvidia-modeset minor %d", n.Minor)
	}
	if n := byPath["nvidia-uvm"]; n.Mode != 0o666 || n.GID != 0 {
		t.Errorf("nvidia-uvm takes nvidia-modprobe's defaults, not the nvidia module's: %+v", n)
	}

	write(t, filepath.Join(proc, "driver/nvidia/params"), "ModifyDeviceFiles: 0\n")
	if nodes, err := Nodes(proc); err != nil || nodes != nil {
		t.Errorf("NVreg_ModifyDeviceFiles=0: %v, %v; want nothing touched", nodes, err)
	}

	if nodes, err := Nodes(t.TempDir()); err != nil || nodes != nil {
		t.Errorf("no driver loaded: %v, %v", nodes, err)
	}

	bad := h100Proc(t)
	write(t, filepath.Join(bad, "driver/nvidia/gpus/0000:00:06.0/information"), "Model: \t\t NVIDIA H100\nDevice Minor: \t x\n")
	if _, err := Nodes(bad); err == nil || !strings.Contains(err.Error(), "0000:00:06.0/information") {
		t.Errorf("unreadable Device Minor: %v", err)
	}
}

func TestMakeCreatesAndRepairs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("making device files needs root: run the tests as root (make test does, as CI)")
	}
	nodes, err := Nodes(h100Proc(t))
	if err != nil {
		t.Fatal(err)
	}
	dev := t.TempDir()
	changed, err := Make(dev, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != len(nodes) {
		t.Fatalf("made %v, want all %d", changed, len(nodes))
	}
	check := func() {
		t.Helper()
		for _, n := range nodes {
			var st unix.Stat_t
			p := filepath.Join(dev, n.Path)
			if err := unix.Lstat(p, &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || uint64(st.Rdev) != unix.Mkdev(n.Major, n.Minor) {
				t.Errorf("%s: mode %o rdev %d:%d, want a character device %d:%d", p, st.Mode, unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), n.Major, n.Minor)
			}
			if fs.FileMode(st.Mode&0o777) != n.Mode {
				t.Errorf("%s: permissions %o, want %o", p, st.Mode&0o777, n.Mode)
			}
		}
	}
	check()
	if changed, err := Make(dev, nodes); err != nil || len(changed) != 0 {
		t.Errorf("second run changed %v (%v); want nothing", changed, err)
	}
	// A stray file, a wrong device and wrong permissions are put right.
	if err := os.Remove(filepath.Join(dev, "nvidia0")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dev, "nvidia0"), "not a device")
	if err := os.Remove(filepath.Join(dev, "nvidiactl")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dev, "nvidiactl"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dev, "nvidia-uvm"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, err = Make(dev, nodes)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(changed)
	want := []string{filepath.Join(dev, "nvidia-uvm"), filepath.Join(dev, "nvidia0"), filepath.Join(dev, "nvidiactl")}
	slices.Sort(want)
	if !slices.Equal(changed, want) {
		t.Errorf("repaired %v, want %v", changed, want)
	}
	check()
}
