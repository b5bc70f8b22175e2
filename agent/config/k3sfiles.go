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

// ReplaceFile makes path hold data, mode 0600 (K3s's files hold the
// cluster token and registry passwords), or, for nil data, makes path
// absent (a registries.yaml whose mirrors left the config), and reports
// whether that changed anything. A file is replaced atomically (temporary
// file, fsync, rename) so that K3s never reads half of one.
func ReplaceFile(path string, data []byte) (bool, error) {
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
