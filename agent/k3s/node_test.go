package k3s

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/config"
)

func TestForConfig(t *testing.T) {
	server, err := config.Parse([]byte(`apiVersion: etoile.io/v1alpha1
kind: MachineConfig
hostname: edge-1
site: lyon
role: server
cluster: {init: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	agent, err := config.Parse([]byte(`apiVersion: etoile.io/v1alpha1
kind: MachineConfig
role: agent
cluster: {server: "https://10.0.0.1:6443", token: "K10abc::server:secret"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ForConfig(t.TempDir(), server, "x", nil, nil); !errors.Is(err, ErrNoK3s) {
		t.Errorf("no k3s binary: err = %v", err)
	}
	root := fakeRoot(t)
	gpu := map[string]string{"etoile.io/gpu.vendor": "nvidia", "nvidia.com/gpu.present": "true"}
	s, err := ForConfig(root, server, "etoile-abcdef", gpu, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(s.Config)
	for _, want := range []string{"cluster-init: \"true\"", "node-name: \"edge-1\"", "etoile.io/gpu.vendor=nvidia", "nvidia.com/gpu.present=true", "etoile.io/site=lyon"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config.yaml lacks %q:\n%s", want, conf)
		}
	}
	p := s.Prober.(*APIProber)
	if s.Args[0] != "server" || p.Kubeconfig != ServerKubeconfig || p.NodeName != "edge-1" || s.Registries != nil {
		t.Errorf("server supervisor: args %v, kubeconfig %s, node %s", s.Args, p.Kubeconfig, p.NodeName)
	}
	s, err = ForConfig(root, agent, "etoile-abcdef", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p = s.Prober.(*APIProber)
	if s.Args[0] != "agent" || p.Kubeconfig != KubeletKubeconfig || p.NodeName != "etoile-abcdef" {
		t.Errorf("agent supervisor: args %v, kubeconfig %s, node %s", s.Args, p.Kubeconfig, p.NodeName)
	}
	if !strings.Contains(string(s.Config), "server: \"https://10.0.0.1:6443\"") {
		t.Errorf("agent config.yaml:\n%s", s.Config)
	}
}

func TestForConfigServerWithoutKubelet(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(BinaryPath)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, BinaryPath), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for body, noNode := range map[string]bool{"k3s: {disable-agent: true}\n": true, "k3s: {disable-agent: false}\n": false, "": false} {
		cfg, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\n" + body))
		if err != nil {
			t.Fatal(err)
		}
		s, err := ForConfig(root, cfg, "n1", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Prober.(*APIProber).NoNode; got != noNode {
			t.Errorf("%q: NoNode = %v, want %v", body, got, noNode)
		}
	}
}

// TestForConfigProxy: the machine config's proxy section reaches K3s as
// the environment variables K3s and containerd read, the loopback added to
// NO_PROXY; without one K3s gets none.
func TestForConfigProxy(t *testing.T) {
	cfg, err := config.Parse([]byte(`apiVersion: etoile.io/v1alpha1
kind: MachineConfig
role: server
cluster: {init: true}
proxy:
  http_proxy: http://proxy.example.com:3128
  https_proxy: http://proxy.example.com:3128
  no_proxy: [.example.com, 10.0.0.0/8]
`))
	if err != nil {
		t.Fatal(err)
	}
	root := fakeRoot(t)
	s, err := ForConfig(root, cfg, "n", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"HTTP_PROXY=http://proxy.example.com:3128", "HTTPS_PROXY=http://proxy.example.com:3128",
		"NO_PROXY=.example.com,10.0.0.0/8,localhost,127.0.0.0/8,::1"}
	if strings.Join(s.Env, "\n") != strings.Join(want, "\n") {
		t.Errorf("K3s's environment:\n%s\nwant\n%s", strings.Join(s.Env, "\n"), strings.Join(want, "\n"))
	}
	cfg.Proxy = nil
	if s, err = ForConfig(root, cfg, "n", nil, nil); err != nil || len(s.Env) != 0 {
		t.Errorf("without a proxy section K3s's environment is %q (err %v), want none", s.Env, err)
	}
}
