package devread

import (
	"errors"
	"testing"
	"time"
)

func TestDoSkipsAHungReadAndWarnsOnce(t *testing.T) {
	var r Reads
	var warned []string
	r.Set(20*time.Millisecond, func(dev, what string, _ time.Duration) { warned = append(warned, dev+" "+what) })
	release := make(chan struct{})
	var he *HungError
	if err := r.Do("/dev/sda", "its GPT", func() error { <-release; return nil }); !errors.As(err, &he) || he.Device != "/dev/sda" {
		t.Fatalf("a blocked read = %v, want a HungError", err)
	}
	called := false
	if err := r.Do("/dev/sda", "its GPT", func() error { called = true; return nil }); !errors.As(err, &he) || called {
		t.Errorf("while the first read is blocked: %v, read again %v; want it skipped at once", err, called)
	}
	if len(warned) != 1 || warned[0] != "/dev/sda its GPT" {
		t.Errorf("warned %q, want once", warned)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for r.Do("/dev/sda", "its GPT", func() error { return nil }) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the device is still skipped once its read ended")
		}
		time.Sleep(time.Millisecond)
	}
	if err := r.Do("/dev/sdb", "x", func() error { panic("bad bytes") }); err == nil {
		t.Error("a panic in the read is not its error")
	}
}

// TestBackToBackReads: a read right after another of the same device, which
// ended, is never taken for one still blocked.
func TestBackToBackReads(t *testing.T) {
	var r Reads
	for i := 0; i < 20000; i++ {
		if err := r.Do("sda", "a label", func() error { return nil }); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
}
