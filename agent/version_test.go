package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestImageVersion(t *testing.T) {
	root := t.TempDir()
	if got := ImageVersion(root); got != Version {
		t.Errorf("no version file: %q, want the agent's %q", got, Version)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/etoile"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ImageVersionFile), []byte("1.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := ImageVersion(root); got != "1.0.0" {
		t.Errorf("ImageVersion = %q, want the spec's 1.0.0", got)
	}
}
