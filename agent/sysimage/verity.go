package sysimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/etoile-os/etoile/internal/squashfs"
)

// verityBlock is the dm-verity data and hash block size the build writes
// (image/verity).
const verityBlock = 4096

// VerityMismatchError is CheckVerity's answer for an image whose hash tree
// was not made for the root hash on the kernel command line: another
// build's image, or a damaged tree.
type VerityMismatchError struct {
	Dev       string
	Want, Got string // root hashes, hex
}

func (e *VerityMismatchError) Error() string {
	return fmt.Sprintf("the system image's dm-verity hash tree on %s has root hash %s, and the kernel command line's etoile.verity= wants %s: the medium holds another build's image than the boot entry was written for, or its hash tree is damaged",
		e.Dev, e.Got, e.Want)
}

// CheckVerity reads the system image on dev (a squashfs followed by its
// dm-verity hash tree, image/verity's layout: at the start of a partition,
// or, with inISO, the ISO9660 file ISOImagePath) and checks that the top
// block of its hash tree gives rootHex with saltHex, as the kernel computes
// it: SHA256(salt || block). It returns the image's data blocks, where its
// hash tree starts. This is no check of the data: the kernel checks every
// block as it is read. It tells the image the boot entry was made for from
// another one (a second Étoile medium, a slot written by another build)
// before anything is mounted. A mismatch is a *VerityMismatchError. The read
// is bounded (DeviceReads).
func CheckVerity(dev string, inISO bool, rootHex, saltHex string) (dataBlocks uint64, err error) {
	root, err := hex.DecodeString(rootHex)
	if err != nil || len(root) != sha256.Size {
		return 0, fmt.Errorf("etoile.verity= root hash %q is not 64 hex digits", rootHex)
	}
	salt, err := hex.DecodeString(saltHex)
	if err != nil {
		return 0, fmt.Errorf("etoile.verity= salt %q is not hex", saltHex)
	}
	err = DeviceReads.Do(dev, "its system image's dm-verity tree", func() error {
		f, err := os.Open(dev)
		if err != nil {
			return err
		}
		defer f.Close()
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return err
		}
		var off int64
		if inISO {
			if off, size, err = isoFileSpan(f, dev, "/"+ISOImagePath); err != nil {
				return err
			}
		}
		blocks, err := checkVerity(f, dev, off, size, root, salt)
		dataBlocks = blocks // read by the caller only without an error: the read ended
		return err
	})
	if err != nil {
		return 0, err
	}
	return dataBlocks, nil
}

// checkVerity is CheckVerity on the image at off (size bytes) of r.
func checkVerity(r io.ReaderAt, dev string, off, size int64, root, salt []byte) (uint64, error) {
	var sb [squashfs.SuperblockLen]byte
	if _, err := r.ReadAt(sb[:], off); err != nil {
		return 0, fmt.Errorf("reading the squashfs superblock of %s: %w", dev, err)
	}
	blocks, err := VerityDataBlocks(sb[:], size)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", dev, err)
	}
	top := make([]byte, verityBlock)
	if _, err := r.ReadAt(top, off+int64(blocks)*verityBlock); err != nil {
		return 0, fmt.Errorf("reading the dm-verity hash tree of %s: %w", dev, err)
	}
	h := sha256.New()
	h.Write(salt)
	h.Write(top)
	if got := h.Sum(nil); !bytes.Equal(got, root) {
		return 0, &VerityMismatchError{Dev: dev, Want: hex.EncodeToString(root), Got: hex.EncodeToString(got)}
	}
	return blocks, nil
}

// VerityDataBlocks reads the squashfs superblock sb of an image of size bytes followed by its dm-verity hash tree, and
// returns the 4096-byte blocks its data takes: bytes_used rounded up, where
// the tree starts. An image that says it leaves no room for the tree's one
// block at least is an error, whatever bytes_used says (it is not checked
// by anything before this).
func VerityDataBlocks(sb []byte, size int64) (uint64, error) {
	super, err := squashfs.Parse(sb)
	if err != nil {
		return 0, errors.New("holds no squashfs")
	}
	used := super.BytesUsed
	if used == 0 || size < verityBlock || used > math.MaxInt64 {
		return 0, fmt.Errorf("the squashfs says it is %d bytes, which leaves no room for its dm-verity hash tree in %d bytes", used, size)
	}
	blocks := (used-1)/verityBlock + 1 // no overflow: used ≤ MaxInt64
	if blocks >= uint64(size)/verityBlock {
		return 0, fmt.Errorf("the squashfs says it is %d bytes, which leaves no room for its dm-verity hash tree in %d bytes", used, size)
	}
	return blocks, nil
}

// isoFileSpan returns where the file at name lies on the ISO9660
// filesystem of r: its offset and size (one extent, as the build writes it).
func isoFileSpan(r io.ReaderAt, dev, name string) (off, size int64, err error) {
	v, err := openISO(r)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", dev, err)
	}
	_, err = walkFile(dev, name, math.MaxInt64, v.root, v.lookup, func(e isoEntry) ([]byte, error) {
		off, size = int64(e.extent)*v.block, int64(e.size)
		return nil, nil
	})
	return off, size, err
}
