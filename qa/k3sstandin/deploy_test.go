package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeployCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
	write("etoilecfg-teams.yaml", ns+"---\n"+ns, 0o600)
	write("extra.yml", ns, 0o644)
	write("skipped.yaml", "not: an object\n", 0o644)
	write("skipped.yaml.skip", "", 0o644)
	write("notes.txt", "anything", 0o644)
	write(".etoilecfg-x.yaml.123", "partial", 0o600)
	if got, want := deployCheck(dir), "standin-deploy-ok addons=etoilecfg-teams:2:0600,extra:1:0644"; got != want {
		t.Errorf("deployCheck = %q, want %q", got, want)
	}
	// K3s names an AddOn after the file's name up to its first dot: two
	// files one AddOn would track are refused.
	write("etoilecfg-teams.extra.yaml", ns, 0o600)
	if got := deployCheck(dir); !strings.Contains(got, "standin-deploy-failed file=etoilecfg-teams.yaml ") || !strings.Contains(got, "AddOn etoilecfg-teams also tracks etoilecfg-teams.extra.yaml") {
		t.Errorf("two files of one AddOn: %q", got)
	}
	if err := os.Remove(filepath.Join(dir, "etoilecfg-teams.extra.yaml")); err != nil {
		t.Fatal(err)
	}
	write("broken.yaml", "apiVersion: v1\n", 0o644)
	if got := deployCheck(dir); !strings.HasPrefix(got, "standin-deploy-failed file=broken.yaml ") || !strings.Contains(got, "has no kind") {
		t.Errorf("with a broken file: %q", got)
	}
}
