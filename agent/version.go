// Package agent holds what identifies the node program: its version and the
// commit it was built from. The PID 1 duties live in the subpackages (boot,
// kmod, sysimage, mount, network, console); K3s supervision, the machine
// config and the local API will sit beside them.
package agent

import (
	"os"
	"path/filepath"
	"strings"
)

// Version and Commit are set at link time:
//
//	go build -ldflags "-X github.com/etoile-os/etoile/agent.Version=v0.1.0 -X github.com/etoile-os/etoile/agent.Commit=abc123"
//
// They are variables, not constants, because -X can only set variables.
var (
	Version = "dev"
	Commit  = "unknown"
)

// ImageVersionFile is where a build records its image's version (the
// spec's version:, or the build tool's when the spec has none), in the
// initramfs and in the system image.
const ImageVersionFile = "/etc/etoile/version"

// ImageVersion is the version of the image the agent runs in, read from
// root's ImageVersionFile; the agent's own Version when there is none (an
// agent run outside an image).
func ImageVersion(root string) string {
	b, err := os.ReadFile(filepath.Join(root, ImageVersionFile))
	if v := strings.TrimSpace(string(b)); err == nil && v != "" && !strings.ContainsAny(v, " \t\n") {
		return v
	}
	return Version
}
