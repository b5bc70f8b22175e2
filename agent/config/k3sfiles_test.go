package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReplaceFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc/rancher/k3s")
	path := filepath.Join(dir, "config.yaml")
	changed, err := ReplaceFile(path, []byte("token: \"s\"\n"))
	if err != nil || !changed {
		t.Fatalf("first write: changed %v, %v", changed, err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "token: \"s\"\n" {
		t.Errorf("content %q, %v", got, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600 (it holds secrets)", st.Mode(), err)
	}
	// The same again changes nothing (K3s need not restart), and tightens
	// a mode someone else loosened.
	os.Chmod(path, 0o644)
	if changed, err := ReplaceFile(path, []byte("token: \"s\"\n")); err != nil || changed {
		t.Errorf("second write: changed %v, %v", changed, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after a rewrite, want 0600", st.Mode())
	}
	if changed, err := ReplaceFile(path, []byte("token: \"t\"\n")); err != nil || !changed {
		t.Errorf("new content: changed %v, %v", changed, err)
	}
	// No temporary files are left behind.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("folder holds %d entries, want 1", len(entries))
	}
	// nil: the file goes away (registries taken out of the config), once.
	if changed, err := ReplaceFile(path, nil); err != nil || !changed {
		t.Errorf("removal: changed %v, %v", changed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("still there: %v", err)
	}
	if changed, err := ReplaceFile(path, nil); err != nil || changed {
		t.Errorf("second removal: changed %v, %v", changed, err)
	}
}
