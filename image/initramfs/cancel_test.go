package initramfs

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/etoile-os/etoile/image/kernel"
)

// cancellingWriter takes what the initramfs writer writes and cancels its
// context once it holds after bytes.
type cancellingWriter struct {
	n      int64
	after  int64
	cancel context.CancelFunc
}

func (c *cancellingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.n >= c.after {
		c.cancel()
	}
	return len(p), nil
}

// TestWriteStopsWhenCancelledBeforeStart: with a context already
// cancelled, WriteContext returns context.Canceled having written nothing.
func TestWriteStopsWhenCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	_, err := WriteContext(ctx, &out, testOptions(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %d bytes after the context was cancelled", out.Len())
	}
}

// manyModules returns n uncompressed stand-in modules of size bytes each.
func manyModules(t *testing.T, n, size int) []kernel.Module {
	dir := t.TempDir()
	var mods []kernel.Module
	r := rand.New(rand.NewPCG(3, 4))
	for i := range n {
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(r.IntN(8))
		}
		copy(data, "\x7fELF")
		name := "m" + strconv.Itoa(i)
		p := filepath.Join(dir, name+".ko")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mods = append(mods, kernel.Module{Name: name, RelPath: "kernel/drivers/" + name + ".ko", Source: p})
	}
	return mods
}

// TestWriteStopsBetweenModules: a context cancelled while the modules are
// written (each read and compressed in turn) stops before the next one.
func TestWriteStopsBetweenModules(t *testing.T) {
	const n = 40
	opts := testOptions(t)
	opts.Modules = manyModules(t, n, 64<<10)
	ctx, cancel := context.WithCancel(context.Background())
	w := &cancellingWriter{after: 1, cancel: cancel} // the first entry's header
	st, err := WriteContext(ctx, w, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if st.Modules > 1 {
		t.Errorf("%d of %d modules written after the cancel", st.Modules, n)
	}
}

// TestWriteStopsWithinALargeFile: a context cancelled while the agent (tens
// of MiB as /init) goes through the compressor stops within writeChunk of
// it, whatever the compression.
func TestWriteStopsWithinALargeFile(t *testing.T) {
	const size = 16 << 20
	agent := make([]byte, size)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range agent {
		agent[i] = byte(r.Uint32()) // incompressible: the output follows the input
	}
	for _, comp := range []string{CompressionNone, CompressionZstd, CompressionXZ} {
		t.Run(comp, func(t *testing.T) {
			opts := testOptions(t)
			opts.Modules = nil
			opts.Init = agent
			opts.Compression = comp
			opts.Level = 1
			ctx, cancel := context.WithCancel(context.Background())
			w := &cancellingWriter{after: 2 << 20, cancel: cancel}
			_, err := WriteContext(ctx, w, opts)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			// The compressors hold up to a few blocks; nowhere near 24 MiB.
			if w.n > 8<<20 {
				t.Errorf("wrote %d bytes of a %d-byte /init after a cancel at 2 MiB", w.n, size)
			}
		})
	}
}

// TestWriteChunksSameBytes: writing large entries to the compressor in
// writeChunk pieces (to look at the context between them) gives the bytes of
// one write of the whole archive.
func TestWriteChunksSameBytes(t *testing.T) {
	big := bytes.Repeat([]byte("agent binary "), 3*writeChunk/13+5)
	for _, comp := range []string{CompressionZstd, CompressionXZ} {
		t.Run(comp, func(t *testing.T) {
			opts := testOptions(t)
			opts.Init = big
			opts.Level = 3
			opts.Compression = CompressionNone
			var raw bytes.Buffer
			st, err := Write(&raw, opts)
			if err != nil {
				t.Fatal(err)
			}
			opts.Compression = comp
			mk, err := newCompressor(opts)
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			want.Write(raw.Bytes()[:st.ModulesSize])
			zw, err := mk(&want)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := zw.Write(raw.Bytes()[st.ModulesSize:]); err != nil { // one write
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if _, err := WriteContext(context.Background(), &got, opts); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("written in pieces: %d bytes, other than one write's %d", got.Len(), want.Len())
			}
		})
	}
}
