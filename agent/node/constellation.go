package node

import (
	"context"
	"fmt"
	"time"

	"github.com/etoile-os/etoile/agent"
	"github.com/etoile-os/etoile/agent/config"
	capi "github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/join"
)

// runConstellation joins the hub named by the machine config (unattended)
// and heartbeats until ctx ends. The site never depends on the hub: every
// failure is logged and retried, nothing else waits on it.
func (n *Node) runConstellation(ctx context.Context, cfg *config.MachineConfig, slot string) {
	defer func() {
		if r := recover(); r != nil {
			n.env.Log.Warn("constellation client crashed", "reason", fmt.Sprint(r))
		}
	}()
	if cfg.Constellation == nil || cfg.Constellation.Join == "" {
		return
	}
	join.Version = agent.Version
	inv := capi.Inventory{Hostname: n.env.NodeName, Nodes: 1, EtoileVersion: agent.ImageVersion(n.env.Root)}
	n.mu.Lock()
	hw := n.inv
	n.mu.Unlock()
	if hw != nil {
		inv.CPUMillis = int64(hw.CPU.Count) * 1000
		inv.MemoryBytes = int64(hw.Memory.TotalBytes)
		for _, g := range hw.GPUs {
			inv.GPUs = append(inv.GPUs, capi.GPU{Vendor: g.Vendor, Model: g.Model, Count: 1})
		}
	}
	wait := 5 * time.Second
	for {
		site, err := join.EnsureJoined(ctx, cfg.Constellation.Join, join.Options{Root: n.env.Root, Inventory: inv, Log: n.env.Log})
		if err == nil {
			n.env.Broadcast("etoile: constellation joined")
			base := join.HostStatus(agent.ImageVersion(n.env.Root), slot)
			status := func(ctx context.Context) (capi.Heartbeat, error) {
				hb, err := base(ctx)
				if err != nil {
					return hb, err
				}
				hb.Nodes, hb.NodesReady = 1, 0
				if n.K3sState() == "ready" {
					hb.NodesReady = 1
				}
				return hb, nil
			}
			if err := site.Run(ctx, status); err != nil && ctx.Err() == nil {
				n.env.Log.Warn("constellation heartbeats stopped", "reason", err.Error())
			}
		} else {
			n.env.Log.Warn("constellation join failed; retrying", "reason", err.Error(), "in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Minute)
	}
}
