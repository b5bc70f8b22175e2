package k3s

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRuntimesAsK3sFindsThem(t *testing.T) {
	root := t.TempDir()
	put := func(p string, mode os.FileMode) {
		t.Helper()
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if got := Runtimes(root); len(got) != 0 || HasNvidia(got) {
		t.Fatalf("an empty root: %v, want none", got)
	}
	put("usr/bin/nvidia-container-runtime", 0o755)
	put("usr/local/bin/nvidia-container-runtime", 0o755) // earlier on the PATH: it wins
	put("usr/local/nvidia/toolkit/nvidia-container-runtime.cdi", 0o755)
	put("usr/bin/nvidia-container-runtime-experimental", 0o644)                     // not executable: K3s's lookup skips it
	if err := os.MkdirAll(filepath.Join(root, "usr/bin/crun"), 0o755); err != nil { // a folder: skipped
		t.Fatal(err)
	}
	put("opt/bin/containerd-shim-spin-v2", 0o755)           // not on the PATH
	put("opt/kwasm/bin/containerd-shim-wasmtime-v1", 0o755) // K3s looks in KWasm's folder first
	want := []Runtime{
		{"nvidia", "/usr/local/bin/nvidia-container-runtime"},
		{"nvidia-cdi", "/usr/local/nvidia/toolkit/nvidia-container-runtime.cdi"},
		{"wasmtime", "/opt/kwasm/bin/containerd-shim-wasmtime-v1"},
	}
	if got := Runtimes(root); !slices.Equal(got, want) || !HasNvidia(got) {
		t.Errorf("Runtimes = %v, want %v", got, want)
	}
	// The GPU Operator's toolkit folder comes before the PATH, as in K3s.
	put("usr/local/nvidia/toolkit/nvidia-container-runtime", 0o755)
	if got := Runtimes(root); got[0] != (Runtime{"nvidia", "/usr/local/nvidia/toolkit/nvidia-container-runtime"}) {
		t.Errorf("Runtimes = %v, want the toolkit folder's nvidia-container-runtime first", got)
	}
	if HasNvidia([]Runtime{{"crun", "/usr/bin/crun"}}) {
		t.Error("crun is no NVIDIA runtime")
	}
}
