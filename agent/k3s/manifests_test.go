package k3s

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/config"
)

// TestManifestsWritten: a server's manifests are written to K3s's manifests
// folder as etoilecfg-NAME.yaml (0600); a later config's replace them,
// an unchanged one is left as it was (K3s applies a file again when it
// changes), and files the config did not write — K3s's own, the
// constellation's templates, someone's — stay. An agent writes none, and
// removes what a server config wrote.
func TestManifestsWritten(t *testing.T) {
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n"
	parse := func(doc string) *config.MachineConfig {
		t.Helper()
		c, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n" + doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	root := fakeRoot(t)
	dir := filepath.Join(root, config.ManifestDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	others := []string{"coredns.yaml", "etoile-gdpr.yaml", "site-extra.yaml", "etoilecfg-notes.txt"}
	for _, f := range others {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write := func(c *config.MachineConfig) {
		t.Helper()
		s, err := ForConfig(root, c, "edge-1", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteConfig(); err != nil {
			t.Fatal(err)
		}
	}
	files := func() map[string]string {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			got[e.Name()] = string(b)
		}
		return got
	}
	same := func(want map[string]string) {
		t.Helper()
		got := files()
		for _, f := range others {
			want[f] = "x: 1\n"
		}
		if len(got) != len(want) {
			t.Errorf("manifests folder: %q, want %q", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %q, want %q", k, got[k], v)
			}
		}
	}

	pool := "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lan\n  namespace: metallb-system\nspec:\n  addresses: [192.0.2.200-192.0.2.250]\n"
	first := parse("role: server\ncluster: {init: true}\nmanifests:\n" +
		"  - name: pool\n    contents: |\n      " + indent(pool) +
		"  - name: team-a\n    contents: \"" + escaped(ns, "team-a") + "\"\n")
	write(first)
	same(map[string]string{"etoilecfg-pool.yaml": pool, "etoilecfg-team-a.yaml": sprintf(ns, "team-a")})
	st, err := os.Stat(filepath.Join(dir, "etoilecfg-pool.yaml"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("etoilecfg-pool.yaml: %v, mode %v; want 0600", err, st.Mode())
	}

	// A later config: pool unchanged (not rewritten), team-a gone, team-b new.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "etoilecfg-pool.yaml"), old, old); err != nil {
		t.Fatal(err)
	}
	second := parse("role: server\ncluster: {init: true}\nmanifests:\n" +
		"  - name: pool\n    contents: |\n      " + indent(pool) +
		"  - name: team-b\n    contents: \"" + escaped(ns, "team-b") + "\"\n")
	write(second)
	same(map[string]string{"etoilecfg-pool.yaml": pool, "etoilecfg-team-b.yaml": sprintf(ns, "team-b")})
	if st, err := os.Stat(filepath.Join(dir, "etoilecfg-pool.yaml")); err != nil || !st.ModTime().Equal(old) {
		t.Errorf("an unchanged manifest was rewritten (K3s would apply it again): %v", err)
	}

	// An agent deploys nothing: the server config's files go.
	write(parse("role: agent\ncluster: {server: \"https://10.0.0.1:6443\", token: t}\n"))
	same(map[string]string{})
}

// indent is s as the lines of a YAML block scalar six spaces in.
func indent(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n      ") + "\n"
}

func sprintf(format, name string) string { return fmt.Sprintf(format, name) }

// escaped is format with name, as a double-quoted YAML scalar's text.
func escaped(format, name string) string {
	return strings.ReplaceAll(sprintf(format, name), "\n", `\n`)
}
