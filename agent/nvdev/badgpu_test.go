package nvdev

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// paths are the nodes' paths.
func paths(nodes []Node) map[string]bool {
	m := map[string]bool{}
	for _, n := range nodes {
		m[n.Path] = true
	}
	return m
}

// TestOneBadGPUCostsOnlyItsFile: a GPU whose information file is empty
// (what NVIDIA's driver writes when it cannot ask the GPU), unreadable, or
// gone between the listing and the read is left out, and the error names
// it; nvidiactl, nvidia-uvm, MIG's capabilities and the other GPUs' files
// are still listed.
func TestOneBadGPUCostsOnlyItsFile(t *testing.T) {
	proc := h100Proc(t)
	gpus := filepath.Join(proc, "driver/nvidia/gpus")
	write(t, filepath.Join(gpus, "0000:41:00.0/information"), "Model: \t\t NVIDIA H100\nDevice Minor: \t 1\n")
	write(t, filepath.Join(gpus, "0000:05:00.0/information"), "") // empty
	// A folder where the file belongs: its read fails, as a GPU removed meanwhile.
	if err := os.MkdirAll(filepath.Join(gpus, "0000:07:00.0/information"), 0o755); err != nil {
		t.Fatal(err)
	}
	nodes, err := Nodes(proc)
	got := paths(nodes)
	for _, p := range []string{"nvidiactl", "nvidia0", "nvidia1", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-caps/nvidia-cap1", "nvidia-caps/nvidia-cap2"} {
		if !got[p] {
			t.Errorf("no %s with one bad GPU: %+v", p, nodes)
		}
	}
	if len(nodes) != 7 {
		t.Errorf("nodes %+v, want 7", nodes)
	}
	if err == nil || !strings.Contains(err.Error(), "GPU 0000:05:00.0 has no device file") ||
		!strings.Contains(err.Error(), "0000:05:00.0/information has no Device Minor line") ||
		!strings.Contains(err.Error(), "GPU 0000:07:00.0 has no device file") {
		t.Errorf("error = %v, want it to name both bad GPUs", err)
	}
	if err != nil && strings.Contains(err.Error(), "0000:41:00.0") {
		t.Errorf("error names a good GPU: %v", err)
	}
}

// TestNodesDoNotWaitForAStuckDriver: NVIDIA's driver can hold the read of
// a GPU's information file while the GPU does not answer (a FIFO stands in
// for it here); Nodes gives up on it after DriverReads's wait, says so,
// and lists the rest, so that the boot's DriversLoaded is not held.
func TestNodesDoNotWaitForAStuckDriver(t *testing.T) {
	proc := h100Proc(t)
	stuck := filepath.Join(proc, "driver/nvidia/gpus/0000:41:00.0/information")
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
	DriverReads.Set(50*time.Millisecond, nil)
	t.Cleanup(func() { DriverReads.Set(0, nil) })
	type result struct {
		nodes []Node
		err   error
	}
	done := make(chan result, 1)
	go func() {
		n, err := Nodes(proc)
		done <- result{n, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Nodes still waits for the driver's read")
	}
	got := paths(r.nodes)
	for _, p := range []string{"nvidiactl", "nvidia0", "nvidia-uvm"} {
		if !got[p] {
			t.Errorf("no %s while the driver holds another GPU's read: %+v", p, r.nodes)
		}
	}
	if r.err == nil || !strings.Contains(r.err.Error(), "GPU 0000:41:00.0 has no device file") || !strings.Contains(r.err.Error(), "did not answer") {
		t.Errorf("error = %v, want it to name the GPU whose read did not end", r.err)
	}
}
