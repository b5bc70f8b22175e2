package k3s

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Where airgap image tarballs live. The system image carries them in
// ImagesDir, where K3s imports them at start; ShippedImagesDir keeps a copy
// of the names for when /var is a persistent state partition that hides the
// image's own /var.
const (
	ImagesDir        = "/var/lib/rancher/k3s/agent/images"
	ShippedImagesDir = "/usr/lib/etoile/k3s/images"
)

// airgapSuffixes are the archive kinds K3s imports from ImagesDir, matched
// regardless of case as K3s does (rancher/wharfie's
// tarfile.SupportedExtensions, which K3s's image import uses; the package
// itself is not linked into the agent).
var airgapSuffixes = []string{".tar", ".tar.lz4", ".tar.bz2", ".tbz", ".tar.gz", ".tgz", ".tar.zst", ".tzst"}

func isAirgapArchive(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false // K3s skips hidden files
	}
	lower := strings.ToLower(name)
	for _, s := range airgapSuffixes {
		if strings.HasSuffix(lower, s) {
			return true
		}
	}
	return false
}

// LinkAirgapImages makes every archive in ShippedImagesDir visible in
// ImagesDir by a symlink, leaving files already there alone. It returns the
// names linked.
func LinkAirgapImages(root string) ([]string, error) {
	src := filepath.Join(root, ShippedImagesDir)
	dst := filepath.Join(root, ImagesDir)
	entries, err := os.ReadDir(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading airgap images: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", ImagesDir, err)
	}
	var linked []string
	for _, e := range entries {
		if e.IsDir() || !isAirgapArchive(e.Name()) {
			continue
		}
		target := filepath.Join(dst, e.Name())
		if _, err := os.Lstat(target); err == nil {
			continue
		}
		// The link is absolute in the node's own view of the filesystem.
		if err := os.Symlink(filepath.Join(ShippedImagesDir, e.Name()), target); err != nil {
			return linked, fmt.Errorf("linking airgap image %s: %w", e.Name(), err)
		}
		linked = append(linked, e.Name())
	}
	sort.Strings(linked)
	return linked, nil
}
