package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestDriversLoadedDoesNotWaitForNVIDIAsDriver: NVIDIA's driver can hold
// the read of a GPU's information file while the GPU does not answer (a
// FIFO stands in for it), and LateModules may hold nvDevMu while it makes
// the device files: ImageDriversLoaded and ImageDriversSettled still close
// (K3s, the network and the inventory wait on them), the device files of
// the GPUs that answer are made, and a later call returns.
func TestDriversLoadedDoesNotWaitForNVIDIAsDriver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("making device files needs root: run the tests as root (make test does, as CI)")
	}
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"proc/driver/nvidia/gpus/0000:00:06.0/information": "Model: \t\t NVIDIA H100 80GB HBM3\nDevice Minor: \t 0\n",
		"proc/devices": "Character devices:\n195 nvidia-frontend\n511 nvidia-uvm\n\n",
	})
	stuck := filepath.Join(root, "proc/driver/nvidia/gpus/0000:41:00.0/information")
	if err := os.MkdirAll(filepath.Dir(stuck), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(stuck, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Lets the read still blocked in its open go.
		if f, err := os.OpenFile(stuck, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	var out syncBuffer
	m := New(Options{Root: root, Stdout: &out, WaitScale: 0.01})
	closed := func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never closed while NVIDIA's driver holds a read:\n%s", what, out.String())
		}
	}
	go m.imageDriversLoaded()
	closed("ImageDriversLoaded", m.ImageDriversLoaded())
	closed("ImageDriversSettled", m.ImageDriversSettled())
	if _, err := os.Stat(filepath.Join(root, "dev/nvidia0")); err != nil {
		t.Errorf("the answering GPU's device file: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "0000:41:00.0") {
		t.Errorf("the GPU whose read did not end is not named:\n%s", out.String())
	}

	// Device files being made still (LateModules's, held by the driver):
	// a second Machine's drivers close all the same.
	m2 := New(Options{Root: root, Stdout: &out, WaitScale: 0.01})
	m2.nvDevMu.Lock()
	returned := make(chan struct{})
	go func() { m2.imageDriversLoaded(); close(returned) }()
	closed("ImageDriversLoaded (device files being made)", m2.ImageDriversLoaded())
	closed("imageDriversLoaded's return", returned)
	if !strings.Contains(out.String(), "NVIDIA device files: still being made") {
		t.Errorf("the wait that ended is not said:\n%s", out.String())
	}
	// The files are made once LateModules's are: the stuck GPU named again
	// (at once: its read is still held) says that is done.
	m2.nvDevMu.Unlock()
	for deadline := time.Now().Add(30 * time.Second); strings.Count(out.String(), "has no device file") < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the device files were not made after LateModules's:\n%s", out.String())
		}
	}
}

// syncBuffer is a bytes.Buffer the boot's goroutines may write while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
