package k3s

import (
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Runtime is a container runtime K3s adds to its containerd when it finds its
// binary at start; pods ask for it by name (runtimeClassName: K3s creates the
// RuntimeClasses of the runtimes it knows on every cluster, found or not).
type Runtime struct {
	Name string // the RuntimeClass: nvidia, nvidia-cdi, crun, …
	Path string // where K3s will find it, on the machine
}

// knownRuntimes are the runtimes K3s looks for, in its order (its agent's
// containerd set-up: the binary's name is looked up on K3s's PATH).
var knownRuntimes = []struct{ name, binary string }{
	{"crun", "crun"},
	{"nvidia", "nvidia-container-runtime"},
	{"nvidia-experimental", "nvidia-container-runtime-experimental"},
	{"nvidia-cdi", "nvidia-container-runtime.cdi"},
	{"lunatic", "containerd-shim-lunatic-v1"},
	{"slight", "containerd-shim-slight-v1"},
	{"spin", "containerd-shim-spin-v2"},
	{"wws", "containerd-shim-wws-v1"},
	{"wasmedge", "containerd-shim-wasmedge-v1"},
	{"wasmer", "containerd-shim-wasmer-v1"},
	{"wasmtime", "containerd-shim-wasmtime-v1"},
}

// RuntimesPath is what K3s puts before its PATH while it looks for the
// runtimes (k3s-io/k3s pkg/agent/containerd/config_linux.go, runtimesPath):
// where NVIDIA's GPU Operator installs the container toolkit, and where
// KWasm installs the WebAssembly shims. A runtime there wins over one on
// the PATH.
const RuntimesPath = "/usr/local/nvidia/toolkit:/opt/kwasm/bin"

// Runtimes lists the container runtimes K3s will find under root, as K3s
// searches: RuntimesPath, then the PATH it is started with (SystemPath); an
// executable regular file of the runtime's binary name, in the first folder
// that has one.
func Runtimes(root string) []Runtime {
	var out []Runtime
	for _, r := range knownRuntimes {
		if p := lookPath(root, RuntimesPath+":"+SystemPath, r.binary); p != "" {
			out = append(out, Runtime{Name: r.name, Path: p})
		}
	}
	return out
}

// lookPath finds name as exec.LookPath would on the machine under root:
// the first folder of the list holding an executable regular file of that
// name (its path in the machine's view), or "".
func lookPath(root, list, name string) string {
	for _, dir := range strings.Split(list, ":") {
		p := path.Join(dir, name)
		if isExecutable(root, p) {
			return p
		}
	}
	return ""
}

func isExecutable(root, p string) bool {
	st, err := os.Stat(filepath.Join(root, p))
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// HasNvidia reports whether one of rs is an NVIDIA container runtime.
func HasNvidia(rs []Runtime) bool {
	for _, r := range rs {
		if strings.HasPrefix(r.Name, "nvidia") {
			return true
		}
	}
	return false
}
