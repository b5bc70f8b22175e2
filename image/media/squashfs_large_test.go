package media

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// largeFileMarkers are where sparseFile puts non-zero bytes: both ends, the
// first bytes of some data blocks, and a run across a block boundary.
func largeFileMarkers(size int64) []int64 {
	return []int64{0, SquashfsBlockSize - 3, SquashfsBlockSize, 255 << 20, 256<<20 + 4097, size / 2, size - SquashfsBlockSize - 1, size - 1}
}

// sparseFile writes a sparse file of size bytes, zeros but for 8-byte marks
// (fewer at the end) at largeFileMarkers, each naming its offset.
func sparseFile(t *testing.T, p string, size int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range largeFileMarkers(size) {
		var mark [8]byte
		binary.BigEndian.PutUint64(mark[:], uint64(off)|0xa5<<56)
		n := min(int64(len(mark)), size-off)
		if _, err := f.WriteAt(mark[:n], off); err != nil {
			t.Fatal(err)
		}
	}
}

// sameStream compares two readers chunk by chunk, without holding either.
func sameStream(t *testing.T, name string, want, got io.Reader) {
	t.Helper()
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		n, errA := io.ReadFull(want, a)
		m, errB := io.ReadFull(got, b[:n])
		if m != n || !bytes.Equal(a[:n], b[:m]) {
			for i := 0; i < m; i++ {
				if a[i] != b[i] {
					t.Errorf("%s: byte %d is %#x, want %#x", name, off+int64(i), b[i], a[i])
					return
				}
			}
			t.Errorf("%s: ends at byte %d (%v), want more", name, off+int64(m), errB)
			return
		}
		off += int64(n)
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			if k, _ := got.Read(b[:1]); k > 0 {
				t.Errorf("%s: longer than %d bytes", name, off)
			}
			return
		}
		if errA != nil {
			t.Fatalf("%s: %v", name, errA)
		}
	}
}

func sameFile(t *testing.T, want, got string) {
	t.Helper()
	a, err := os.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(got)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	defer b.Close()
	sameStream(t, got, bufio.NewReader(a), bufio.NewReader(b))
}

// compareMountedTree is compareTrees for trees with large files: contents
// are compared as streams.
func compareMountedTree(t *testing.T, want, got string) {
	t.Helper()
	seen := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		seen++
		rel, _ := filepath.Rel(want, p)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		g := filepath.Join(got, rel)
		gi, err := os.Lstat(g)
		if err != nil {
			t.Errorf("%s missing from the image: %v", rel, err)
			return nil
		}
		if wi.Mode() != gi.Mode() && rel != "." {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wt, _ := os.Readlink(p)
			gt, _ := os.Readlink(g)
			if wt != gt {
				t.Errorf("%s: link target %q, want %q", rel, gt, wt)
			}
		case wi.Mode().IsRegular():
			sameFile(t, p, g)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = filepath.WalkDir(got, func(string, fs.DirEntry, error) error { n++; return nil })
	if n != seen {
		t.Errorf("the image holds %d entries, the source %d", n, seen)
	}
}

// mountSquashfs loop-mounts an image read-only for the test; the function
// it returns unmounts it sooner.
func mountSquashfs(t *testing.T, img string) (string, func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("loop mounts need root: run the tests as root (make test does, as CI)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "squashfs", "-o", "loop,ro", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v\n%s", img, err, out)
	}
	mounted := true
	unmount := func() {
		if !mounted {
			return
		}
		mounted = false
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	}
	t.Cleanup(unmount)
	return dir, unmount
}

// TestWriteSquashfsLargeInode writes a file whose inode (its block list) is
// larger than a metadata block near the end of the inode order: go-diskfs
// v1.9.4 writes at most one 8 KiB block per inode it appends, so the rest of
// the inode table becomes one oversized last block (past 32 KiB its length
// overflows into the "uncompressed" bit), and the inodes after the large one
// are referred to by wrong block numbers. The image must read back exactly,
// through unsquashfs and the kernel, and its export table must point at the
// right inodes.
func TestWriteSquashfsLargeInode(t *testing.T) {
	unsquashfs := tool(t, "unsquashfs", "squashfs-tools")
	for _, tc := range []struct {
		name  string
		size  int64
		after bool
	}{
		// A 24 KiB inode, then one more: a 16 KiB last block holding an
		// inode that go-diskfs numbers by its logical block.
		{"767 MiB, then a file", 767 << 20, true},
		// A 41 KiB inode, the last: a 33 KiB last block.
		{"1300 MiB, last", 1300 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			src := t.TempDir()
			writeFile(t, filepath.Join(src, "a/first"), []byte("before the big file\n"), 0o644)
			if err := os.Symlink("../big", filepath.Join(src, "a/link")); err != nil {
				t.Fatal(err)
			}
			sparseFile(t, filepath.Join(src, "big"), tc.size)
			if tc.after {
				writeFile(t, filepath.Join(src, "c-after"), randomBytes(3*SquashfsBlockSize+5, 7), 0o755)
			}
			dst := filepath.Join(t.TempDir(), "large.sqfs")
			if err := WriteSquashfs(dst, src, SquashfsOptions{Epoch: 1}); err != nil {
				t.Fatal(err)
			}
			listing := run(t, unsquashfs, "-l", dst)
			for _, want := range []string{"squashfs-root/a/link\n", "squashfs-root/big\n"} {
				if !strings.Contains(listing, want) {
					t.Errorf("unsquashfs -l lacks %q:\n%s", want, listing)
				}
			}
			cat := exec.Command(unsquashfs, "-cat", dst, "big")
			out, err := cat.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cat.Stderr = &stderr
			if err := cat.Start(); err != nil {
				t.Fatal(err)
			}
			want, err := os.Open(filepath.Join(src, "big"))
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			sameStream(t, "unsquashfs -cat big", bufio.NewReader(want), bufio.NewReader(out))
			_, _ = io.Copy(io.Discard, out)
			if err := cat.Wait(); err != nil {
				t.Errorf("unsquashfs -cat: %v\n%s", err, stderr.String())
			}
			mnt, unmount := mountSquashfs(t, dst)
			compareMountedTree(t, src, mnt)
			unmount()
			checkSquashfsExportTable(t, dst)
			checkOpenByHandle(t, dst)
		})
	}
}
