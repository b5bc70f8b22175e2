package qa

import (
	"bytes"
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

// PadCPIO returns archive (a complete newc archive, such as WriteCPIO's)
// followed by padding up to size bytes, arranged so the kernel spends no time
// on it. Zero bytes after an archive are skipped one byte at a time, about
// 0.15 s for 10 MB under TCG, which a floor must not pay when the initramfs it
// stands in for does not. So the padding is a second archive whose one entry
// is a regular file in a folder that does not exist ("absent/padding"): the
// kernel cannot create it and steps over its data in one move. Only the last
// few bytes (fewer than an entry needs) are zeros.
func PadCPIO(archive []byte, size int) ([]byte, error) {
	if len(archive) > size {
		return nil, fmt.Errorf("archive (%d bytes) is larger than the size to pad to (%d bytes)", len(archive), size)
	}
	if len(archive)%4 != 0 {
		return nil, fmt.Errorf("archive length %d is not a multiple of 4: not a complete newc archive", len(archive))
	}
	out := bytes.NewBuffer(make([]byte, 0, size))
	out.Write(archive)
	const name, trailer = "absent/padding", "TRAILER!!!"
	overhead := headerLen(name) + headerLen(trailer)
	if body := size - len(archive) - overhead; body >= 0 {
		body -= body % 4
		if err := writeCPIOHeader(out, 1, CPIOFile|0o600, 1, uint32(body), 0, 0, name); err != nil {
			return nil, err
		}
		out.Write(make([]byte, body))
		if err := writeCPIOHeader(out, 0, 0, 1, 0, 0, 0, trailer); err != nil {
			return nil, err
		}
	}
	out.Write(make([]byte, size-out.Len()))
	return out.Bytes(), nil
}

// headerLen is the length of a newc header with its name, padded to 4.
func headerLen(name string) int {
	n := 110 + len(name) + 1
	return n + (4-n%4)%4
}
