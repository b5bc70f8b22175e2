// Package mount does the mounting PID 1 needs: the kernel's API filesystems,
// the system image through a loop device, the writable overlay, and the
// switch from the initramfs into the new root. All of it goes through the
// Mounter interface, so `etoile-agent agent --root DIR` and tests record the
// operations instead of making them.
package mount

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// apiMoving is held for writing while Linux.SwitchRoot moves the API
// filesystems into the new root, and for reading by HoldAPI.
var apiMoving sync.RWMutex

// HoldAPI keeps PID 1's root from switching until release is called, so
// that /proc, /sys, /dev and /run are where they were for the reads in
// between: a goroutine that looks at /sys while the boot goes on (the
// drivers' scans, the network's look at its NICs) would otherwise, for the
// moment of the switch, find no bus and no NIC at all. Hold it around reads
// only, never across a wait or another HoldAPI: the switch waits for it.
func HoldAPI() (release func()) {
	apiMoving.RLock()
	return apiMoving.RUnlock
}

// Mounter is the seam between the boot logic and the mount syscalls.
type Mounter interface {
	// Mount mounts source on target (made if missing), like mount(2).
	Mount(source, target, fstype string, flags uintptr, data string) error
	// Mounted reports whether target is a mount point.
	Mounted(target string) (bool, error)
	// AttachLoop binds file to a free loop device, read-only, and returns the
	// device's path.
	AttachLoop(file string) (string, error)
	// SwitchRoot makes newRoot the root of the process (and of everything
	// it starts afterwards), moving the given mounts into it first.
	SwitchRoot(newRoot string, move []string) error
}

// API is one kernel API filesystem PID 1 mounts.
type API struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

// APIMounts are mounted first, in this order (cgroup2 needs /sys; /dev/shm
// and /dev/pts need /dev). /dev/shm is what containerd binds into a pod
// with hostIPC (MPI, NVIDIA MPS); /dev/pts is the terminals' (devtmpfs
// holds /dev/ptmx, which opens them).
var APIMounts = []API{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0620,ptmxmode=0666"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate"},
}

// PrivateDir is the agent's own folder in /run. The boot medium (whose
// /etoile/config.yaml carries the cluster token and registry passwords),
// the system image, the config volume, the ESP and the state partition are
// mounted below it, and the local API's socket is in it: only root may
// enter it (0700). What reads there is the agent, and K3s, both root.
const PrivateDir = "/run/etoile"

// MakePrivate makes folder dir with mode 0700, or gives it that mode when
// it exists (its parents are made 0755). A symbolic link or a file at dir
// is refused, not followed.
func MakePrivate(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a folder (%s): refusing to use it", dir, st.Mode().Type())
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("making %s private (0700): %w", dir, err)
		}
	}
	return nil
}

// MakeMountPoint makes folder target (0755) if it is missing, PrivateDir
// private first when target is in it (made, or its mode set).
func MakeMountPoint(target string) error {
	return makeMountPoint(target, PrivateDir)
}

func makeMountPoint(target, private string) error {
	if target == private || strings.HasPrefix(target, private+"/") {
		if err := MakePrivate(private); err != nil {
			return fmt.Errorf("making mount point %s: %w", target, err)
		}
	}
	if _, err := os.Stat(target); os.IsNotExist(err) {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("making mount point %s: %w", target, err)
		}
	}
	return nil
}

// Linux makes the real syscalls.
type Linux struct{}

// Mount makes target (a folder) if it is missing, and mounts (a target in
// PrivateDir makes PrivateDir private first: MakeMountPoint). A bind mount
// of a file needs its target file made by the caller.
func (Linux) Mount(source, target, fstype string, flags uintptr, data string) error {
	if err := MakeMountPoint(target); err != nil {
		return err
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		if fstype == "" {
			fstype = "none"
		}
		return fmt.Errorf("mount -t %s %s %s (flags %#x, options %q): %w", fstype, source, target, flags, data, err)
	}
	return nil
}

// Mounted reads /proc/self/mountinfo. Before /proc is mounted nothing is
// known to be mounted, which is the truth at that point of the boot.
func (Linux) Mounted(target string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, nil
	}
	defer f.Close()
	return mountedIn(bufio.NewScanner(f), target)
}

func mountedIn(sc *bufio.Scanner, target string) (bool, error) {
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": field 5 is the mount point.
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && unescape(f[4]) == target {
			return true, nil
		}
	}
	return false, sc.Err()
}

// SourceAt returns what is mounted at target (the topmost mount's source,
// as mount(2) was given it: "/dev/sda1"), and false when nothing is.
func SourceAt(target string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	return sourceIn(bufio.NewScanner(f), target)
}

func sourceIn(sc *bufio.Scanner, target string) (source string, ok bool) {
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw":
		// the source follows the fstype after "-". Later lines are mounts
		// made later: the last at target is the one seen there.
		f := strings.Fields(sc.Text())
		if len(f) < 5 || unescape(f[4]) != target {
			continue
		}
		for i := 5; i+2 < len(f); i++ {
			if f[i] == "-" {
				source, ok = unescape(f[i+2]), true
				break
			}
		}
	}
	return source, ok
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Op is one recorded operation.
type Op struct {
	Kind   string // "mount", "loop", "switch-root"
	Source string
	Target string
	FSType string
	Data   string
	Flags  uintptr
}

func (o Op) String() string {
	switch o.Kind {
	case "mount":
		return fmt.Sprintf("mount -t %s %s %s %s", o.FSType, o.Source, o.Target, o.Data)
	case "loop":
		return fmt.Sprintf("loop %s %s", o.Source, o.Target)
	}
	return fmt.Sprintf("%s %s", o.Kind, o.Target)
}

// Recorder is a Mounter that records operations and mounts nothing. Targets
// listed in AlreadyMounted count as mounted from the start.
type Recorder struct {
	mu             sync.Mutex
	Ops            []Op
	AlreadyMounted map[string]bool
	loops          int
}

// Mount records the mount.
func (r *Recorder) Mount(source, target, fstype string, flags uintptr, data string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Ops = append(r.Ops, Op{Kind: "mount", Source: source, Target: target, FSType: fstype, Data: data, Flags: flags})
	if r.AlreadyMounted == nil {
		r.AlreadyMounted = map[string]bool{}
	}
	r.AlreadyMounted[target] = true
	return nil
}

// Mounted reports what was recorded.
func (r *Recorder) Mounted(target string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.AlreadyMounted[target], nil
}

// AttachLoop records the attachment and hands out /dev/loop0, 1, …
func (r *Recorder) AttachLoop(file string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dev := fmt.Sprintf("/dev/loop%d", r.loops)
	r.loops++
	r.Ops = append(r.Ops, Op{Kind: "loop", Source: file, Target: dev})
	return dev, nil
}

// SwitchRoot records the switch.
func (r *Recorder) SwitchRoot(newRoot string, move []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Ops = append(r.Ops, Op{Kind: "switch-root", Target: newRoot, Data: strings.Join(move, ",")})
	return nil
}

// Recorded returns a copy of the operations so far.
func (r *Recorder) Recorded() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.Ops...)
}
