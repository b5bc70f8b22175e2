package mount

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// switchChildEnv makes the test binary act as TestSwitchRootWaitsForAPIReaders's
// child, in a mount namespace of its own.
const switchChildEnv = "ETOILE_MOUNT_SWITCH_CHILD"

// TestSwitchRootWaitsForAPIReaders: a goroutine that reads /proc while
// holding HoldAPI never sees it gone, however the switch of root falls
// in between; the switch waits for it, and /proc is found again in the new
// root afterwards. The switch itself runs in a child process with a mount
// namespace of its own (it chroots the whole process).
func TestSwitchRootWaitsForAPIReaders(t *testing.T) {
	if os.Getenv(switchChildEnv) != "" {
		switchChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("a mount namespace needs root: run the tests as root (make test does, as CI)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSwitchRootWaitsForAPIReaders$", "-test.v")
	cmd.Env = append(os.Environ(), switchChildEnv+"="+t.TempDir()) // the new root
	// Go makes the new namespace's mounts private: nothing moves here.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "switch-child: ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func switchChild(t *testing.T) {
	// The new root: a tmpfs (a mount point) holding the folders the
	// switch moves /proc into, and a file that tells it from the old root.
	root := os.Getenv(switchChildEnv)
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "new-root"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	release := HoldAPI()
	switched := make(chan error, 1)
	go func() { switched <- Linux{}.SwitchRoot(root, []string{"/proc"}) }()
	// Hold the API for a while as a reader would: /proc stays, and the
	// switch has not happened.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/self/status"); err != nil {
			t.Fatalf("/proc gone while HoldAPI was held: %v", err)
		}
		select {
		case err := <-switched:
			t.Fatalf("the root switched while HoldAPI was held (err %v)", err)
		default:
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	if err := <-switched; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/new-root"); err != nil {
		t.Fatalf("not in the new root after the switch: %v", err)
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Fatalf("/proc not in the new root: %v", err)
	}
	// A reader that comes after sees /proc in the new root.
	done := HoldAPI()
	_, err := os.Stat("/proc/self/status")
	done()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("switch-child: ok")
}
