package kmod

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitBlocked waits until a goroutine running fn waits for its socket (in
// the poller, or in a read system call).
func waitBlocked(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(g, fn) && (strings.Contains(header, "[IO wait") || strings.Contains(header, "[syscall")) {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWatchHotplugEndsWithItsContext: cancelling the watch ends it while
// it waits for the kernel's next event, and closes the socket.
func TestWatchHotplugEndsWithItsContext(t *testing.T) {
	h, err := OpenHotplug()
	if err != nil {
		t.Fatalf("opening the uevent socket: %v", err)
	}
	c, _, _ := failColdplug(t, &Recorder{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.WatchHotplug(ctx, h, nil) }()
	waitBlocked(t, "kmod.(*Coldplug).WatchHotplug")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchHotplug = %v after its context ended, want nil", err)
		}
	case <-time.After(time.Minute): // a hang guard, not a timing
		t.Fatal("WatchHotplug still reads after its context ended (it waits for the next uevent)")
	}
}

// netlinkQueued is the bytes waiting in the receive queue of the netlink
// socket of protocol proto and port id port (/proc/net/netlink's Rmem).
func netlinkQueued(t *testing.T, proto int, port uint32) int {
	t.Helper()
	f, err := os.Open("/proc/net/netlink")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 || fs[1] != strconv.Itoa(proto) || fs[2] != strconv.FormatUint(uint64(port), 10) {
			continue
		}
		n, err := strconv.Atoi(fs[4])
		if err != nil {
			t.Fatalf("/proc/net/netlink: %q", sc.Text())
		}
		return n
	}
	t.Fatalf("no netlink socket %d:%d in /proc/net/netlink", proto, port)
	return 0
}

// TestWatchHotplugIgnoresProcesses: a uevent a process sends (its netlink
// port id is not 0, the kernel's) starts no load and is not handed on,
// however it looks: a process with CAP_NET_ADMIN must not make PID 1 load
// modules by forging devices. The watched socket here is a NETLINK_USERSOCK
// one, to which any process may send.
func TestWatchHotplugIgnoresProcesses(t *testing.T) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_USERSOCK)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrNetlink).Pid
	h := &Hotplug{f: os.NewFile(uintptr(fd), "uevent-test")}
	rec := &Recorder{}
	c, _, log := failColdplug(t, rec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan Uevent, 10)
	done := make(chan error, 1)
	go func() { done <- c.WatchHotplug(ctx, h, func(u Uevent) { events <- u }) }()

	forger, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_USERSOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(forger)
	for _, ma := range []string{e1000eModalias, "net-pf-33"} {
		msg := "add@/devices/forged\x00ACTION=add\x00DEVPATH=/devices/forged\x00SUBSYSTEM=pci\x00MODALIAS=" + ma + "\x00SEQNUM=1\x00"
		if err := unix.Sendto(forger, []byte(msg), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: port}); err != nil {
			t.Fatal(err)
		}
	}
	// Once the second message is read, the first has been handled.
	for netlinkQueued(t, unix.NETLINK_USERSOCK, port) > 0 {
		time.Sleep(time.Millisecond)
	}
	for c.pending.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
	if got := rec.Loaded(); len(got) != 0 {
		t.Errorf("forged uevents loaded %q", got)
	}
	select {
	case u := <-events:
		t.Errorf("a forged uevent was handed on: %+v", u)
	default:
	}
	if !strings.Contains(log.String(), "device event from a process ignored") {
		t.Errorf("the forged event is not logged:\n%s", log)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("WatchHotplug = %v", err)
	}
}
