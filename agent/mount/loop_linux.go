package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// AttachLoop binds file to a free loop device, read-only. It asks
// /dev/loop-control for a free device and configures it in one
// LOOP_CONFIGURE call (Linux ≥ 5.8), falling back to LOOP_SET_FD +
// LOOP_SET_STATUS64 on older kernels. LO_FLAGS_AUTOCLEAR is not set: with it
// the device detaches the moment this function closes its fd, before the
// caller can mount it (seen as EIO from squashfs); the system image stays
// mounted for the machine's life anyway.
func (Linux) AttachLoop(file string) (string, error) {
	img, err := os.Open(file) // read-only: the image is never written
	if err != nil {
		return "", fmt.Errorf("opening system image %s: %w", file, err)
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("opening /dev/loop-control: %w (is the loop module in the image's module list?)", err)
	}
	defer ctl.Close()
	// Another process may take the free device between the two calls: retry.
	for attempt := 0; attempt < 10; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("asking /dev/loop-control for a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		if err := ensureNode(dev, 7, n); err != nil {
			return "", err
		}
		err = configure(dev, img, file)
		if errors.Is(err, unix.EBUSY) {
			continue
		}
		if err != nil {
			return "", err
		}
		return dev, nil
	}
	return "", fmt.Errorf("attaching %s: every free loop device was taken by someone else, 10 times", file)
}

func configure(dev string, img *os.File, file string) error {
	loop, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dev, err)
	}
	defer loop.Close()
	info := unix.LoopInfo64{Flags: unix.LO_FLAGS_READ_ONLY}
	copy(info.File_name[:], filepath.Base(file))
	cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Info: info}
	err = unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("LOOP_CONFIGURE %s with %s: %w", dev, file, err)
	}
	// Kernels before 5.8 have no LOOP_CONFIGURE.
	if err := unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_SET_FD, int(img.Fd())); err != nil {
		return fmt.Errorf("LOOP_SET_FD %s with %s: %w", dev, file, err)
	}
	if err := unix.IoctlLoopSetStatus64(int(loop.Fd()), &info); err != nil {
		_ = unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64 %s: %w", dev, err)
	}
	return nil
}

// ensureNode makes the device node if devtmpfs has not yet: the kernel adds
// it from a kernel thread, a moment after LOOP_CTL_GET_FREE created the device.
func ensureNode(path string, major, minor int) error {
	deadline := time.Now().Add(200 * time.Millisecond)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	err := unix.Mknod(path, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(major), uint32(minor))))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("making device node %s: %w", path, err)
	}
	return nil
}
