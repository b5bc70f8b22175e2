package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Where K3s reads its files, relative to the machine's root.
const (
	K3sConfigPath     = "etc/rancher/k3s/config.yaml"
	K3sRegistriesPath = "etc/rancher/k3s/registries.yaml"
)

// WriteK3sFiles writes K3s's config.yaml and registries.yaml under root
// ("/" on a node, a temporary folder in tests), or removes registries.yaml
// when the config has no registries, so that a mirror taken out of the
// config stops being used. Files are mode 0600, as they hold the cluster
// token and registry passwords, and each is replaced atomically (temporary
// file, fsync, rename) so that K3s never reads half a file. changed reports
// whether any file's content changed, which is when K3s needs a restart.
func (c *MachineConfig) WriteK3sFiles(root string, extraLabels map[string]string) (changed bool, err error) {
	cfg, err := c.K3sConfig(extraLabels)
	if err != nil {
		return false, err
	}
	reg, err := c.RegistriesYAML()
	if err != nil {
		return false, err
	}
	ch1, err := replaceFile(filepath.Join(root, K3sConfigPath), cfg)
	if err != nil {
		return false, err
	}
	ch2, err := replaceFile(filepath.Join(root, K3sRegistriesPath), reg)
	if err != nil {
		return ch1, err
	}
	return ch1 || ch2, nil
}

// replaceFile makes path hold data (nil: makes path absent) and reports
// whether that changed anything.
func replaceFile(path string, data []byte) (bool, error) {
	old, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	if data == nil {
		if !exists {
			return false, nil
		}
		if err := os.Remove(path); err != nil {
			return false, fmt.Errorf("removing %s: %w", path, err)
		}
		return true, nil
	}
	if exists && bytes.Equal(old, data) {
		// Also tighten the mode of a file someone else wrote.
		if err := os.Chmod(path, 0o600); err != nil {
			return false, fmt.Errorf("setting the mode of %s: %w", path, err)
		}
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	return true, nil
}
