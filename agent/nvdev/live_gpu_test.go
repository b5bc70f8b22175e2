//go:build gpu && linux

// A test against a live machine with NVIDIA's driver loaded (`make gpu-check`; not part of
// `make test`). It needs root (mknod).

package nvdev

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLiveNodesMatchDriver: the device files Nodes derives from /proc are the ones the
// machine's own /dev has (made there by udev or nvidia-modprobe), and the files Make writes
// open as the driver's devices.
func TestLiveNodesMatchDriver(t *testing.T) {
	if !Loaded("/proc") {
		t.Fatal("NVIDIA's driver is not loaded (no /proc/driver/nvidia/gpus): this test needs a machine with an NVIDIA GPU")
	}
	nodes, err := Nodes("/proc")
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) < 2 {
		t.Fatalf("Nodes: %+v, want at least nvidiactl and one GPU", nodes)
	}
	compared := map[string]bool{}
	for _, n := range nodes {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join("/dev", n.Path), &st); err != nil {
			t.Logf("/dev/%s: %v (this machine has not made it)", n.Path, err)
			continue
		}
		got := [2]uint32{unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))}
		if got != [2]uint32{n.Major, n.Minor} {
			t.Errorf("/dev/%s is %d:%d, Nodes says %d:%d", n.Path, got[0], got[1], n.Major, n.Minor)
		}
		t.Logf("/dev/%s %d:%d mode %o uid %d gid %d; Nodes: mode %o uid %d gid %d",
			n.Path, got[0], got[1], st.Mode&0o7777, st.Uid, st.Gid, n.Mode, n.UID, n.GID)
		if st.Mode&0o7777 != uint32(n.Mode.Perm()) || int(st.Uid) != n.UID || int(st.Gid) != n.GID {
			t.Errorf("/dev/%s has mode %o and owner %d:%d, Nodes says %o and %d:%d (the driver's NVreg_DeviceFile* parameters)",
				n.Path, st.Mode&0o7777, st.Uid, st.Gid, n.Mode.Perm(), n.UID, n.GID)
		}
		compared[n.Path] = true
	}
	for _, p := range []string{"nvidiactl", nodes[1].Path} {
		if !compared[p] {
			t.Errorf("/dev/%s could not be compared: the machine's /dev lacks it", p)
		}
	}

	// Made under /dev (devtmpfs allows device files; /tmp may be nodev), then opened.
	dir, err := os.MkdirTemp("/dev", "etoile-nvdev-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	changed, err := Make(dir, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != len(nodes) {
		t.Errorf("Make into an empty folder changed %d of %d nodes: %q", len(changed), len(nodes), changed)
	}
	for _, n := range nodes[:2] {
		f, err := os.OpenFile(filepath.Join(dir, n.Path), os.O_RDWR, 0)
		if err != nil {
			t.Errorf("opening the made %s: %v", n.Path, err)
			continue
		}
		f.Close()
	}
	if again, err := Make(dir, nodes); err != nil || len(again) != 0 {
		t.Errorf("Make a second time: changed %q, %v; want nothing", again, err)
	}
}

// TestLiveMadeNodesServeNvidiaSMI: with nothing in /dev but what Make writes (and null,
// zero, urandom), nvidia-smi and, where the machine has PyTorch, a CUDA program run — the
// situation of Étoile's agent, which has no udev. The test runs itself again inside
// `unshare --mount`, over a tmpfs mounted on /dev there; the machine's /dev is not touched.
func TestLiveMadeNodesServeNvidiaSMI(t *testing.T) {
	if os.Getenv("ETOILE_NVDEV_PRIVATE_DEV") == "1" {
		privateDevChild(t)
		return
	}
	if !Loaded("/proc") {
		t.Fatal("NVIDIA's driver is not loaded (no /proc/driver/nvidia/gpus): this test needs a machine with an NVIDIA GPU")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", self,
		"-test.run", "^TestLiveMadeNodesServeNvidiaSMI$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "ETOILE_NVDEV_PRIVATE_DEV=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a mount namespace with a fresh /dev:\n%s", out)
	if err != nil {
		t.Fatalf("unshare: %v", err)
	}
}

func privateDevChild(t *testing.T) {
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on /dev: %v", err)
	}
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"urandom", 1, 9}, {"random", 1, 8}} {
		if err := unix.Mknod("/dev/"+d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			t.Fatal(err)
		}
		os.Chmod("/dev/"+d.name, 0o666)
	}
	if err := os.Mkdir("/dev/shm", 0o1777); err == nil {
		unix.Mount("tmpfs", "/dev/shm", "tmpfs", 0, "mode=1777")
	}
	nodes, err := Nodes("/proc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Make("/dev", nodes); err != nil {
		t.Fatal(err)
	}
	ls, _ := exec.Command("ls", "-lR", "/dev").CombinedOutput()
	t.Logf("/dev:\n%s", ls)
	// NVIDIA's libraries run the setuid nvidia-modprobe to make a device file that is missing:
	// one made meanwhile would hide a file Nodes forgot. /dev is compared after.
	before := devFiles(t)
	out, err := exec.Command("nvidia-smi", "-L").CombinedOutput()
	t.Logf("nvidia-smi -L: %s", out)
	if err != nil {
		t.Errorf("nvidia-smi -L with the made device files: %v", err)
	}
	if exec.Command("python3", "-c", "import torch").Run() != nil {
		t.Log("python3 with PyTorch is not on this machine: no CUDA program tried")
		checkNoneMade(t, before)
		return
	}
	prog := `import torch
assert torch.cuda.is_available(), "CUDA not available"
x = torch.arange(1 << 20, device="cuda", dtype=torch.float64)
print(torch.cuda.get_device_name(0), float(x.sum()))`
	out, err = exec.Command("python3", "-c", prog).CombinedOutput()
	t.Logf("CUDA program: %s", out)
	if err != nil {
		t.Errorf("a CUDA program with the made device files: %v", err)
	}
	if want := fmt.Sprintf("%.1f", float64((1<<20)*((1<<20)-1)/2)); !strings.Contains(string(out), want) {
		t.Errorf("the CUDA program's sum is not %s", want)
	}
	checkNoneMade(t, before)
}

// devFiles lists the paths under /dev.
func devFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("/dev", func(p string, _ os.DirEntry, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkNoneMade fails when /dev holds files it did not hold before.
func checkNoneMade(t *testing.T, before []string) {
	t.Helper()
	for _, p := range devFiles(t) {
		if !slices.Contains(before, p) {
			t.Errorf("%s was made while nvidia-smi or CUDA ran (by nvidia-modprobe): Nodes does not list it", p)
		}
	}
}
