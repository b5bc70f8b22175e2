package k3s

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestLinkAirgapImages(t *testing.T) {
	root := t.TempDir()
	shipped := filepath.Join(root, ShippedImagesDir)
	images := filepath.Join(root, ImagesDir)
	for _, d := range []string{shipped, images} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{
		"k3s-airgap-images-amd64.tar.zst": "k3s", "site-apps.tar": "site", "README": "not an image",
		// wharfie's other kinds, in any case; not a hidden file, not .tar.zstd (K3s cannot open it).
		"gpu.TZST": "gpu", "tools.tbz": "tools", ".hidden.tar": "hidden", "odd.tar.zstd": "no",
	} {
		if err := os.WriteFile(filepath.Join(shipped, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An operator's own file of the same name wins.
	if err := os.WriteFile(filepath.Join(images, "site-apps.tar"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	linked, err := LinkAirgapImages(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"gpu.TZST", "k3s-airgap-images-amd64.tar.zst", "tools.tbz"}; !reflect.DeepEqual(linked, want) {
		t.Errorf("linked %v, want %v", linked, want)
	}
	to, err := os.Readlink(filepath.Join(images, "k3s-airgap-images-amd64.tar.zst"))
	if err != nil || to != ShippedImagesDir+"/k3s-airgap-images-amd64.tar.zst" {
		t.Errorf("link = %q, %v", to, err)
	}
	if data, _ := os.ReadFile(filepath.Join(images, "site-apps.tar")); string(data) != "mine" {
		t.Errorf("existing file replaced: %q", data)
	}
	// Idempotent.
	if again, err := LinkAirgapImages(root); err != nil || len(again) != 0 {
		t.Errorf("second run linked %v, %v", again, err)
	}
	// No shipped images at all is fine.
	if got, err := LinkAirgapImages(t.TempDir()); err != nil || got != nil {
		t.Errorf("empty root: %v, %v", got, err)
	}
}
