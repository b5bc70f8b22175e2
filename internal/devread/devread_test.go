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

// TestASecondReadWaitsForOneInProgress: two probes of a healthy disk at
// once (the inventory's labels and the config volume's search): the second
// waits for the first, then reads; neither is taken for a hung device, and
// no one is warned.
func TestASecondReadWaitsForOneInProgress(t *testing.T) {
	var r Reads
	var warned []string
	r.Set(time.Minute, func(dev, _ string, _ time.Duration) { warned = append(warned, dev) })
	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- r.Do("/dev/sdb1", "its first bytes", func() error { close(started); <-release; return nil })
	}()
	<-started
	second := make(chan error, 1)
	read := false
	go func() {
		second <- r.Do("/dev/sdb1", "its first bytes", func() error { read = true; return nil })
	}()
	select {
	case err := <-second:
		t.Fatalf("while the first read is in progress, the second ended at once: %v; want it to wait", err)
	case <-time.After(50 * time.Millisecond): // the second is waiting (or not started yet)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first read: %v", err)
	}
	if err := <-second; err != nil || !read {
		t.Errorf("second read: %v, read %v; want it read once the first ended", err, read)
	}
	if len(warned) != 0 {
		t.Errorf("warned of %q", warned)
	}
}

// TestAWaitingReadOfAHungDevice: a read that waits for one that then
// passes its wait is skipped (a HungError), without reading the device:
// a hung device gets no second goroutine stuck on it.
func TestAWaitingReadOfAHungDevice(t *testing.T) {
	var r Reads
	r.Set(50*time.Millisecond, nil)
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	first := make(chan error, 1)
	go func() {
		first <- r.Do("/dev/sdc", "its GPT", func() error { close(started); <-release; return nil })
	}()
	<-started
	called := false
	var he *HungError
	if err := r.Do("/dev/sdc", "its GPT", func() error { called = true; return nil }); !errors.As(err, &he) || called {
		t.Errorf("a read waiting for a hung one: %v, read %v; want a HungError and no read", err, called)
	}
	if err := <-first; !errors.As(err, &he) {
		t.Errorf("the hung read: %v, want a HungError", err)
	}
}
