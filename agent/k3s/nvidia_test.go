package k3s

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLdCacheAsGlibcWritesIt reads this machine's own /etc/ld.so.cache,
// written by glibc's ldconfig: the C library is listed, NVIDIA's is not.
func TestLdCacheAsGlibcWritesIt(t *testing.T) {
	if _, err := os.Stat("/etc/ld.so.cache"); err != nil {
		t.Fatalf("this test reads the build machine's glibc ld.so.cache (Debian's libc-bin writes it): %v", err)
	}
	if got := missingFromLdCache("/", []string{"libc.so.6", "libnvidia-ml.so.1", "libc.so"}); !slices.Equal(got, []string{"libnvidia-ml.so.1", "libc.so"}) {
		t.Errorf("missing = %q, want libnvidia-ml.so.1 and libc.so (a prefix of a listed name is not listed)", got)
	}
}

func TestNvidiaRuntimeProblems(t *testing.T) {
	exe := func(root string, paths ...string) {
		t.Helper()
		for _, p := range paths {
			f := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	write := func(root, p, data string) {
		t.Helper()
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cache := "glibc-ld.so.cache1.1\x00\x00/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\x00libnvidia-ml.so.1\x00libcuda.so.1\x00"
	contains := func(problems []string, subs ...string) bool {
		for _, p := range problems {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(p, s)
			}
			if ok {
				return true
			}
		}
		return false
	}

	// The runtime alone: each missing part is named, with what to add.
	root := t.TempDir()
	exe(root, "usr/bin/nvidia-container-runtime")
	got := NvidiaRuntimeProblems(root, Runtimes(root))
	for _, want := range [][]string{
		{"nvidia-container-runtime-hook", "prestart hook"},
		{"nvidia-container-cli", "NVIDIA Container Toolkit"},
		{"/sbin/ldconfig", "machine's ldconfig"},
		{"/etc/ld.so.cache does not list libnvidia-ml.so.1, libcuda.so.1", "ldconfig -r"},
	} {
		if !contains(got, want...) {
			t.Errorf("problems %q lack one with %q", got, want)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d problems, want 4: %q", len(got), got)
	}

	// Everything the legacy mode needs: no problem.
	exe(root, "usr/bin/nvidia-container-runtime-hook", "usr/bin/nvidia-container-cli", "sbin/ldconfig")
	write(root, "etc/ld.so.cache", cache)
	if got := NvidiaRuntimeProblems(root, Runtimes(root)); got != nil {
		t.Errorf("a complete toolkit: %q", got)
	}

	// Ubuntu's toolkit package names ldconfig.real, and a config may give
	// the CLI's path: both are followed.
	write(root, NvidiaRuntimeConfig, "# comment\n[nvidia-container-cli]\nenvironment = []\nldconfig = \"@/sbin/ldconfig.real\"\npath = \"/opt/nv/bin/nvidia-container-cli\" # ours\n\n[nvidia-container-runtime]\nmode = \"auto\"\n")
	got = NvidiaRuntimeProblems(root, Runtimes(root))
	if !contains(got, "/sbin/ldconfig.real", `ldconfig = "@/sbin/ldconfig.real"`) || !contains(got, "/opt/nv/bin/nvidia-container-cli") || len(got) != 2 {
		t.Errorf("with config.toml's paths: %q", got)
	}
	exe(root, "sbin/ldconfig.real", "opt/nv/bin/nvidia-container-cli")
	if got := NvidiaRuntimeProblems(root, Runtimes(root)); got != nil {
		t.Errorf("config.toml's paths present: %q", got)
	}
	// A cache that lists other libraries only.
	write(root, "etc/ld.so.cache", "glibc-ld.so.cache1.1\x00libc.so.6\x00xlibcuda.so.1\x00")
	if got := NvidiaRuntimeProblems(root, Runtimes(root)); !contains(got, "does not list libnvidia-ml.so.1, libcuda.so.1") {
		t.Errorf("a cache without the driver: %q", got)
	}

	// The GPU Operator's toolkit folder holds the hook and the CLI beside
	// the runtime, and the CDI runtime needs a specification.
	root = t.TempDir()
	exe(root, "usr/local/nvidia/toolkit/nvidia-container-runtime", "usr/local/nvidia/toolkit/nvidia-container-runtime-hook",
		"usr/local/nvidia/toolkit/nvidia-container-cli", "usr/local/nvidia/toolkit/nvidia-container-runtime.cdi", "sbin/ldconfig")
	write(root, "etc/ld.so.cache", cache)
	got = NvidiaRuntimeProblems(root, Runtimes(root))
	if len(got) != 1 || !contains(got, "no CDI specification", "nvidia-ctk cdi generate") {
		t.Errorf("toolkit folder and CDI runtime without a spec: %q", got)
	}
	write(root, "var/run/cdi/nvidia.yaml", "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
	if got := NvidiaRuntimeProblems(root, Runtimes(root)); got != nil {
		t.Errorf("with a CDI spec: %q", got)
	}
	// mode = "cdi" makes the plain runtime a CDI one: the hook is not needed.
	root = t.TempDir()
	exe(root, "usr/bin/nvidia-container-runtime")
	write(root, NvidiaRuntimeConfig, "[nvidia-container-runtime]\nmode = \"cdi\"\n")
	if got := NvidiaRuntimeProblems(root, Runtimes(root)); len(got) != 1 || !contains(got, "no CDI specification") {
		t.Errorf("mode cdi: %q", got)
	}
	// No NVIDIA runtime: nothing to say.
	if got := NvidiaRuntimeProblems(root, []Runtime{{"crun", "/usr/bin/crun"}}); got != nil {
		t.Errorf("crun alone: %q", got)
	}
}
