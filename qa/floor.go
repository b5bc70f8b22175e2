package qa

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
)

// FloorRE matches the line qa/floor prints as PID 1.
var FloorRE = regexp.MustCompile(`^etoile-floor: ready\b`)

var (
	floorOnce sync.Once
	floorPath string
	floorErr  error
)

// FloorInitramfs builds qa/floor as a static binary and packs it as /init in an
// uncompressed newc initramfs with /dev/console (the kernel opens it for PID 1's
// output before anything could mount devtmpfs). It is built once per test
// binary, under the QA work folder, and the path returned.
func FloorInitramfs(tb testing.TB) string {
	tb.Helper()
	floorOnce.Do(func() { floorPath, floorErr = buildFloor() })
	if floorErr != nil {
		tb.Fatal(floorErr)
	}
	return floorPath
}

func buildFloor() (string, error) {
	base, err := workBase()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(base, "floor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create floor folder %s: %w", dir, err)
	}
	bin := filepath.Join(dir, "init")
	if err := goStatic("build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./qa/floor"); err != nil {
		return "", fmt.Errorf("build qa/floor: %w", err)
	}
	initData, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	err = WriteCPIO(&buf, []CPIOEntry{
		{Name: "dev", Mode: CPIODir | 0o755},
		{Name: "dev/console", Mode: CPIOChar | 0o600, Major: 5, Minor: 1},
		{Name: "dev/kmsg", Mode: CPIOChar | 0o644, Major: 1, Minor: 11},
		{Name: "init", Mode: CPIOFile | 0o755, Data: initData},
	})
	if err != nil {
		return "", fmt.Errorf("pack floor initramfs: %w", err)
	}
	img := filepath.Join(dir, "floor-initramfs.img")
	if err := os.WriteFile(img, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write floor initramfs: %w", err)
	}
	return img, nil
}
