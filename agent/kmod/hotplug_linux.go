package kmod

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Uevent is one kernel device event.
type Uevent struct {
	Action   string // "add", "remove", "bind", …
	DevPath  string
	Modalias string
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
		}
	}
	return u, u.Action != ""
}

// WatchHotplug loads drivers for devices that appear after the boot (a USB
// NIC or stick plugged in, a hot-added disk), as udev would: it listens to
// the kernel's uevents and rescans on every "add" that carries a modalias.
// It returns when ctx ends or the socket cannot be opened.
func (c *Coldplug) WatchHotplug(ctx context.Context) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return fmt.Errorf("opening the kernel's uevent socket: %w", err)
	}
	// Group 1 is the kernel's own events.
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1, Pid: 0}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("listening to kernel uevents: %w", err)
	}
	f := os.NewFile(uintptr(fd), "uevent")
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	buf := make([]byte, 64*1024)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// ENOBUFS: events were lost in a burst; a rescan catches up.
			if _, serr := c.Scan(ctx); serr != nil {
				return serr
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		u, ok := ParseUevent(buf[:n])
		if !ok || u.Action != "add" || u.Modalias == "" {
			continue
		}
		c.Log.Debug("device added", "devpath", u.DevPath, "modalias", u.Modalias)
		if _, err := c.Scan(ctx); err != nil && ctx.Err() == nil {
			c.Log.Warn("loading drivers for a new device failed", "reason", err.Error())
		}
	}
}
