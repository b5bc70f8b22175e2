// Package dm maps a block device through the kernel's device-mapper with one
// dm-verity target, in pure Go (the agent is static, without libdevmapper or
// cgo): the ioctls of /dev/mapper/control, as dmsetup and veritysetup make.
package dm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper's control node.
const ControlPath = "/dev/mapper/control"

// ioctlSize is sizeof(struct dm_ioctl).
const ioctlSize = 312

// specSize is sizeof(struct dm_target_spec).
const specSize = 40

// The ioctl numbers: _IOWR(0xfd, nr, struct dm_ioctl).
const (
	cmdDevCreate  = 3
	cmdDevRemove  = 4
	cmdDevSuspend = 6
	cmdTableLoad  = 9
)

// readOnly is DM_READONLY_FLAG.
const readOnly = 1 << 0

// ioctlNumber is _IOWR(0xfd, nr, struct dm_ioctl).
func ioctlNumber(nr uint32) uint32 {
	const iocRead, iocWrite = 2, 1
	return (iocRead|iocWrite)<<30 | ioctlSize<<16 | 0xfd<<8 | nr
}

// Verity is one dm-verity target over a device that holds both the data
// and, from HashStartBlock on, the hash tree (format version 1, SHA-256,
// 4096-byte blocks, no superblock: image/verity).
type Verity struct {
	Dev            string // major:minor of the data and hash device
	DataBlocks     uint64 // 4096-byte data blocks
	HashStartBlock uint64 // in 4096-byte blocks from the device's start
	Root, Salt     string // hex
}

// Params is the target's table line, as dmsetup table prints it.
func (v Verity) Params() string {
	return fmt.Sprintf("1 %s %s 4096 4096 %d %d sha256 %s %s", v.Dev, v.Dev, v.DataBlocks, v.HashStartBlock, v.Root, v.Salt)
}

// Sectors is the mapped device's length in 512-byte sectors.
func (v Verity) Sectors() uint64 { return v.DataBlocks * 8 }

// header encodes a struct dm_ioctl for a buffer of size bytes (the header
// and what follows it).
func header(b []byte, name string, flags, targets uint32) error {
	if len(name) == 0 || len(name) >= 128 {
		return fmt.Errorf("device-mapper name %q: want 1 to 127 bytes", name)
	}
	le := binary.LittleEndian // the agent runs on amd64 and arm64
	le.PutUint32(b[0:], 4)    // version 4.0.0
	le.PutUint32(b[4:], 0)
	le.PutUint32(b[8:], 0)
	le.PutUint32(b[12:], uint32(len(b))) // data_size
	le.PutUint32(b[16:], ioctlSize)      // data_start
	le.PutUint32(b[20:], targets)        // target_count
	le.PutUint32(b[28:], flags)
	copy(b[48:48+127], name)
	return nil
}

// bufSize is the buffer given to every ioctl: the kernel writes its answer
// (the device number, or a name list) into it.
const bufSize = 16 * 1024

// encodeCreate is DM_DEV_CREATE's buffer.
func encodeCreate(name string) ([]byte, error) {
	b := make([]byte, bufSize)
	return b, header(b, name, 0, 0)
}

// encodeResume is DM_DEV_SUSPEND's buffer without DM_SUSPEND_FLAG: resume,
// which makes the loaded table live.
func encodeResume(name string) ([]byte, error) { return encodeCreate(name) }

// encodeLoad is DM_TABLE_LOAD's buffer: one read-only verity target.
func encodeLoad(name string, v Verity) ([]byte, error) {
	params := v.Params()
	n := specSize + len(params) + 1
	n = (n + 7) &^ 7
	if ioctlSize+n > bufSize {
		return nil, errors.New("verity table too long")
	}
	b := make([]byte, bufSize)
	if err := header(b, name, readOnly, 1); err != nil {
		return nil, err
	}
	s := b[ioctlSize:]
	le := binary.LittleEndian
	le.PutUint64(s[0:], 0)           // sector_start
	le.PutUint64(s[8:], v.Sectors()) // length
	le.PutUint32(s[16:], 0)          // status
	le.PutUint32(s[20:], uint32(n))  // next
	copy(s[24:40], "verity")
	copy(s[specSize:], params) // NUL-terminated: the buffer is zeroed
	return b, nil
}

// devOf reads the device number the kernel wrote back into a dm_ioctl.
func devOf(b []byte) uint64 { return binary.LittleEndian.Uint64(b[40:]) }

// Control opens the device-mapper's control node under root ("" is /),
// making it from /sys/class/misc/device-mapper/dev when devtmpfs lacks it.
func Control(root string) (*os.File, error) {
	p := root + ControlPath
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		major, minor := uint32(10), uint32(236)
		if d, err := os.ReadFile(root + "/sys/class/misc/device-mapper/dev"); err == nil {
			if ma, mi, ok := strings.Cut(strings.TrimSpace(string(d)), ":"); ok {
				a, err1 := strconv.ParseUint(ma, 10, 32)
				i, err2 := strconv.ParseUint(mi, 10, 32)
				if err1 == nil && err2 == nil {
					major, minor = uint32(a), uint32(i)
				}
			}
		} else {
			return nil, fmt.Errorf("the kernel has no device-mapper (dm_mod not loaded?): %w", err)
		}
		if err := os.MkdirAll(root+"/dev/mapper", 0o755); err != nil {
			return nil, err
		}
		if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("making %s: %w", p, err)
		}
	}
	return os.OpenFile(p, os.O_RDWR|unix.O_CLOEXEC, 0)
}

func ioctl(f *os.File, nr uint32, b []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(ioctlNumber(nr)), uintptr(unsafe.Pointer(&b[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// CreateVerity creates the read-only device name mapping v and returns its
// node, /dev/dm-<minor> (under root), once devtmpfs has made it (or made
// here after a second).
func CreateVerity(root, name string, v Verity) (string, error) {
	ctl, err := Control(root)
	if err != nil {
		return "", err
	}
	defer ctl.Close()
	b, err := encodeCreate(name)
	if err != nil {
		return "", err
	}
	if err := ioctl(ctl, cmdDevCreate, b); err != nil {
		return "", fmt.Errorf("creating device-mapper device %s: %w", name, err)
	}
	remove := func() {
		if rb, err := encodeCreate(name); err == nil {
			_ = ioctl(ctl, cmdDevRemove, rb)
		}
	}
	if b, err = encodeLoad(name, v); err != nil {
		remove()
		return "", err
	}
	if err := ioctl(ctl, cmdTableLoad, b); err != nil {
		remove()
		return "", fmt.Errorf("loading the verity table (%s): %w", v.Params(), err)
	}
	if b, err = encodeResume(name); err != nil {
		remove()
		return "", err
	}
	if err := ioctl(ctl, cmdDevSuspend, b); err != nil {
		remove()
		return "", fmt.Errorf("activating the verity device: %w", err)
	}
	dev := devOf(b)
	node := fmt.Sprintf("%s/dev/dm-%d", root, unix.Minor(dev))
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(node); err == nil {
			return node, nil
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(unix.Major(dev), unix.Minor(dev)))); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("making %s: %w", node, err)
	}
	return node, nil
}
