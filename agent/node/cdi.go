package node

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/etoile-os/etoile/agent/inventory"
	"github.com/etoile-os/etoile/agent/k3s"
	"github.com/etoile-os/etoile/agent/nvpersist"
)

// CDISpecPath is where the agent writes NVIDIA's CDI specification of the
// machine's GPUs, where NVIDIA's nvidia-cdi-refresh service writes it on a
// systemd host: the CDI runtime (nvidia-container-runtime.cdi, or the
// toolkit's cdi mode) gives containers the devices it lists.
const CDISpecPath = "/var/run/cdi/nvidia.yaml"

// cdiTimeout bounds nvidia-ctk's generation (it asks the driver, through
// NVML, about every GPU).
var cdiTimeout = 2 * time.Minute

// ensureCDISpec generates NVIDIA's CDI specification with the image's
// nvidia-ctk (`nvidia-ctk cdi generate`), before K3s starts, on a machine
// whose NVIDIA driver is loaded and that has no specification yet. A
// failure is a warning: the runtime check then says what is missing.
func (n *Node) ensureCDISpec(ctx context.Context) {
	root := n.env.Root
	ctk := k3s.LookTool(root, "nvidia-ctk")
	if ctk == "" || k3s.HasCDISpec(root) || !nvpersist.DriverLoaded(root) {
		return
	}
	out := filepath.Join(root, CDISpecPath)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		n.env.Log.Warn("NVIDIA CDI specification not generated", "reason", err.Error())
		return
	}
	cctx, cancel := context.WithTimeout(ctx, cdiTimeout)
	defer cancel()
	start := time.Now()
	if _, err := inventory.RunTool(cctx, n.env.Start, n.env.Release, filepath.Join(root, ctk), "cdi", "generate", "--output="+out); err != nil {
		n.env.Log.Warn("NVIDIA CDI specification not generated: pods of the nvidia-cdi runtime class cannot have GPUs",
			"tool", ctk, "reason", err.Error(), "fix", "read what nvidia-ctk printed; the driver's libraries must be in the image's ld.so.cache")
		return
	}
	n.env.Log.Info("NVIDIA CDI specification generated", "path", CDISpecPath, "tool", ctk, "took", time.Since(start).Round(time.Millisecond))
}
