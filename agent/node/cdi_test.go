package node

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestGPUNodeGeneratesCDISpec: on a GPU node whose NVIDIA driver is loaded,
// the image's nvidia-ctk (a stand-in script here, not NVIDIA's) generates
// the CDI specification before K3s starts, so the CDI runtime the image
// carries has what it needs; a specification already there is kept.
func TestGPUNodeGeneratesCDISpec(t *testing.T) {
	root := gpuRoot(t)
	fakeroot.WriteExec(t, root, map[string]string{ // the version file too: harmless
		"proc/driver/nvidia/version":           "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n",
		"usr/bin/nvidia-ctk":                   "#!/bin/sh\n[ \"$1 $2\" = \"cdi generate\" ] || exit 2\nprintf 'cdiVersion: 0.5.0\\nkind: nvidia.com/gpu\\n' > \"${3#--output=}\"\n",
		"usr/bin/nvidia-container-runtime.cdi": "#!/bin/sh\n",
	})
	logs, st := startGPUNode(t, root)
	spec, err := os.ReadFile(filepath.Join(root, CDISpecPath))
	if err != nil || !strings.Contains(string(spec), "kind: nvidia.com/gpu") {
		t.Fatalf("no CDI specification at %s: %v\n%s", CDISpecPath, err, logs)
	}
	if !strings.Contains(logs, "NVIDIA CDI specification generated") {
		t.Errorf("the generation is not logged:\n%s", logs)
	}
	if slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, "CDI") }) {
		t.Errorf("status warns about CDI with the specification there: %q", st.Warnings)
	}

	// A failing nvidia-ctk: a warning with what it printed, and the runtime
	// check says the specification is missing.
	root = gpuRoot(t)
	fakeroot.WriteExec(t, root, map[string]string{ // the version file too: harmless
		"proc/driver/nvidia/version":           "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n",
		"usr/bin/nvidia-ctk":                   "#!/bin/sh\necho 'failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND' >&2\nexit 1\n",
		"usr/bin/nvidia-container-runtime.cdi": "#!/bin/sh\n",
	})
	logs, st = startGPUNode(t, root)
	if !strings.Contains(logs, "NVIDIA CDI specification not generated") || !strings.Contains(logs, "ERROR_LIBRARY_NOT_FOUND") {
		t.Errorf("a failing nvidia-ctk is not said, with its output:\n%s", logs)
	}
	if !slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, "no CDI specification") }) {
		t.Errorf("status warnings %q lack the missing CDI specification", st.Warnings)
	}
}
