package boot

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// siginfoPid reads si_pid from a siginfo filled by waitid. x/sys leaves the
// union blank; si_pid is its first field, which starts after three int32s
// aligned to a pointer (offset 16 on 64-bit, 12 on 32-bit).
func siginfoPid(info *unix.Siginfo) int {
	off := uintptr(12)
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), off)))
}
