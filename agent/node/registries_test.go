package node

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	yaml2 "gopkg.in/yaml.v2"

	"github.com/etoile-os/etoile/agent/config"
)

// TestStandinNodeWritesAndRemovesRegistriesYAML: a node (K3s played by the
// stand-in) whose machine config has registries: mirrors, auth and TLS has
// them in /etc/rancher/k3s/registries.yaml, mode 0600 (it holds the
// registry's password), under K3s's own names, before K3s starts; a config
// applied later without registries removes the file, so that K3s no longer
// pulls through a mirror the config dropped (README: "registries.yaml … or
// removes a stale one"); a config with other registries replaces it.
func TestStandinNodeWritesAndRemovesRegistriesYAML(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	const head = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: reg-1\nrole: server\ncluster: {init: true}\ntime: {disabled: true}\nk3s:\n  https-listen-port: 0\n"
	const registries = `registries:
  mirrors:
    docker.io:
      endpoint:
        - https://mirror.site.test:5000
        - https://10.0.0.7
      rewrite:
        "^rancher/(.*)": mirror/rancher/$1
    "*":
      endpoint: [https://catchall.site.test]
  configs:
    mirror.site.test:5000:
      auth: {username: edge, password: "s3cr3t: p@ss"}
      tls:
        cert_file: /etc/etoile/registry/client.pem
        key_file: /etc/etoile/registry/client-key.pem
        ca_file: /etc/etoile/registry/ca.pem
    10.0.0.7:
      auth: {identity_token: tok-123}
`
	vol := configVolume(t, root, head+registries)
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{
		Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Broadcast: con.add, K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root},
		Socket: filepath.Join(root, "agent.sock"),
	})
	defer n.Wait()
	defer cancel()
	waitUntil(t, "k3s=ready", 60*time.Second, func() bool { return n.K3sState() == "ready" })

	path := filepath.Join(root, config.K3sRegistriesPath)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("registries.yaml not written: %v\nconsole:\n%s", err, con.all())
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("registries.yaml mode %v, want 0600: it holds registry passwords", st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Read back under K3s's names (rancher/wharfie's Registry), not through
	// this repository's own types, so a renamed field is seen.
	var got struct {
		Mirrors map[string]struct {
			Endpoint []string          `yaml:"endpoint"`
			Rewrite  map[string]string `yaml:"rewrite"`
		} `yaml:"mirrors"`
		Configs map[string]struct {
			Auth *struct {
				Username      string `yaml:"username"`
				Password      string `yaml:"password"`
				Auth          string `yaml:"auth"`
				IdentityToken string `yaml:"identity_token"`
			} `yaml:"auth"`
			TLS *struct {
				CertFile           string `yaml:"cert_file"`
				KeyFile            string `yaml:"key_file"`
				CAFile             string `yaml:"ca_file"`
				InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
			} `yaml:"tls"`
		} `yaml:"configs"`
	}
	// With a YAML 1.1 parser, strictly, as K3s reads it.
	if err := yaml2.UnmarshalStrict(data, &got); err != nil {
		t.Fatalf("registries.yaml does not parse as K3s's registries.yaml: %v\n%s", err, data)
	}
	if ep := got.Mirrors["docker.io"].Endpoint; !reflect.DeepEqual(ep, []string{"https://mirror.site.test:5000", "https://10.0.0.7"}) {
		t.Errorf("mirrors.docker.io.endpoint = %q", ep)
	}
	if rw := got.Mirrors["docker.io"].Rewrite; rw["^rancher/(.*)"] != "mirror/rancher/$1" || len(rw) != 1 {
		t.Errorf("mirrors.docker.io.rewrite = %q", rw)
	}
	if ep := got.Mirrors["*"].Endpoint; !reflect.DeepEqual(ep, []string{"https://catchall.site.test"}) {
		t.Errorf("mirrors.*.endpoint = %q", ep)
	}
	if len(got.Mirrors) != 2 || len(got.Configs) != 2 {
		t.Errorf("%d mirrors and %d configs, want 2 and 2:\n%s", len(got.Mirrors), len(got.Configs), data)
	}
	m := got.Configs["mirror.site.test:5000"]
	if m.Auth == nil || m.Auth.Username != "edge" || m.Auth.Password != "s3cr3t: p@ss" {
		t.Errorf("configs.mirror.site.test:5000.auth = %+v", m.Auth)
	}
	if m.TLS == nil || m.TLS.CertFile != "/etc/etoile/registry/client.pem" || m.TLS.KeyFile != "/etc/etoile/registry/client-key.pem" ||
		m.TLS.CAFile != "/etc/etoile/registry/ca.pem" || m.TLS.InsecureSkipVerify {
		t.Errorf("configs.mirror.site.test:5000.tls = %+v", m.TLS)
	}
	if a := got.Configs["10.0.0.7"].Auth; a == nil || a.IdentityToken != "tok-123" || a.Username != "" {
		t.Errorf("configs.10.0.0.7.auth = %+v", a)
	}
	if strings.Contains(con.all(), "s3cr3t") {
		t.Errorf("the registry password is on the console:\n%s", con.all())
	}

	// Another mirror: the file is replaced, nothing of the first is left.
	if _, err := n.ApplyConfig(ctx, []byte(head+"registries:\n  mirrors:\n    quay.io:\n      endpoint: [http://10.0.0.8:5000]\n")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "k3s=ready after the second apply", 60*time.Second, func() bool { return n.K3sState() == "ready" })
	data, err = os.ReadFile(path)
	if err != nil || !strings.Contains(string(data), "quay.io") || strings.Contains(string(data), "docker.io") || strings.Contains(string(data), "s3cr3t") {
		t.Errorf("registries.yaml after a config with other registries: %v\n%s", err, data)
	}

	// No registries: no file (K3s would otherwise keep pulling through the
	// mirrors and credentials the config dropped).
	if _, err := n.ApplyConfig(ctx, []byte(head)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "k3s=ready after the apply without registries", 60*time.Second, func() bool { return n.K3sState() == "ready" })
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		data, _ := os.ReadFile(path)
		t.Errorf("registries.yaml left after a config without registries (K3s would act on it): %v\n%s", err, data)
	}
	if cfg, err := os.ReadFile(filepath.Join(root, config.K3sConfigPath)); err != nil || !strings.Contains(string(cfg), `node-name: "reg-1"`) {
		t.Errorf("K3s config.yaml after the last apply: %v\n%s", err, cfg)
	}
}
