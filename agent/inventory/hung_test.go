package inventory

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// holdDriver stands in for NVIDIA's driver holding the reads of /proc/driver/nvidia (a GPU
// that does not answer) until the test ends; it counts the reads begun.
func holdDriver(t *testing.T, wait time.Duration) *atomic.Int32 {
	t.Helper()
	oldWait, oldRead := driverWait, readDriverFile
	release := make(chan struct{})
	var reads atomic.Int32
	driverWait = wait
	readDriverFile = func(r root, p string) ([]byte, error) {
		if !strings.HasPrefix(p, "/proc/driver/nvidia/") {
			return oldRead(r, p)
		}
		reads.Add(1)
		<-release
		return nil, errors.New("released")
	}
	t.Cleanup(func() { close(release); driverWait, readDriverFile = oldWait, oldRead })
	return &reads
}

// TestDriverReadIsBounded: a read of /proc/driver/nvidia that the driver holds costs one
// bounded wait, which is said; the driver's other files are not read (each would cost the
// wait again), and the GPUs are listed with what nvidia-smi says.
func TestDriverReadIsBounded(t *testing.T) {
	reads := holdDriver(t, 100*time.Millisecond)
	inv, err := collectWithin(t, context.Background(), Options{Root: writeServerTree(t),
		Run: func(context.Context, string, ...string) ([]byte, error) { return []byte(smiTwoA100), nil }}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("%d reads of the driver's files, want 1 (the others skipped once one was held)", n)
	}
	if !hasWarning(inv, "/proc/driver/nvidia/version did not end within 100ms", "NVIDIA's driver does not answer") || len(inv.Warnings) != 1 {
		t.Errorf("warnings = %q, want one naming the held read", inv.Warnings)
	}
	if len(inv.GPUs) != 2 || inv.GPUs[0].MemoryMiB != 81920 || inv.GPUs[0].Model != "NVIDIA A100 80GB PCIe" {
		t.Errorf("GPUs = %+v, want both, with nvidia-smi's details", inv.GPUs)
	}
}

// TestCollectReturnsWhileAReadIsHeld: Collect returns when its context ends, even while a
// read is still held in the kernel (here: longer than the context lasts).
func TestCollectReturnsWhileAReadIsHeld(t *testing.T) {
	holdDriver(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	inv, err := collectWithin(t, ctx, Options{Root: writeServerTree(t),
		Run: func(context.Context, string, ...string) ([]byte, error) { return []byte(smiTwoA100), nil }}, 10*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) || inv != nil {
		t.Errorf("Collect = %v, %v; want no inventory and the context's error", inv, err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Collect returned %s after it began, want soon after its context ended", d)
	}
}
