package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// PartitionType is a GPT partition type GUID.
type PartitionType string

// Partition types used by Étoile's disks.
const (
	TypeEFISystem       PartitionType = PartitionType(gpt.EFISystemPartition)
	TypeLinuxFilesystem PartitionType = PartitionType(gpt.LinuxFilesystem)
	TypeBasicData       PartitionType = PartitionType(gpt.MicrosoftBasicData)
)

// Partition is a GPT partition filled from an image file.
type Partition struct {
	// Label is the GPT partition name, e.g. "ETOILE-A"; the agent finds
	// slots by it.
	Label string
	// Source is the image copied to the start of the partition; empty
	// leaves the partition zeroed.
	Source string
	// Size is the partition size in bytes, rounded up to 1 MiB; 0 means the
	// Source's size rounded up. A Source larger than Size is an error.
	Size int64
	// Type is the partition type; empty means TypeLinuxFilesystem.
	Type PartitionType
}

// RawOptions controls WriteRaw.
type RawOptions struct {
	// ESPLabel is both the ESP's GPT name and its FAT label, e.g. "ETOILE-ESP".
	ESPLabel string
	// ESPSize in bytes, rounded up to 1 MiB; 0 means FATSize(ESPFiles).
	ESPSize     int64
	ESPFiles    []File
	ESPVolumeID uint32
	Partitions  []Partition
	// DiskGUID is the GPT disk GUID; empty derives one from the labels and
	// Epoch. Partition GUIDs are derived from it and the partition index.
	DiskGUID string
	Epoch    int64
}

const mib = 1 << 20

// WriteRaw writes a GPT disk image: a protective MBR, partitions aligned to
// 1 MiB, partition 1 a FAT32 ESP holding ESPFiles, then opts.Partitions in
// order, and the backup GPT in the last 1 MiB.
func WriteRaw(dst string, opts RawOptions) error {
	return WriteRawContext(context.Background(), dst, opts)
}

