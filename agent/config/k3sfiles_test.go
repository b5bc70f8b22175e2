package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteK3sFiles(t *testing.T) {
	root := t.TempDir()
	c, err := Parse(Example())
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"nvidia.com/gpu.present": "true"}
	changed, err := c.WriteK3sFiles(root, labels)
	if err != nil || !changed {
		t.Fatalf("first write: changed %v, %v", changed, err)
	}
	wantCfg, _ := c.K3sConfig(labels)
	wantReg, _ := c.RegistriesYAML()
	for path, want := range map[string][]byte{K3sConfigPath: wantCfg, K3sRegistriesPath: wantReg} {
		full := filepath.Join(root, path)
		got, err := os.ReadFile(full)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v\n%s", path, err, got)
		}
		if st, err := os.Stat(full); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, %v; want 0600 (it holds secrets)", path, st.Mode(), err)
		}
	}
	// The same config again changes nothing: K3s need not restart.
	if changed, err := c.WriteK3sFiles(root, labels); err != nil || changed {
		t.Errorf("second write: changed %v, %v", changed, err)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(filepath.Join(root, "etc/rancher/k3s"))
	if len(entries) != 2 {
		t.Errorf("folder holds %d entries, want 2", len(entries))
	}
	// Registries taken out of the config: registries.yaml goes away.
	c.Registries = nil
	if changed, err := c.WriteK3sFiles(root, labels); err != nil || !changed {
		t.Errorf("write without registries: changed %v, %v", changed, err)
	}
	if _, err := os.Stat(filepath.Join(root, K3sRegistriesPath)); !os.IsNotExist(err) {
		t.Errorf("registries.yaml still there: %v", err)
	}
	// A detected label changes config.yaml.
	if changed, err := c.WriteK3sFiles(root, nil); err != nil || !changed {
		t.Errorf("write with other labels: changed %v, %v", changed, err)
	}
	// An invalid config writes nothing.
	bad := *c
	bad.Role = "boss"
	before, _ := os.ReadFile(filepath.Join(root, K3sConfigPath))
	if _, err := bad.WriteK3sFiles(root, nil); err == nil {
		t.Error("an invalid config was written")
	}
	if after, _ := os.ReadFile(filepath.Join(root, K3sConfigPath)); !bytes.Equal(before, after) {
		t.Error("an invalid config changed config.yaml")
	}
}
