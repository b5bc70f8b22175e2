package qa

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// ReplaceInImage copies the disk image src to dst and overwrites, inside dst,
// every copy of old that starts on a 512-byte boundary and is stored
// contiguously, with repl followed by zeros up to old's length. It returns the
// offsets it patched, and an error if there were none.
//
// This is how the layout floors are made: the build's ISO or raw image with the
// initramfs bytes swapped for the floor's, wherever the ISO9660 tree or a FAT
// filesystem keeps them. Nothing else moves, so firmware, boot loader and
// kernel do exactly what they do with the real image, and the boot loader still
// reads as many bytes. The floor pads its initramfs with PadCPIO first, so the
// kernel does not spend time on the padding either.
func ReplaceInImage(src, dst string, old, repl []byte) ([]int64, error) {
	const sector = 512
	if len(old) < sector {
		return nil, fmt.Errorf("file to replace is %d bytes: too short to find reliably", len(old))
	}
	if len(repl) > len(old) {
		return nil, fmt.Errorf("replacement (%d bytes) is larger than the file it replaces (%d bytes)", len(repl), len(old))
	}
	if err := copyFile(src, dst); err != nil {
		return nil, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	prefix := old[:sector]
	const chunk = 8 << 20
	buf := make([]byte, chunk)
	var found []int64
	for off := int64(0); ; off += chunk {
		n, rerr := f.ReadAt(buf, off)
		for p := 0; p+sector <= n; p += sector {
			if !bytes.Equal(buf[p:p+sector], prefix) {
				continue
			}
			at := off + int64(p)
			whole := make([]byte, len(old))
			if _, err := f.ReadAt(whole, at); err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read %s at %d: %w", dst, at, err)
			}
			if bytes.Equal(whole, old) {
				found = append(found, at)
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				break
			}
			return nil, fmt.Errorf("read %s: %w", dst, rerr)
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no contiguous, sector-aligned copy of the %d-byte file in %s (fragmented in a filesystem, or compressed)", len(old), src)
	}
	padded := make([]byte, len(old))
	copy(padded, repl)
	for _, at := range found {
		if _, err := f.WriteAt(padded, at); err != nil {
			return nil, fmt.Errorf("patch %s at %d: %w", dst, at, err)
		}
	}
	return found, nil
}

// FloorSet is an out/-like folder whose media boot qa/floor instead of the
// agent: the kernel and system image are the build's, the initramfs is the
// floor's, and the ISO and raw image are the build's with the initramfs
// replaced in place (ReplaceInImage). Layout says, per artifact, whether that
// worked; where it did not, a floor falls back to the direct-kernel boot.
type FloorSet struct {
	Dir    string
	Layout map[string]bool   // ISOName, RawName → patched
	Why    map[string]string // artifact → why it could not be patched
}

var (
	floorSetOnce sync.Once
	floorSet     FloorSet
	floorSetErr  error
)

// Floors builds the FloorSet for the artifacts in out, once per test binary.
func Floors(tb testing.TB, out string) FloorSet {
	tb.Helper()
	floorInitrd := FloorInitramfs(tb)
	floorSetOnce.Do(func() { floorSet, floorSetErr = buildFloorSet(out, floorInitrd) })
	if floorSetErr != nil {
		tb.Fatal(floorSetErr)
	}
	return floorSet
}

func buildFloorSet(out, floorInitrd string) (FloorSet, error) {
	base, err := workBase()
	if err != nil {
		return FloorSet{}, err
	}
	fs := FloorSet{Dir: filepath.Join(base, "floor", "out"), Layout: map[string]bool{}, Why: map[string]string{}}
	if err := os.RemoveAll(fs.Dir); err != nil {
		return fs, err
	}
	if err := os.MkdirAll(fs.Dir, 0o755); err != nil {
		return fs, err
	}
	for _, n := range []string{KernelName, SystemName} {
		if _, err := os.Stat(filepath.Join(out, n)); err == nil {
			if err := os.Symlink(filepath.Join(out, n), filepath.Join(fs.Dir, n)); err != nil {
				return fs, err
			}
		}
	}
	repl, err := os.ReadFile(floorInitrd)
	if err != nil {
		return fs, err
	}
	if err := os.WriteFile(filepath.Join(fs.Dir, InitramfsName), repl, 0o644); err != nil {
		return fs, err
	}
	old, err := os.ReadFile(filepath.Join(out, InitramfsName))
	if err != nil {
		for _, n := range []string{ISOName, RawName} {
			fs.Why[n] = "no " + InitramfsName + " in " + out
		}
		return fs, nil
	}
	padded, err := PadCPIO(repl, len(old))
	if err != nil {
		for _, n := range []string{ISOName, RawName} {
			fs.Why[n] = "floor initramfs: " + err.Error()
		}
		return fs, nil
	}
	for _, n := range []string{ISOName, RawName} {
		src := filepath.Join(out, n)
		if _, err := os.Stat(src); err != nil {
			fs.Why[n] = "no " + n
			continue
		}
		if _, err := ReplaceInImage(src, filepath.Join(fs.Dir, n), old, padded); err != nil {
			fs.Why[n] = err.Error()
			continue
		}
		fs.Layout[n] = true
	}
	return fs, nil
}
