package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image"
)

// TestBuildConfigNetboot: only the ISO and the raw disk carry a config
// baked in with --config. A spec whose outputs are the netboot set alone is
// refused before any work, naming the outputs and how a netboot node gets
// its config; with the default outputs the build warns that the netboot
// set lacks it, and with the ISO alone it says nothing.
func TestBuildConfigNetboot(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "machine.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-7\nrole: agent\n"+
		"cluster:\n  server: https://10.0.0.1:6443\n  token: K10deadbeef::server:topsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	specWith := func(outputs string) string {
		p := filepath.Join(dir, outputs+".yaml")
		// The default spec lists its outputs as a block; put ours in its place.
		y := strings.Replace(string(image.DefaultSpecYAML()), "outputs:\n  - iso\n  - raw\n  - netboot\n", "outputs: ["+outputs+"]\n", 1)
		if !strings.Contains(y, "outputs: ["+outputs+"]") {
			t.Fatalf("the default spec's outputs are not the block this test replaces:\n%s", image.DefaultSpecYAML())
		}
		if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	out := filepath.Join(dir, "out")
	noAgent := filepath.Join(dir, "no-agent") // stops the build right after the checks

	_, _, err := runCLI(t, "build", "-f", specWith("netboot"), "-o", out, "--config", cfg, "--agent", noAgent)
	if err == nil {
		t.Fatal("--config with outputs [netboot] was accepted")
	}
	for _, w := range []string{"--config", "netboot", "etoile.config=<url>", "ETOILE-CFG", "iso", "raw"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "no-agent") {
		t.Errorf("the config was refused only after the agent was looked for: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the output folder was created although --config was refused")
	}

	_, stderr, err := runCLI(t, "build", "-o", out, "--config", cfg, "--agent", noAgent)
	if err == nil || !strings.Contains(err.Error(), "no-agent") {
		t.Fatalf("the default spec with --config stopped before the agent was looked for: %v", err)
	}
	for _, w := range []string{"level=WARN", "not into the netboot set", "etoile.config=<url>", "ETOILE-CFG"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("the default spec with --config: the log lacks %q:\n%s", w, stderr)
		}
	}

	_, stderr, err = runCLI(t, "build", "-f", specWith("iso"), "-o", out, "--config", cfg, "--agent", noAgent)
	if err == nil || !strings.Contains(err.Error(), "no-agent") {
		t.Fatalf("outputs [iso] with --config stopped before the agent was looked for: %v", err)
	}
	if strings.Contains(stderr, "netboot") {
		t.Errorf("outputs [iso] with --config warns about the netboot set:\n%s", stderr)
	}
}
