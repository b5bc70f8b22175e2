package node

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestProxyReachesK3s: the machine config's proxy section is in the
// environment K3s is executed with (HTTP_PROXY, HTTPS_PROXY, NO_PROXY with
// the loopback and the machine's own networks, as K3s's documentation
// asks), beside the node's other variables; a config applied again with
// another proxy executes K3s with it; one without executes K3s without.
func TestProxyReachesK3s(t *testing.T) {
	var mu sync.Mutex
	var envs [][]string
	start := func(c *exec.Cmd) error {
		if strings.HasSuffix(c.Path, "/k3s") {
			mu.Lock()
			envs = append(envs, slices.Clone(c.Env))
			mu.Unlock()
		}
		return c.Start()
	}
	nets := func() []string { return []string{"192.0.2.0/24", "10.0.0.0/8", "2001:db8::/64"} }
	n, _, _ := standinNode(t, Env{Start: start, NodeNetworks: nets}, nil)
	last := func() []string {
		mu.Lock()
		defer mu.Unlock()
		if len(envs) == 0 {
			t.Fatal("K3s was not executed")
		}
		return envs[len(envs)-1]
	}
	apply := func(doc string) {
		t.Helper()
		if _, err := n.ApplyConfig(context.Background(), []byte(doc)); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	apply(standinApplyDoc + "proxy: {http_proxy: 'http://u:s3cret@proxy.example.com:3128', https_proxy: 'http://u:s3cret@proxy.example.com:3128', no_proxy: [10.0.0.0/8]}\n")
	env := last()
	for _, want := range []string{
		"HTTP_PROXY=http://u:s3cret@proxy.example.com:3128",
		"HTTPS_PROXY=http://u:s3cret@proxy.example.com:3128",
		"NO_PROXY=10.0.0.0/8,localhost,127.0.0.0/8,::1,192.0.2.0/24,2001:db8::/64",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("K3s's environment lacks %s:\n%q", want, env)
		}
	}
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "ETOILE_K3S_STANDIN_ROOT=") }) {
		t.Errorf("the node's own K3s variables are gone: %q", env)
	}
	apply(standinApplyDoc + "proxy: {https_proxy: 'http://proxy2.example.com:3128'}\n")
	if env := last(); !slices.Contains(env, "HTTPS_PROXY=http://proxy2.example.com:3128") || slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HTTP_PROXY=") }) {
		t.Errorf("after another proxy, K3s's environment: %q", env)
	}
	apply(standinApplyDoc)
	if env := last(); slices.ContainsFunc(env, func(kv string) bool { return strings.Contains(kv, "PROXY=") }) {
		t.Errorf("without a proxy section K3s still has proxy variables: %q", env)
	}
}
