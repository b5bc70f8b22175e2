package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Stopping a write. Every writer has a Context variant (WriteSquashfsContext,
// WriteFATContext, WriteISOContext, WriteRawContext) that looks at its context
// between files and, within a file, every copyChunk bytes (the copies into the
// go-diskfs workspaces and into the raw disk), and refuses every write
// go-diskfs makes into the image once the context is done (ctxFile). It then
// returns the context's error, wrapped with what was being written, and the
// temporary dst+".tmp" is removed: dst is never touched.

// copyChunk is how many bytes a copy moves between two looks at its context.
const copyChunk = 4 << 20

// stopped returns ctx's error wrapped with what was being written, or nil
// while ctx goes on.
func stopped(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// stoppedBy returns, when ctx is done, why err happened: err itself
// wrapped with what when it carries ctx's error, else ctx's error (go-diskfs
// formats the errors it passes on with %v). It returns nil while ctx goes on.
func stoppedBy(ctx context.Context, what string, err error) error {
	cause := ctx.Err()
	if cause == nil {
		return nil
	}
	if err != nil && errors.Is(err, cause) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, cause)
}

// copyCtx copies r to w, copyChunk bytes at a time, until r ends or ctx is
// done. Between two *os.File each chunk still goes through copy_file_range:
// io.CopyN hands os.File.ReadFrom an *io.LimitedReader, which it unwraps.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := io.CopyN(w, r, copyChunk)
		total += n
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// ctxFile is the image file as go-diskfs sees it: every write into it
// fails once ctx is done, so that go-diskfs's Finalize (which copies every
// file of its workspace into the image) stops in the middle. go-diskfs
// reports such a failure with %v, losing the error's identity, and ignores
// it for some writes: a writer that gave go-diskfs a ctxFile checks ctx
// itself after go-diskfs returns, and never commits an image written while
// ctx was done.
type ctxFile struct {
	*os.File
	ctx context.Context
}

func (c ctxFile) WriteAt(p []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.File.WriteAt(p, off)
}

func (c ctxFile) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.File.Write(p)
}

// CtxReader reads r until ctx is done: a long copy or hash stops at the
// next read after a Ctrl-C rather than at its end.
func CtxReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

// ctxReader reads r until ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
