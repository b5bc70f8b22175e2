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
	put("opt/bin/containerd-shim-spin-v2", 0o755) // not on the PATH
	want := []Runtime{
		{"nvidia", "/usr/local/bin/nvidia-container-runtime"},
		{"nvidia-cdi", "/usr/local/nvidia/toolkit/nvidia-container-runtime.cdi"},
	}
	if got := Runtimes(root); !slices.Equal(got, want) || !HasNvidia(got) {
		t.Errorf("Runtimes = %v, want %v", got, want)
	}
	if HasNvidia([]Runtime{{"crun", "/usr/bin/crun"}}) {
		t.Error("crun is no NVIDIA runtime")
	}
}
