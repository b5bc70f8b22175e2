package k3s

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/etoile-os/etoile/agent/config"
)

// BinaryPath is where the system image carries K3s.
const BinaryPath = "/usr/local/bin/k3s"

// ErrNoK3s means the system image has no K3s binary.
var ErrNoK3s = fmt.Errorf("this system image has no K3s (%s): build it with a k3s source, or --k3s-dir", BinaryPath)

// ForConfig prepares the supervisor for a validated machine config:
// K3s's config.yaml (with labels the agent detected, e.g. GPU labels) and
// registries.yaml, `k3s server` or `k3s agent`, and readiness judged
// through the kubeconfig that role writes. nodeName is the node's name in
// Kubernetes (the machine config's hostname, else the system's).
func ForConfig(root string, cfg *config.MachineConfig, nodeName string, labels map[string]string, log *slog.Logger) (*Supervisor, error) {
	if _, err := os.Stat(filepath.Join(root, BinaryPath)); err != nil {
		return nil, ErrNoK3s
	}
	conf, err := cfg.K3sConfig(labels)
	if err != nil {
		return nil, err
	}
	regs, err := cfg.RegistriesYAML()
	if err != nil {
		return nil, err
	}
	if cfg.Hostname != "" {
		nodeName = cfg.Hostname
	}
	role := cfg.Role
	if role == "" {
		role = config.RoleServer
	}
	kubeconfig := ServerKubeconfig
	if role == config.RoleAgent {
		kubeconfig = KubeletKubeconfig
	}
	return &Supervisor{
		Root:   root,
		Binary: BinaryPath,
		Args:   []string{role},
		// The site's web proxy: K3s and its containerd read these (and add
		// the cluster's own networks to NO_PROXY themselves).
		Env:        cfg.Proxy.Env(),
		Config:     conf,
		Registries: regs,
		TLSFiles:   cfg.RegistryTLSFiles(),
		Manifests:  cfg.ManifestFiles(),
		// A server with disable-agent runs no kubelet: it never has a
		// node of its own to be Ready, and /readyz alone tells.
		Prober: &APIProber{Root: root, Kubeconfig: kubeconfig, NodeName: nodeName, NoNode: role == config.RoleServer && cfg.K3sFlag("disable-agent")},
		Log:    log,
	}, nil
}
