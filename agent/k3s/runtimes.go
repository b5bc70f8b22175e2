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

// Runtimes lists the container runtimes K3s will find on the PATH it is
// started with (SystemPath) under root, as K3s searches: an executable
// regular file of the runtime's binary name, in the PATH's first folder that
// has one.
func Runtimes(root string) []Runtime {
	var out []Runtime
	for _, r := range knownRuntimes {
		for _, dir := range strings.Split(SystemPath, ":") {
			p := path.Join(dir, r.binary)
			st, err := os.Stat(filepath.Join(root, p))
			if err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
				out = append(out, Runtime{Name: r.name, Path: p})
				break
			}
		}
	}
	return out
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
