package sysimage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// damageEach sets every step-th byte of the regions of orig to each of vals
// in turn and calls read on the result (restoring it after): a reader's
// every answer on damaged bytes must be an answer, never a panic or a hang.
func damageEach(orig []byte, regions [][2]int64, step int64, vals []byte, read func([]byte)) {
	for _, r := range regions {
		for off := r[0]; off < r[1] && off < int64(len(orig)); off += step {
			was := orig[off]
			for _, v := range vals {
				orig[off] = v
				read(orig)
			}
			orig[off] = was
		}
	}
}

// TestUnmountedReadersRefuse: what holds no filesystem a reader reads is
// its sentinel error (the caller mounts it instead), a missing device an
// error.
func TestUnmountedReadersRefuse(t *testing.T) {
	dir := t.TempDir()
	zeros, short := filepath.Join(dir, "zeros.img"), filepath.Join(dir, "short.img")
	if err := os.WriteFile(zeros, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("CD001"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		name string
		read func(dev, name string, limit int64) ([]byte, error)
		want error
	}{{"ReadFATFile", ReadFATFile, ErrNotFAT32}, {"ReadISOFile", ReadISOFile, ErrNotISO9660}} {
		for _, dev := range []string{zeros, short} {
			if _, err := r.read(dev, "/config.yaml", 1<<20); !errors.Is(err, r.want) {
				t.Errorf("%s(%s): err = %v, want %v", r.name, filepath.Base(dev), err, r.want)
			}
		}
		if _, err := r.read(filepath.Join(dir, "gone"), "/x", 1); err == nil {
			t.Errorf("%s of a missing device: no error", r.name)
		}
	}
}
