package verity

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
)

// countdownCtx is a context whose Err turns to context.Canceled at its
// left-th look: a cancellation at an exact point, with no clock.
type countdownCtx struct {
	context.Context
	left, looks int
}

func (c *countdownCtx) Err() error {
	c.looks++
	if c.left--; c.left < 0 {
		return context.Canceled
	}
	return nil
}

// TestAppendContextStops: a context done before or during the hashing
// (of the salt or of the tree) stops AppendContext with the context's
// error, and the file is left as it was: no padding, no tree.
func TestAppendContextStops(t *testing.T) {
	const n = 20<<20 + 17 // 5121 blocks: padded; several looks per pass
	want, err := os.ReadFile(image(t, n, 3))
	if err != nil {
		t.Fatal(err)
	}
	// A full run: how often does it look?
	full := &countdownCtx{Context: context.Background(), left: 1 << 30}
	p := image(t, n, 3)
	tree, err := AppendContext(full, p)
	if err != nil {
		t.Fatal(err)
	}
	if ref, err := Append(image(t, n, 3)); err != nil || ref != tree {
		t.Fatalf("AppendContext gave %+v, Append %+v (%v)", tree, ref, err)
	}
	// At least one look at the start, one per 4 MiB of each pass, one before
	// writing.
	if full.looks < 1+5+5+1 {
		t.Fatalf("AppendContext looked at its context %d times while hashing 20 MiB twice", full.looks)
	}
	for left := 0; left < full.looks; left++ {
		p := image(t, n, 3)
		ctx := &countdownCtx{Context: context.Background(), left: left}
		_, err := AppendContext(ctx, p)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped at look %d: error %v, want context.Canceled", left+1, err)
		}
		if ctx.looks != left+1 {
			t.Errorf("stopped at look %d: went on to look %d times", left+1, ctx.looks)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("stopped at look %d: the file is %d bytes, not the %d-byte image it was", left+1, len(got), len(want))
		}
	}
}
