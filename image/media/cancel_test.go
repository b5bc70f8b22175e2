package media

import (
	"bytes"
	"context"
	"errors"
	"github.com/etoile-os/etoile/internal/countdown"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// cancelWriters are the four writers on inputs with large files (several
// copy chunks each) and many small ones, each writing into dir.
func cancelWriters(t *testing.T) []struct {
	name  string
	write func(ctx context.Context, dst string) error
} {
	t.Helper()
	in := t.TempDir()
	big := filepath.Join(in, "big")
	writeFile(t, big, randomBytes(3*copyChunk+12345, 21), 0o644)
	tree := filepath.Join(in, "tree")
	writeFile(t, filepath.Join(tree, "usr/lib/libcuda.so"), randomBytes(3*copyChunk+777, 22), 0o755)
	for i := 0; i < 300; i++ {
		writeFile(t, filepath.Join(tree, "etc", "f"+strconv.Itoa(i)), randomBytes(i*13, uint32(i+5)), 0o644)
	}
	esp := []File{
		{Path: "/EFI/BOOT/BOOTX64.EFI", Data: randomBytes(100<<10, 23)},
		{Path: "/etoile/a/vmlinuz", Source: big},
		{Path: "/loader/loader.conf", Data: []byte("timeout 0\n")},
	}
	var isoFiles []File
	for i := 0; i < 50; i++ {
		isoFiles = append(isoFiles, File{Path: "/small/f" + strconv.Itoa(i), Data: randomBytes(i*100, uint32(i+30))})
	}
	isoFiles = append(isoFiles, File{Path: "/etoile/system.sqfs", Source: big})
	return []struct {
		name  string
		write func(ctx context.Context, dst string) error
	}{
		{"squashfs", func(ctx context.Context, dst string) error {
			return WriteSquashfsContext(ctx, dst, tree, SquashfsOptions{Epoch: 1})
		}},
		{"fat", func(ctx context.Context, dst string) error {
			size, err := FATSize(esp)
			if err != nil {
				return err
			}
			return WriteFATContext(ctx, dst, size, esp, FATOptions{Label: "ETOILE-EFI", VolumeID: 1, Epoch: 1})
		}},
		{"iso", func(ctx context.Context, dst string) error {
			return WriteISOContext(ctx, dst, ISOOptions{VolumeLabel: "ETOILE", Files: isoFiles, Epoch: 1})
		}},
		{"raw", func(ctx context.Context, dst string) error {
			return WriteRawContext(ctx, dst, RawOptions{ESPLabel: "ETOILE-ESP", ESPFiles: esp, Epoch: 1,
				Partitions: []Partition{{Label: "ETOILE-A", Source: big}}})
		}},
	}
}

// checkNothingLeft fails when the output folder holds anything (dst or
// dst.tmp) or TMPDIR still holds a go-diskfs workspace.
func checkNothingLeft(t *testing.T, out, tmp string) {
	t.Helper()
	for _, dir := range []string{out, tmp} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("a stopped write left %s", filepath.Join(dir, e.Name()))
		}
	}
}

// TestWritersStopWhenCancelledBeforeStart: given a context already
// cancelled, each writer returns context.Canceled at once, having written
// nothing (not even dst.tmp) and looked at the context only once.
func TestWritersStopWhenCancelledBeforeStart(t *testing.T) {
	for _, w := range cancelWriters(t) {
		t.Run(w.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			out := t.TempDir()
			ctx := countdown.New(0)
			err := w.write(ctx, filepath.Join(out, "image"))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			if n := ctx.Calls(); n > 2 {
				t.Errorf("the writer looked at its cancelled context %d times: it went on working", n)
			}
			checkNothingLeft(t, out, tmp)
		})
	}
}

// TestWritersStopMidway: a context cancelled a quarter, half or nine
// tenths of the way through a write, or just before its end (counted in the writer's looks at it:
// between files, every copyChunk of a large file, every block go-diskfs
// writes) stops the write soon after, with context.Canceled, no dst and no
// dst.tmp, and nothing in TMPDIR. A write after that gives the same bytes
// as one never interrupted.
func TestWritersStopMidway(t *testing.T) {
	for _, w := range cancelWriters(t) {
		t.Run(w.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			out := t.TempDir()
			full := countdown.New(1 << 62)
			ref := filepath.Join(t.TempDir(), "ref")
			if err := w.write(full, ref); err != nil {
				t.Fatal(err)
			}
			total := full.Calls()
			if total < 8 {
				t.Fatalf("the writer looked at its context only %d times for %d-byte inputs", total, 3*copyChunk)
			}
			// The last few looks are the raw disk's copy of its partition.
			for _, at := range []int64{total / 4, total / 2, total * 9 / 10, total - 3} {
				ctx := countdown.New(at)
				dst := filepath.Join(out, "image")
				err := w.write(ctx, dst)
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled after %d of %d looks: error %v, want context.Canceled", at, total, err)
				}
				// go-diskfs goes on with a few writes whose errors it
				// ignores; the rest of the image is not written.
				if after := ctx.Calls() - at; after > 16 {
					t.Errorf("cancelled after %d of %d looks: %d more looks before it stopped", at, total, after)
				}
				t.Logf("cancelled after %d of %d looks: stopped %d looks later: %v", at, total, ctx.Calls()-at, err)
				checkNothingLeft(t, out, tmp)
			}
			again := filepath.Join(out, "image")
			if err := w.write(context.Background(), again); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, ref, again)
		})
	}
}

// cancellingReader cancels its context once it has given after bytes.
type cancellingReader struct {
	r      io.Reader
	after  int64
	n      int64
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

// TestCopyStopsWithinAChunk: a single large file's copy stops within a
// copyChunk of the point its context was cancelled, whether it is read from
// a reader or copied file to file (copy_file_range).
func TestCopyStopsWithinAChunk(t *testing.T) {
	const size = 16 * copyChunk
	ctx, cancel := context.WithCancel(context.Background())
	src := &cancellingReader{r: bytes.NewReader(make([]byte, size)), after: copyChunk + 1, cancel: cancel}
	n, err := copyCtx(ctx, io.Discard, src)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("copy: %v, want context.Canceled", err)
	}
	if n > 2*copyChunk+1 {
		t.Errorf("copied %d bytes of %d after a cancel at %d", n, size, copyChunk+1)
	}

	dir := t.TempDir()
	p := filepath.Join(dir, "src")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx2 := countdown.New(2)
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	n, err = copyCtx(ctx2, w, r)
	if !errors.Is(err, context.Canceled) || n != 2*copyChunk {
		t.Errorf("file to file, cancelled after two chunks: copied %d bytes, %v; want %d, context.Canceled", n, err, 2*copyChunk)
	}
}
