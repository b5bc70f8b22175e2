package qa

import (
	"fmt"
	"io"
	"strings"
)

// CPIOEntry is one file of a newc ("070701") archive, the format the kernel
// unpacks as an initramfs.
type CPIOEntry struct {
	Name  string // without a leading slash, e.g. "init" or "dev/console"
	Mode  uint32 // file type and permission bits, e.g. 0o100755 or 0o020600
	Data  []byte // regular files only
	Major uint32 // device numbers, for device nodes
	Minor uint32
}

// Mode file-type bits as cpio stores them.
const (
	CPIODir  = 0o040000
	CPIOFile = 0o100000
	CPIOChar = 0o020000
)

// WriteCPIO writes entries as a newc archive with every timestamp zero, so the
// floor initramfs is the same bytes on every run. Parents must be listed
// before their children.
func WriteCPIO(w io.Writer, entries []CPIOEntry) error {
	ino := uint32(1)
	for _, e := range entries {
		name := strings.TrimPrefix(e.Name, "/")
		if name == "" || strings.Contains(name, "\x00") {
			return fmt.Errorf("cpio entry name %q: want a relative path without NUL", e.Name)
		}
		if e.Mode&0o170000 != CPIOFile && len(e.Data) > 0 {
			return fmt.Errorf("cpio entry %s: only regular files carry data (mode %o)", name, e.Mode)
		}
		if err := writeCPIOHeader(w, ino, e.Mode, 1, uint32(len(e.Data)), e.Major, e.Minor, name); err != nil {
			return fmt.Errorf("write cpio entry %s: %w", name, err)
		}
		if err := writePadded(w, e.Data); err != nil {
			return fmt.Errorf("write cpio data of %s: %w", name, err)
		}
		ino++
	}
	if err := writeCPIOHeader(w, 0, 0, 1, 0, 0, 0, "TRAILER!!!"); err != nil {
		return fmt.Errorf("write cpio trailer: %w", err)
	}
	return nil
}

func writeCPIOHeader(w io.Writer, ino, mode, nlink, size, major, minor uint32, name string) error {
	// ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	// The header (110 bytes) and name are padded together to a multiple of 4.
	return writePadded(w, []byte(hdr+name+"\x00"))
}

func writePadded(w io.Writer, b []byte) error {
	if _, err := w.Write(b); err != nil {
		return err
	}
	if pad := (4 - len(b)%4) % 4; pad > 0 {
		_, err := w.Write(make([]byte, pad))
		return err
	}
	return nil
}
