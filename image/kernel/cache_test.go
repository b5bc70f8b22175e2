package kernel

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/etoile-os/etoile/image/debian"
	"github.com/etoile-os/etoile/internal/countdown"
)

// TestCacheEntryIsReadableByAll: a new cache entry is 0755, not the 0700 of
// the temporary folder it was unpacked in: another user building with the
// same cache reads it.
func TestCacheEntryIsReadableByAll(t *testing.T) {
	_, entry, _ := cachedKernel(t)
	st, err := os.Stat(entry)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("cache entry %s is %v, want 0755", entry, st.Mode().Perm())
	}
}

// TestUnreadableCacheEntryIsLeftAsItIs: an entry whose module folder cannot
// be read (permission denied, an I/O error) is an error naming the entry
// and what to do, not a damaged entry: it is neither removed nor unpacked
// again. The read error is injected: the tests run as root, who reads any
// folder whatever its mode.
func TestUnreadableCacheEntryIsLeftAsItIs(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			p, entry, _ := cachedKernel(t)
			mine := filepath.Join(entry, "kept")
			if err := os.WriteFile(mine, []byte("still here"), 0o644); err != nil {
				t.Fatal(err)
			}
			before, err := os.Stat(entry)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { readDir = os.ReadDir })
			readDir = func(name string) ([]os.DirEntry, error) {
				if strings.HasPrefix(name, entry+string(filepath.Separator)) {
					return nil, &fs.PathError{Op: "open", Path: name, Err: errno}
				}
				return os.ReadDir(name)
			}
			_, err = loadOrUnpack(context.Background(), p, nil, entry, discardLogger())
			if err == nil {
				t.Fatal("an unreadable cache entry was used")
			}
			for _, w := range []string{entry, "cannot be read", "permissions", "--cache", errno.Error()} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if !errors.Is(err, errno) {
				t.Errorf("error %v does not wrap %v", err, errno)
			}
			if strings.Contains(err.Error(), "delete it by hand") || strings.Contains(err.Error(), "no kernel modules") {
				t.Errorf("the unreadable entry was taken for a damaged one: %v", err)
			}
			if data, err := os.ReadFile(mine); err != nil || string(data) != "still here" {
				t.Errorf("the unreadable entry was removed or unpacked again: %s: %q, %v", mine, data, err)
			}
			if after, err := os.Stat(entry); err != nil || !os.SameFile(before, after) {
				t.Errorf("the unreadable entry was replaced: %v", err)
			}
		})
	}
}

// TestCancelledUnpackLeavesNothing: a kernel package being unpacked and
// indexed for the first time stops when the build is interrupted (its
// context cancelled at a quarter, half and nine tenths of the looks a whole
// unpacking takes: in the extraction, the module scan and the file list),
// with context.Canceled, soon, and leaves neither the entry nor an
// .unpack-* folder in the cache.
func TestCancelledUnpackLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	deb := filepath.Join(dir, "k.deb")
	files := map[string][]byte{"boot/vmlinuz-" + fakeVer: fakeBzImage(fakeVer)}
	for i := range 200 {
		files[fmt.Sprintf("lib/modules/%s/kernel/drivers/m%03d.ko", fakeVer, i)] = fakeKO(fmt.Sprintf("name=m%03d", i))
	}
	writeDeb(t, deb, "Package: linux-image-6.1.0-test-amd64\nVersion: 6.1.2-1\nArchitecture: amd64\n", files)
	p, err := debian.ReadPackage(deb)
	if err != nil {
		t.Fatal(err)
	}
	kernels := filepath.Join(dir, "kernels")
	full := countdown.New(1 << 62)
	if err := unpackKernel(full, p, nil, filepath.Join(kernels, "whole"), discardLogger()); err != nil {
		t.Fatal(err)
	}
	total := full.Calls()
	if total < 600 {
		t.Fatalf("a whole unpacking of 201 files looked at its context %d times: want one look per file in each of its passes", total)
	}
	for _, at := range []int64{total / 4, total / 2, total * 9 / 10} {
		entry := filepath.Join(kernels, fmt.Sprintf("cut-%d", at))
		ctx := countdown.New(at)
		err := unpackKernel(ctx, p, nil, entry, discardLogger())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted after %d of %d looks: %v, want context.Canceled", at, total, err)
		}
		if after := ctx.Calls() - at; after > 4 {
			t.Errorf("interrupted after %d of %d looks: it went on for %d more", at, total, after)
		}
		if _, err := os.Lstat(entry); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("interrupted after %d of %d looks: the entry is there (%v)", at, total, err)
		}
		if left, _ := filepath.Glob(filepath.Join(kernels, ".unpack-*")); len(left) > 0 {
			t.Errorf("interrupted after %d of %d looks: left %v", at, total, left)
		}
	}
}
