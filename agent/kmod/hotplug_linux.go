package kmod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/safego"
)

// Uevent is one kernel device event.
type Uevent struct {
	Action    string // "add", "remove", "bind", …
	DevPath   string
	Subsystem string // "block", "net", "pci", …
	Modalias  string
}

// ParseUevent reads a kernel uevent message ("add@/devices/…\0ACTION=add\0
// MODALIAS=usb:…\0…"). Messages from udev (which start "libudev") are not
// the kernel's and are refused.
func ParseUevent(b []byte) (Uevent, bool) {
	fields := bytes.Split(b, []byte{0})
	if len(fields) < 2 || !bytes.Contains(fields[0], []byte("@")) {
		return Uevent{}, false
	}
	var u Uevent
	for _, f := range fields[1:] {
		k, v, ok := bytes.Cut(f, []byte("="))
		if !ok {
			continue
		}
		switch string(k) {
		case "ACTION":
			u.Action = string(v)
		case "DEVPATH":
			u.DevPath = string(v)
		case "MODALIAS":
			u.Modalias = string(v)
		case "SUBSYSTEM":
			u.Subsystem = string(v)
		}
	}
	return u, u.Action != ""
}

// Hotplug is the kernel's uevent socket, opened before the first scan so
// that no device added meanwhile is missed.
type Hotplug struct {
	f       *os.File
	rc      syscall.RawConn
	dropped atomic.Int64 // messages not from the kernel, ignored
}

// OpenHotplug starts listening to the kernel's uevents.
func OpenHotplug() (*Hotplug, error) {
	// Non-blocking, so that Go's poller waits for it: closing the socket
	// then ends a read in progress (WatchHotplug's, when its ctx ends).
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("opening the kernel's uevent socket: %w", err)
	}
	// A burst of events at boot (every device of a driver that binds)
	// must not overflow the default buffer.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	// Group 1 is the kernel's own events.
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1, Pid: 0}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listening to kernel uevents: %w", err)
	}
	return &Hotplug{f: os.NewFile(uintptr(fd), "uevent")}, nil
}

// recv reads one message, and the netlink port id of its sender: 0 is the
// kernel, anything else a process (udev, or one forging events).
func (h *Hotplug) recv(buf []byte) (n int, port uint32, err error) {
	if h.rc == nil {
		if h.rc, err = h.f.SyscallConn(); err != nil {
			return 0, 0, err
		}
	}
	var rerr error
	err = h.rc.Read(func(fd uintptr) bool {
		var from unix.Sockaddr
		for {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			return false // nothing yet: the poller waits
		}
		port = ^uint32(0) // no netlink sender: not the kernel
		if sa, ok := from.(*unix.SockaddrNetlink); ok {
			port = sa.Pid
		}
		return true
	})
	if err != nil {
		return 0, 0, err
	}
	return n, port, rerr
}

// WatchHotplug loads drivers for devices as they appear, as udev would:
// every "add" uevent that carries a modalias starts its driver's load at
// once (no rescan of the buses). Only the kernel's messages count: one
// from a process (netlink port id not 0) is ignored, as udev does, so that
// no process can make PID 1 load a module by forging a device. onEvent,
// when not nil, sees every event (the boot waits for its medium on block
// events). A lost burst of events (ENOBUFS) is caught up with a rescan. It
// returns when ctx ends; it closes h.
func (c *Coldplug) WatchHotplug(ctx context.Context, h *Hotplug, onEvent func(Uevent)) error {
	c.watching.Store(true)
	defer c.watching.Store(false)
	safego.Go(c.Log, "closing the device events' socket", func() {
		<-ctx.Done()
		h.f.Close()
	})
	buf := make([]byte, 64*1024)
	var wg sync.WaitGroup // loads are tracked by pending
	for {
		n, port, err := h.recv(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.ENOMEM) {
				var errno unix.Errno
				if !errors.As(err, &errno) {
					// Not the socket's error but its end (closed).
					return fmt.Errorf("reading device events: %w", err)
				}
			}
			// ENOBUFS: events were lost in a burst; a rescan catches up.
			if _, serr := c.StartScan(ctx); serr != nil {
				return serr
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if port != 0 {
			if h.dropped.Add(1) == 1 {
				c.Log.Warn("device event from a process ignored: only the kernel's are followed", "sender_port", port,
					"hint", "a process with CAP_NET_ADMIN sends uevents; the later ones are ignored silently")
			}
			continue
		}
		u, ok := ParseUevent(buf[:n])
		if !ok {
			continue
		}
		if u.Action == "add" && u.Modalias != "" {
			c.Log.Debug("device added", "devpath", u.DevPath, "modalias", u.Modalias)
			c.startForDevices(ctx, []string{u.Modalias}, &wg, true)
		}
		if onEvent != nil {
			onEvent(u)
		}
	}
}
