package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image"
)

// TestKernelDirReplacesTheSpecsKernel: --kernel-dir is used instead of the
// spec's kernel source, as the README says, even when the spec's kernel.dir
// is a folder only another machine has (a CI runner's): the spec is
// accepted and the build goes on to its next check (here a missing agent).
// A --kernel-dir that is not a folder is refused naming the flag.
func TestKernelDirReplacesTheSpecsKernel(t *testing.T) {
	t.Setenv("ETOILE_K3S_DIR", "")
	dir := t.TempDir()
	kernelDir := filepath.Join(dir, "kernel")
	if err := os.Mkdir(kernelDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, kernel := range []string{"kernel:\n  dir: /srv/ci-kernel\n", "kernel:\n  package: linux-image-cloud-amd64\n"} {
		data := strings.Replace(string(image.DefaultSpecYAML()), "kernel:\n", kernel, 1)
		if !strings.Contains(data, kernel) {
			t.Fatal("the default spec's kernel: line moved")
		}
		spec := filepath.Join(dir, "site.yaml")
		if err := os.WriteFile(spec, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"build", "-f", spec, "-o", filepath.Join(dir, "out"), "--agent", filepath.Join(dir, "no-agent")}
		if _, _, err := runCLI(t, append(args, "--kernel-dir", kernelDir)...); err == nil || !strings.Contains(err.Error(), "no-agent") {
			t.Errorf("%swith --kernel-dir %s: %v, want the spec accepted (and the missing agent reported)", kernel, kernelDir, err)
		}
		_, _, err := runCLI(t, append(args, "--kernel-dir", filepath.Join(dir, "nokernel"))...)
		if err == nil || !strings.Contains(err.Error(), "--kernel-dir") || !strings.Contains(err.Error(), "nokernel") {
			t.Errorf("%swith a --kernel-dir that is not a folder: %v, want it refused naming the flag", kernel, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Errorf("the output folder was created although the build was refused")
	}
}
