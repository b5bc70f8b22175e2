package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/etoile-os/etoile/agent"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/inventory"
	capi "github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/join"
	"github.com/etoile-os/etoile/internal/kubeyaml"
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
	n.mu.Lock()
	hw := n.inv
	n.mu.Unlock()
	// The node's name as K3s has it: the machine config's hostname (set
	// after Env.NodeName was read, which holds DHCP's or a generated name).
	inv := joinInventory(cmp.Or(cfg.Hostname, n.nodeName()), agent.ImageVersion(n.env.Root), hw)
	wait := 5 * time.Second
	for {
		site, err := join.EnsureJoined(ctx, cfg.Constellation.Join, join.Options{Root: n.env.Root, Inventory: inv, Log: n.env.Log, Proxy: cfg.Proxy.ProxyFunc()})
		if errors.Is(err, join.ErrRevoked) {
			n.constellationRevoked(err)
			return
		}
		if err == nil {
			n.setConstellationWarning("")
			n.env.Broadcast("etoile: constellation joined")
			// What the operator should know while it runs (the hub refusing
			// heartbeats, templates this node cannot deploy) goes in the
			// status's warnings, and goes away when all is well again.
			site.Warn = n.setConstellationWarning
			site.Undeployable, site.DeployState = undeployable(cfg), deployState(cfg)
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
			err := site.Run(ctx, status)
			if errors.Is(err, join.ErrRevoked) {
				n.constellationRevoked(err)
				return
			}
			if err != nil && ctx.Err() == nil {
				// ErrRefused: the next EnsureJoined joins again with the
				// join string.
				n.setConstellationWarning("constellation: " + err.Error())
				n.env.Log.Warn("constellation heartbeats stopped", "reason", err.Error())
			}
		} else if ctx.Err() == nil {
			n.setConstellationWarning("constellation: joining the hub failed, retrying: " + err.Error())
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

// deployState names what undeployable's answers follow in cfg: the K3s
// role, and whether the helm controller is disabled. A config applied
// that changes it restarts the constellation client (setConstellation),
// and the site asks for its templates again (join.Site.DeployState).
func deployState(cfg *config.MachineConfig) string {
	if cfg == nil {
		return ""
	}
	return fmt.Sprintf("role=%s helm-controller-disabled=%t", cfg.Role, cfg.K3sFlag("disable-helm-controller"))
}

// undeployable says why a template the hub sends cannot run on this node
// (join.Site.Undeployable), nil when any can: a K3s agent deploys nothing
// from the manifests folder, and with the helm controller disabled nothing
// installs a HelmChart.
func undeployable(cfg *config.MachineConfig) func(capi.TemplateObject) string {
	switch {
	case cfg.Role == config.RoleAgent:
		return func(capi.TemplateObject) string {
			return "this node is a K3s agent (role: agent), and only a K3s server deploys templates: give the constellation section to the site's server"
		}
	case cfg.K3sFlag("disable-helm-controller"):
		return func(o capi.TemplateObject) string {
			if kind := kubeyaml.HelmKind(o.Manifest); kind != "" {
				return "it holds a " + kind + ", and k3s.disable-helm-controller is set on this server: nothing would install it"
			}
			return ""
		}
	}
	return nil
}

// joinInventory is the summary the site sends the hub when it joins, from
// the hardware inventory (nil while it is not collected): one GPU entry
// per device, its model as the hardware names it, made fit for the hub.
func joinInventory(hostname, etoileVersion string, hw *inventory.Inventory) capi.Inventory {
	inv := capi.Inventory{Hostname: hostname, Nodes: 1, EtoileVersion: etoileVersion}
	if hw != nil {
		inv.CPUMillis = int64(hw.CPU.Count) * 1000
		inv.MemoryBytes = int64(hw.Memory.TotalBytes)
		// One entry per kind (vendor and model), in the inventory's
		// order: an HGX board's eight GPUs are one entry of eight, and
		// the hub takes 16 kinds at most, not 16 GPUs.
		for _, g := range hw.GPUs {
			kind := capi.GPU{Vendor: g.Vendor, Model: gpuModel(g.Model), Count: 1}
			if i := slices.IndexFunc(inv.GPUs, func(k capi.GPU) bool { return k.Vendor == kind.Vendor && k.Model == kind.Model }); i >= 0 {
				inv.GPUs[i].Count++
			} else {
				inv.GPUs = append(inv.GPUs, kind)
			}
		}
	}
	return inv
}

// gpuModel makes a GPU model name as the hardware gives it (pci.ids, the
// driver) one the hub takes: unprintable characters dropped (spaces become
// a space), trimmed, and clipped to capi.MaxGPUModelLen bytes on a
// character boundary. An odd name must not keep the whole site out.
func gpuModel(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case capi.GPUModelRune(r):
			return r
		case unicode.IsSpace(r):
			return ' '
		}
		return -1
	}, s) // invalid UTF-8 becomes U+FFFD
	s = strings.TrimSpace(s)
	if len(s) > capi.MaxGPUModelLen {
		cut := capi.MaxGPUModelLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = strings.TrimSpace(s[:cut])
	}
	return s
}

// constellationRevoked says, once, that the hub revoked this site: the
// client stops until the machine config gives a new join string.
func (n *Node) constellationRevoked(err error) {
	n.setConstellationWarning("constellation: " + join.ErrRevoked.Error())
	n.env.Log.Warn("constellation: this site was revoked on the hub; it no longer reports in", "reason", err.Error(),
		"fix", "give the machine config a new join string (etoile hub token create, for a new site name)")
}

func (n *Node) setConstellationWarning(w string) {
	n.mu.Lock()
	n.conWarning = w
	n.mu.Unlock()
}

// conRunner is the constellation client running for a join string.
type conRunner struct {
	join   string
	deploy string // deployState of the config it runs with
	proxy  string // the proxy section it runs with (proxyState)
	cancel context.CancelFunc
	done   chan struct{}
}

// setConstellation makes the constellation client follow cfg: started for
// its join string (once the inventory it reports is collected), stopped
// when the section is gone, started again for a new join string. The same
// join string leaves the running client alone, unless what the node can
// deploy changed (deployState: a K3s agent made a server, the helm
// controller disabled): the client is started again to judge the hub's
// templates under it. A new proxy section starts it again too, to reach the
// hub the new way.
func (n *Node) setConstellation(cfg *config.MachineConfig) {
	js, proxy := "", ""
	if cfg != nil && cfg.Constellation != nil {
		js = cfg.Constellation.Join
	}
	if cfg != nil {
		proxy = strings.Join(cfg.Proxy.Env(), "\n")
	}
	n.conMu.Lock()
	defer n.conMu.Unlock()
	if old := n.con; old != nil {
		if old.join == js && old.deploy == deployState(cfg) && old.proxy == proxy {
			return
		}
		old.cancel()
		<-old.done
		n.con = nil
		n.setConstellationWarning("")
		n.env.Log.Info("constellation client stopped: the machine config's constellation or proxy section, or what the node can deploy (its K3s role, its helm controller), changed")
	}
	if js == "" || n.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	r := &conRunner{join: js, deploy: deployState(cfg), proxy: proxy, cancel: cancel, done: make(chan struct{})}
	n.con = r
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(r.done)
		if n.invDone != nil {
			select {
			case <-n.invDone:
			case <-ctx.Done():
				return
			}
		}
		n.runConstellation(ctx, cfg, n.env.Slot)
	}()
}