// WriteRawContext is WriteRaw that stops when ctx is done: between the ESP's
// files, at the next cluster go-diskfs writes, and every few MiB while a
// partition's image is copied in. It then returns ctx's error, wrapped, and
// leaves no dst.
func WriteRawContext(ctx context.Context, dst string, opts RawOptions) error {
	if opts.ESPLabel == "" {
		return fmt.Errorf("RawOptions.ESPLabel is empty: name the ESP, e.g. ETOILE-ESP")
	}
	espFiles, err := cleanFiles(opts.ESPFiles)
	if err != nil {
		return fmt.Errorf("ESP files: %w", err)
	}
	espSize := opts.ESPSize
	if espSize == 0 {
		if espSize, err = FATSize(espFiles); err != nil {
			return err
		}
	}
	espSize = max(roundUp(espSize, mib), MinFATSize)
	diskGUID := opts.DiskGUID
	if diskGUID == "" {
		seed := fmt.Sprintf("%d/%s", opts.Epoch, opts.ESPLabel)
		for _, p := range opts.Partitions {
			seed += "/" + p.Label
		}
		diskGUID = derivedGUID("etoile-disk", seed)
	}
	if _, err := guidBytes(diskGUID); err != nil {
		return fmt.Errorf("RawOptions.DiskGUID: %w", err)
	}

	// Lay out: ESP at 1 MiB, every partition on a MiB boundary.
	parts := []*gpt.Partition{{
		Index: 1, Start: mib / 512, End: uint64((mib+espSize)/512 - 1), Size: uint64(espSize),
		Type: gpt.EFISystemPartition, Name: opts.ESPLabel, GUID: derivedGUID(diskGUID, "partition-1"),
	}}
	next := mib + espSize
	sizes := make([]int64, len(opts.Partitions))
	for i, p := range opts.Partitions {
		if p.Label == "" {
			return fmt.Errorf("RawOptions.Partitions[%d].Label is empty", i)
		}
		size := p.Size
		if p.Source != "" {
			st, err := os.Stat(p.Source)
			if err != nil {
				return fmt.Errorf("partition %q source: %w", p.Label, err)
			}
			if size == 0 {
				size = st.Size()
			} else if st.Size() > size {
				return fmt.Errorf("partition %q: source %q is %d bytes, larger than Size %d", p.Label, p.Source, st.Size(), size)
			}
		}
		if size <= 0 {
			return fmt.Errorf("partition %q has neither Size nor Source", p.Label)
		}
		size = roundUp(size, mib)
		sizes[i] = size
		typ := p.Type
		if typ == "" {
			typ = TypeLinuxFilesystem
		}
		idx := i + 2
		parts = append(parts, &gpt.Partition{
			Index: idx, Start: uint64(next / 512), End: uint64((next+size)/512 - 1), Size: uint64(size),
			Type: gpt.Type(typ), Name: p.Label, GUID: derivedGUID(diskGUID, fmt.Sprintf("partition-%d", idx)),
		})
		next += size
	}
	diskSize := next + mib

	if err := stopped(ctx, fmt.Sprintf("write raw disk %q", dst)); err != nil {
		return err
	}
	f, commit, cleanup, err := atomicFile(dst)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := f.Truncate(diskSize); err != nil {
		return fmt.Errorf("size %q to %d bytes: %w", dst, diskSize, err)
	}
	table := &gpt.Table{
		LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		GUID: diskGUID, Partitions: parts,
	}
	if err := table.Write(f, diskSize); err != nil {
		return fmt.Errorf("write GPT to %q: %w", dst, err)
	}
	if _, err := f.WriteAt(protectiveMBREntry(diskSize/512), 446); err != nil {
		return fmt.Errorf("write protective MBR to %q: %w", dst, err)
	}
	fatOpts := FATOptions{Label: opts.ESPLabel, VolumeID: opts.ESPVolumeID, Epoch: opts.Epoch}
	if err := writeFATAt(ctx, f, mib, espSize, espFiles, fatOpts); err != nil {
		what := fmt.Sprintf("write ESP in %q", dst)
		if stop := stoppedBy(ctx, what, err); stop != nil {
			return stop
		}
		if full := (*FATFullError)(nil); errors.As(err, &full) {
			return fmt.Errorf("%s: the ESP %q (partition 1) is too small: %w. "+
				"etoile build puts the kernel and the initramfs there: make the initramfs smaller "+
				"(fewer kernel modules in the spec's modules list, or initramfs.compression: xz); "+
				"calling WriteRaw, give a larger RawOptions.ESPSize, or 0 to size the ESP from its files",
				what, opts.ESPLabel, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	for i, p := range opts.Partitions {
		if p.Source == "" {
			continue
		}
		if err := copyAt(ctx, f, int64(parts[i+1].Start)*512, p.Source); err != nil {
			return fmt.Errorf("write partition %q in %q: %w", p.Label, dst, err)
		}
	}
	if err := stopped(ctx, fmt.Sprintf("write raw disk %q", dst)); err != nil {
		return err
	}
	return commit()
}

// protectiveMBREntry is the protective MBR's 0xEE partition record for a disk
// of sectors 512-byte sectors, as the UEFI specification (§5.2.3) has it and
// sgdisk writes it: start CHS 0x000200, end CHS the last sector's in a
// 255-head, 63-sector geometry or 0xFFFFFF past cylinder 1023, start LBA 1,
// size the disk's sectors minus one or 0xFFFFFFFF when that does not fit.
// go-diskfs leaves both CHS fields 0 and truncates the size to 32 bits.
func protectiveMBREntry(sectors int64) []byte {
	const heads, perTrack = 255, 63
	e := make([]byte, 16)
	e[1], e[2], e[3] = 0x00, 0x02, 0x00
	e[4] = 0xee
	last := sectors - 1
	if c := last / (heads * perTrack); c > 1023 {
		e[5], e[6], e[7] = 0xff, 0xff, 0xff
	} else {
		h := last / perTrack % heads
		sec := last%perTrack + 1
		e[5], e[6], e[7] = byte(h), byte(sec)|byte(c>>8)<<6, byte(c)
	}
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], uint32(min(sectors-1, 0xffffffff)))
	return e
}

// copyAt copies the file src into f at offset off, until ctx is done.
func copyAt(ctx context.Context, f *os.File, off int64, src string) error {
	r, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %q: %w", src, err)
	}
	defer r.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	// *os.File to *os.File: copy_file_range, in the kernel, a chunk at a time.
	if _, err := copyCtx(ctx, f, r); err != nil {
		return fmt.Errorf("copy %q: %w", src, err)
	}
	return nil
}
