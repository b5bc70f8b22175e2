// Package verity appends a dm-verity hash tree to a system image, so that
// the agent can map it through the kernel's dm-verity target and every block
// read at run time is checked against a root hash given on the kernel
// command line (etoile.verity=<root>:<salt>).
//
// The layout is the one veritysetup writes with --no-superblock (format
// version 1): SHA-256, 4096-byte data and hash blocks, each digest
// SHA256(salt || block), 128 digests per hash block (zero-padded), the levels
// stored top level first right after the data area; the root hash is
// SHA256(salt || the single top-level block). The data area is the image
// padded with zeros to a multiple of 4096 bytes (squashfs ignores what lies
// past its bytes_used).
package verity

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// BlockSize is the data and hash block size.
const BlockSize = 4096

// digestsPerBlock is how many SHA-256 digests one hash block holds.
const digestsPerBlock = BlockSize / sha256.Size

// Tree describes the hash tree appended to an image.
type Tree struct {
	Root       [32]byte
	Salt       [32]byte
	DataBlocks uint64 // 4096-byte blocks of the (padded) image; the tree starts right after
}

// DataBytes is the size of the data area: where the hash tree starts.
func (t Tree) DataBytes() uint64 { return t.DataBlocks * BlockSize }

// Cmdline is the kernel argument the agent verifies the image with.
func (t Tree) Cmdline() string {
	return "etoile.verity=" + hex.EncodeToString(t.Root[:]) + ":" + hex.EncodeToString(t.Salt[:])
}

// Append pads the file at path to a multiple of BlockSize and appends its
// hash tree. The salt is the SHA-256 of the padded image, so a build is
// reproducible.
//
// The whole file is taken as the data area: the caller makes sure it does
// not already carry a tree (a second Append would hash the first tree as
// data and append another). Append cannot tell: the tree has no
// superblock (veritysetup --no-superblock) and is made of SHA-256 digests,
// which look like any other data.
func Append(path string) (Tree, error) {
	return AppendContext(context.Background(), path)
}

// AppendContext is Append that stops when ctx is done: it looks at ctx
// every checkEvery blocks while it hashes the image (twice: once for the
// salt, once for the tree) and before it writes the tree. It then returns
// ctx's error, wrapped, and leaves the file as it found it (the padding
// removed, no tree written), as it does on any error.
func AppendContext(ctx context.Context, path string) (Tree, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return Tree{}, err
	}
	t, err := appendTree(ctx, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Tree{}, fmt.Errorf("adding the dm-verity hash tree to %s: %w", path, err)
	}
	return t, nil
}

// checkEvery is how many blocks (4 MiB) are hashed between two looks at
// the context.
const checkEvery = 1024

// ctxReader reads r until ctx is done, then returns ctx's error.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	n   int
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.n += len(p); c.n >= checkEvery*BlockSize {
		c.n = 0
		if err := c.ctx.Err(); err != nil {
			return 0, err
		}
	}
	return c.r.Read(p)
}

func appendTree(ctx context.Context, f *os.File) (t Tree, err error) {
	if err := ctx.Err(); err != nil {
		return Tree{}, err
	}
	st, err := f.Stat()
	if err != nil {
		return Tree{}, err
	}
	size := st.Size()
	if size == 0 {
		return Tree{}, errors.New("the image is empty")
	}
	// Stopped or failed: the file goes back to its size, without the
	// padding or a part of a tree.
	orig := size
	defer func() {
		if err != nil {
			if terr := f.Truncate(orig); terr != nil {
				err = fmt.Errorf("%w (and cutting the file back to %d bytes: %v)", err, orig, terr)
			}
		}
	}()
	if r := size % BlockSize; r != 0 {
		size += BlockSize - r
		if err := f.Truncate(size); err != nil {
			return Tree{}, err
		}
	}
	t.DataBlocks = uint64(size / BlockSize)

	// The salt: the SHA-256 of the padded image.
	h := sha256.New()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: io.NewSectionReader(f, 0, size)}); err != nil {
		return Tree{}, err
	}
	copy(t.Salt[:], h.Sum(nil))

	if t.DataBlocks == 1 {
		// No tree (the kernel counts 0 levels): the root is the block's digest.
		block := make([]byte, BlockSize)
		if _, err := f.ReadAt(block, 0); err != nil {
			return Tree{}, err
		}
		t.Root = saltedSum(t.Salt[:], block)
		return t, nil
	}
	// Level 0 (the data blocks' digests) first, then up to a single block.
	levels := [][]byte{}
	lvl, err := hashBlocks(ctx, bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20), t.DataBlocks, t.Salt[:])
	if err != nil {
		return Tree{}, err
	}
	levels = append(levels, lvl)
	for len(lvl) > BlockSize {
		n := uint64(len(lvl) / BlockSize)
		if lvl, err = hashBlocks(ctx, bytes.NewReader(lvl), n, t.Salt[:]); err != nil {
			return Tree{}, err
		}
		levels = append(levels, lvl)
	}
	top := levels[len(levels)-1]
	t.Root = saltedSum(t.Salt[:], top)
	// The last look: once the tree is being written, it is written whole.
	if err := ctx.Err(); err != nil {
		return Tree{}, err
	}

	// Stored top level first, right after the data area.
	w := bufio.NewWriterSize(io.NewOffsetWriter(f, size), 1<<20)
	for i := len(levels) - 1; i >= 0; i-- {
		if _, err := w.Write(levels[i]); err != nil {
			return Tree{}, err
		}
	}
	if err := w.Flush(); err != nil {
		return Tree{}, err
	}
	return t, nil
}

// hashBlocks reads n blocks from r and returns their digests, packed 128 to
// a hash block, the last one zero-padded. It returns ctx's error when ctx
// is done, looking every checkEvery blocks.
func hashBlocks(ctx context.Context, r io.Reader, n uint64, salt []byte) ([]byte, error) {
	hashBlocksN := (n + digestsPerBlock - 1) / digestsPerBlock
	out := make([]byte, hashBlocksN*BlockSize)
	buf := make([]byte, BlockSize)
	for i := uint64(0); i < n; i++ {
		if i%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		d := saltedSum(salt, buf)
		copy(out[i*sha256.Size:], d[:])
	}
	return out, nil
}

func saltedSum(salt, block []byte) [32]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(block)
	var d [32]byte
	h.Sum(d[:0])
	return d
}
