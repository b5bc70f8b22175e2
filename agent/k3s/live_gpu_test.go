//go:build gpu && linux

// A test against a live machine with NVIDIA's driver installed (`make gpu-check`; not part
// of `make test`).

package k3s

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLiveDriverLibsInLdCache: on a machine whose nvidia-smi works, the driver's libraries
// are in the machine's own ld.so.cache as NvidiaRuntimeProblems reads it (the check a GPU
// image's layer is held to), and what the check says of this machine's container toolkit
// is logged.
func TestLiveDriverLibsInLdCache(t *testing.T) {
	if out, err := exec.Command("nvidia-smi", "-L").CombinedOutput(); err != nil {
		t.Fatalf("nvidia-smi -L: %v\n%s: this test needs a machine with an NVIDIA GPU and its driver", err, out)
	}
	if missing := missingFromLdCache("/", nvidiaDriverLibs); len(missing) > 0 {
		ldconfig, _ := exec.Command("ldconfig", "-p").Output()
		var nv []string
		for _, l := range strings.Split(string(ldconfig), "\n") {
			if strings.Contains(l, "nvidia") || strings.Contains(l, "libcuda") {
				nv = append(nv, strings.TrimSpace(l))
			}
		}
		t.Errorf("this machine's /etc/ld.so.cache does not list %v as read; ldconfig -p lists:\n%s", missing, strings.Join(nv, "\n"))
	}
	rts := Runtimes("/")
	t.Logf("container runtimes K3s would find here: %v; the NVIDIA runtime's problems: %q", rts, NvidiaRuntimeProblems("/", rts))
}
