package boot

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestUserProcessesLeavesKernelThreadsOut: kill(-1, 0) counts the kernel's
// threads, so PID 1 never saw "everyone has exited"; /proc's flags tell.
func TestUserProcessesLeavesKernelThreadsOut(t *testing.T) {
	proc := t.TempDir()
	for pid, stat := range map[string]string{
		"1":    "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0",
		"2":    "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0", // PF_KTHREAD
		"57":   "57 (kworker/0:1-events) I 2 0 0 0 -1 69238880 0 0",
		"412":  "412 (containerd-shim) S 1 412 412 0 -1 1077936384 0 0 0 0",
		"413":  "413 (my (odd) name) D 412 413 413 0 -1 4194560 0 0 0 0",
		"self": "ignored",
	} {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "stat"), []byte(stat+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := userProcesses(proc)
	want := []Proc{{412, "containerd-shim"}, {413, "my (odd) name"}}
	if !slices.Equal(got, want) {
		t.Errorf("userProcesses = %v, want %v", got, want)
	}
	// This machine's own /proc: the test process is one, the kernel's
	// threads (kthreadd, pid 2) are not.
	mine := userProcesses("/proc")
	if !slices.ContainsFunc(mine, func(p Proc) bool { return p.PID == os.Getpid() }) {
		t.Errorf("on this machine, this test's process is not listed: %v", mine)
	}
	for _, p := range mine {
		if stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "stat")); err == nil {
			fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			if flags, _ := strconv.ParseUint(fields[6], 10, 64); flags&pfKthread != 0 {
				t.Errorf("kernel thread %v listed", p)
			}
		}
	}
}

func TestWritableMountsFromMountinfo(t *testing.T) {
	info := `22 1 0:21 / / rw,relatime - overlay etoile-root rw,lowerdir=/sysroot-ro,upperdir=/run/x/upper,workdir=/run/x/work
23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,size=4000k
24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
25 22 0:23 / /run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
30 22 8:3 / /run/etoile/state ro,relatime - ext4 /dev/sda3 ro,noload
31 22 8:17 / /var/lib/longhorn rw,relatime - ext4 /dev/sdb1 rw
32 31 8:18 / /var/lib/longhorn/replica\040one rw,relatime - xfs /dev/sdb2 rw
33 22 0:50 / /run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
34 22 0:51 / /mnt/nfs rw,relatime - nfs4 srv:/export rw
35 22 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
36 22 7:0 / /sysroot-ro ro - squashfs /dev/loop0 ro
`
	var got []string
	for _, m := range writableMounts(parseMountinfo([]byte(info))) {
		got = append(got, m.Target+" "+m.FSType)
	}
	// The machine's own disks first: a dead NFS server's mount would
	// otherwise spend the release's time before them.
	want := []string{"/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs overlay",
		"/var/lib/longhorn/replica one xfs", "/var/lib/longhorn ext4", "/mnt/nfs nfs4"}
	if !slices.Equal(got, want) {
		t.Errorf("writable mounts, last first:\n%q\nwant\n%q", got, want)
	}
}

// TestReleaseFilesystemsIsBounded: a busy filesystem is remounted
// read-only; one whose unmount blocks (an NFS server gone) is left after
// its time, said; the others are unmounted in order.
func TestReleaseFilesystemsIsBounded(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	var mu sync.Mutex
	var order []string
	unmount := func(t string) error {
		mu.Lock()
		order = append(order, t)
		mu.Unlock()
		switch t {
		case "/busy":
			return errors.New("device or resource busy")
		case "/nfs":
			<-block
		}
		return nil
	}
	remount := func(t string) error {
		if t == "/busy" {
			return nil
		}
		return errors.New("no")
	}
	r := releaseFilesystems(nil, []Mount{{Target: "/a", Source: "/dev/sda1"}, {Target: "/busy", Source: "/dev/sdb1"},
		{Target: "/nfs", Source: "srv:/x"}, {Target: "/nfs2", Source: "srv:/x"}, {Target: "/b", Source: "/dev/sdc1"}}, unmount, remount, 200*time.Millisecond)
	if !slices.Equal(r.Unmounted, []string{"/a", "/b"}) || !slices.Equal(r.ReadOnly, []string{"/busy"}) || len(r.Left) != 2 ||
		!strings.Contains(r.Left[0], "/nfs (unmount did not return") || !strings.Contains(r.Left[1], "/nfs2 (srv:/x did not answer") {
		t.Errorf("released %+v", r)
	}
	// The whole is bounded too.
	defer func(d time.Duration) { releaseWithin = d }(releaseWithin)
	releaseWithin = 0
	if r := releaseFilesystems(nil, []Mount{{Target: "/late"}}, unmount, remount, time.Second); len(r.Left) != 1 || !strings.Contains(r.Left[0], "no time left") {
		t.Errorf("past the deadline: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []string{"/a", "/busy", "/nfs", "/b"}) {
		t.Errorf("unmount order %q", order)
	}
	if !syncWithin(nil, func() {}, time.Second) {
		t.Error("a sync that returns was not waited for")
	}
	stuck := make(chan struct{})
	defer close(stuck)
	if syncWithin(nil, func() { <-stuck }, 100*time.Millisecond) {
		t.Error("a sync that blocks was said to have finished")
	}
}

// TestStopProcesses: processes that exit on SIGTERM are not killed, and the
// wait ends when they have gone, long before the grace period; one that
// ignores SIGTERM is killed once the grace period has passed, named on the
// log; one that survives SIGKILL too is returned.
func TestStopProcesses(t *testing.T) {
	type run struct {
		sent  []syscall.Signal
		reaps int
	}
	stop := func(exitOn func(syscall.Signal) bool, grace time.Duration) (run, []Proc, string) {
		var r run
		var log bytes.Buffer
		procs := []Proc{{PID: 412, Comm: "containerd-shim"}, {PID: 977, Comm: "postgres"}}
		left := stopProcesses(slog.New(slog.NewTextHandler(&log, nil)), func() []Proc { return procs },
			func(sig syscall.Signal) {
				r.sent = append(r.sent, sig)
				if exitOn(sig) {
					procs = nil
				}
			}, func() { r.reaps++ }, grace)
		return r, left, log.String()
	}
	// Gone at SIGTERM: within an hour's grace, the call returns at once.
	done := make(chan struct{})
	go func() {
		defer close(done)
		r, left, log := stop(func(s syscall.Signal) bool { return true }, time.Hour)
		if !slices.Equal(r.sent, []syscall.Signal{syscall.SIGTERM}) || len(left) != 0 || log != "" || r.reaps == 0 {
			t.Errorf("processes that exit on SIGTERM: signals %v, left %v, reaps %d, log %q", r.sent, left, r.reaps, log)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("stopProcesses waited for the grace period although every process had exited")
	}
	// Ignores SIGTERM: killed after the grace period, and named.
	r, left, log := stop(func(s syscall.Signal) bool { return s == syscall.SIGKILL }, 300*time.Millisecond)
	if !slices.Equal(r.sent, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}) || len(left) != 0 ||
		!strings.Contains(log, "processes still running 300ms after SIGTERM: killed") || !strings.Contains(log, "containerd-shim[412],postgres[977]") {
		t.Errorf("processes that ignore SIGTERM: signals %v, left %v, log %q", r.sent, left, log)
	}
	// Survives SIGKILL (stuck in the kernel): returned to be said.
	if _, left, _ := stop(func(syscall.Signal) bool { return false }, 100*time.Millisecond); len(left) != 2 {
		t.Errorf("processes that survive SIGKILL: left %v, want both", left)
	}
}
