package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

// What the status says, in place of k3s.NvidiaRuntimeProblems's advice to
// add nvidia-ctk, when the image has it and the specification is missing
// all the same (cdiNote).
const (
	cdiDriverLoading = "NVIDIA's driver is still loading: the agent generates it with nvidia-ctk once the driver has loaded (pods of the nvidia-cdi runtime class get no GPU until then)"
	cdiNoDriver      = "NVIDIA's driver is not loaded, so nvidia-ctk cannot describe the GPUs: read the console's module lines and the kernel's log (etoile-agent logs kernel); the agent generates it at the next boot or config applied with the driver loaded"
	cdiFailed        = "nvidia-ctk cdi generate failed (etoile-agent logs agent says what it printed): the driver's libraries must be in the image's ld.so.cache; the agent tries again at the next boot or config applied"
)

// ensureCDISpec generates NVIDIA's CDI specification with the image's
// nvidia-ctk (`nvidia-ctk cdi generate`), before K3s starts, on a machine
// whose NVIDIA driver is loaded and that has no specification yet. A
// failure is a warning: the runtime check then says what is missing.
//
// A driver still loading (a large one the boot stopped waiting for, see
// Env.DriversSettled) has the specification generated once it has loaded,
// in the background: K3s need not start again, as the CDI runtime reads
// the specification folders each time it creates a container.
func (n *Node) ensureCDISpec(ctx context.Context) {
	root := n.env.Root
	ctk := k3s.LookTool(root, "nvidia-ctk")
	if ctk == "" || k3s.HasCDISpec(root) {
		return
	}
	if nvpersist.DriverLoaded(root) {
		n.generateCDISpec(ctx, ctk)
		return
	}
	settled := n.env.DriversSettled
	if settled == nil || isClosed(settled) {
		n.noDriverForCDI(ctk)
		return
	}
	n.mu.Lock()
	waiting := n.cdiWaits
	n.cdiWaits, n.cdiNote = true, cdiDriverLoading
	n.mu.Unlock()
	if waiting {
		return // a config applied while the driver loads: one wait is enough
	}
	n.env.Log.Info("NVIDIA CDI specification waits for NVIDIA's driver, still loading", "tool", ctk)
	n.background("NVIDIA CDI specification", func() {
		select {
		case <-settled:
		case <-n.ctx.Done():
			return
		}
		if n.ctx.Err() != nil {
			return // both came: the machine is going down
		}
		n.mu.Lock()
		cfg := n.cfg
		n.mu.Unlock()
		switch {
		case !ownContainerd(cfg) || k3s.HasCDISpec(root):
			// A config applied meanwhile has K3s use another container
			// runtime, or the specification came by other means.
			n.setCDINote("")
		case !nvpersist.DriverLoaded(root):
			n.noDriverForCDI(ctk)
		default:
			n.generateCDISpec(n.ctx, ctk)
		}
	})
}

// noDriverForCDI says that the CDI specification is not generated because
// NVIDIA's driver is not loaded (the image has nvidia-ctk).
func (n *Node) noDriverForCDI(ctk string) {
	n.setCDINote(cdiNoDriver)
	n.env.Log.Warn("NVIDIA CDI specification not generated: NVIDIA's driver is not loaded", "tool", ctk,
		"fix", "the image's NVIDIA driver did not load for this GPU: read the console's module lines and the kernel's log (etoile-agent logs kernel)")
}

// generateCDISpec runs nvidia-ctk (ctk, in the machine's view) to write
// CDISpecPath; one at a time (the boot's or an apply's K3s start, and the
// late driver's).
func (n *Node) generateCDISpec(ctx context.Context, ctk string) {
	n.cdiMu.Lock()
	defer n.cdiMu.Unlock()
	root := n.env.Root
	if k3s.HasCDISpec(root) {
		n.setCDINote("")
		return
	}
	out := filepath.Join(root, CDISpecPath)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		n.setCDINote(cdiFailed)
		n.env.Log.Warn("NVIDIA CDI specification not generated", "reason", err.Error())
		return
	}
	cctx, cancel := context.WithTimeout(ctx, cdiTimeout)
	defer cancel()
	start := time.Now()
	if _, err := inventory.RunTool(cctx, n.env.Start, n.env.Release, filepath.Join(root, ctk), "cdi", "generate", "--output="+out); err != nil {
		n.setCDINote(cdiFailed)
		n.env.Log.Warn("NVIDIA CDI specification not generated: pods of the nvidia-cdi runtime class cannot have GPUs",
			"tool", ctk, "reason", err.Error(), "fix", "read what nvidia-ctk printed; the driver's libraries must be in the image's ld.so.cache")
		return
	}
	n.setCDINote("")
	n.env.Log.Info("NVIDIA CDI specification generated", "path", CDISpecPath, "tool", ctk, "took", time.Since(start).Round(time.Millisecond))
}

func (n *Node) setCDINote(note string) {
	n.mu.Lock()
	n.cdiNote = note
	n.mu.Unlock()
}

// nvidiaRuntimeProblems is k3s.NvidiaRuntimeProblems for the runtimes
// rts, its missing CDI specification told as ensureCDISpec found it: its
// advice to add nvidia-ctk is wrong for an image that has it.
func (n *Node) nvidiaRuntimeProblems(rts []k3s.Runtime) []string {
	problems := k3s.NvidiaRuntimeProblems(n.env.Root, rts)
	n.mu.Lock()
	note := n.cdiNote
	n.mu.Unlock()
	if note == "" {
		return problems
	}
	for i, p := range problems {
		if strings.HasPrefix(p, "no CDI specification") {
			problems[i] = "no CDI specification in /etc/cdi or /var/run/cdi: " + note
		}
	}
	return problems
}
