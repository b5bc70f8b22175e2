package sysimage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// PartUUIDs returns the unique GUIDs (lower case) of the partitions in the
// GPT of the whole disk at path, whose logical blocks are 512 or 4096
// bytes, indexed by partition number - 1 ("" for an unused entry). No GPT
// is an empty list, not an error. The read is bounded (DeviceReads).
func PartUUIDs(path string) ([]string, error) {
	var ids []string
	err := DeviceReads.Do(path, "its GPT", func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		ids, err = readPartUUIDs(f)
		return err
	})
	if err != nil {
		// Not ids: after a time-out the read still blocked may yet write it.
		return nil, err
	}
	return ids, nil
}

func readPartUUIDs(r io.ReaderAt) ([]string, error) {
	for _, lbs := range []int64{512, 4096} {
		var h [92]byte
		if _, err := r.ReadAt(h[:], lbs); err != nil {
			continue
		}
		if string(h[0:8]) != "EFI PART" {
			continue
		}
		entries := int64(binary.LittleEndian.Uint64(h[72:80]))
		n := int64(binary.LittleEndian.Uint32(h[80:84]))
		size := int64(binary.LittleEndian.Uint32(h[84:88]))
		if n > 1024 || size < 128 || size > 4096 || size%8 != 0 {
			return nil, fmt.Errorf("GPT header with %d entries of %d bytes: not a table this reader trusts", n, size)
		}
		buf := make([]byte, n*size)
		if _, err := r.ReadAt(buf, entries*lbs); err != nil {
			return nil, fmt.Errorf("reading the GPT's entries: %w", err)
		}
		var out []string
		zero := make([]byte, 16)
		for i := int64(0); i < n; i++ {
			e := buf[i*size : (i+1)*size]
			if bytes.Equal(e[0:16], zero) {
				out = append(out, "") // unused entry
				continue
			}
			out = append(out, guidString(e[16:32]))
		}
		for len(out) > 0 && out[len(out)-1] == "" {
			out = out[:len(out)-1]
		}
		return out, nil
	}
	return nil, nil
}

// guidString renders a GUID stored as GPT stores it (the first three fields
// little-endian).
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// diskOf returns the whole disk a partition belongs to: the folder above
// its sysfs entry (/sys/class/block/sda2 links to …/block/sda/sda2), or,
// where that cannot be read, the kernel's naming rule (sda2 → sda,
// nvme0n1p2 → nvme0n1, mmcblk0p1 → mmcblk0).
func diskOf(sysDir, name string) string {
	if p, err := filepath.EvalSymlinks(filepath.Join(sysDir, "class", "block", name)); err == nil {
		if parent := filepath.Base(filepath.Dir(p)); parent != "block" && parent != "." && parent != "/" {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), "dev")); err == nil {
				return parent
			}
		}
	}
	d := strings.TrimRight(name, "0123456789")
	if len(d) >= 2 && d[len(d)-1] == 'p' && d[len(d)-2] >= '0' && d[len(d)-2] <= '9' {
		d = d[:len(d)-1]
	}
	return d
}
