package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
	return ReplaceFileMode(path, data, 0o600)
}

// ReplaceFileMode is ReplaceFile for a file of another mode (0644: one
// that every program on the node reads).
func ReplaceFileMode(path string, data []byte, mode os.FileMode) (bool, error) {
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
		if err := os.Chmod(path, mode); err != nil {
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
	if err := tmp.Chmod(mode); err != nil {
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

// WithBlock is text with the block between the lines begin and end (each
// ending in a newline) replaced by body, or removed when body is empty;
// what is outside it stays as it is. The block goes at the end. It is how
// the agent keeps its part of a file the system image also fills
// (/etc/hosts, the CA bundle) apart from the image's lines.
func WithBlock(text []byte, begin, end string, body []byte) []byte {
	var out bytes.Buffer
	in := false
	for line := range strings.Lines(string(text)) {
		switch {
		case line == begin:
			in = true
		case in && line == end:
			in = false
		case !in:
			out.WriteString(line)
		}
	}
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	if len(body) == 0 {
		return out.Bytes()
	}
	out.WriteString(begin)
	out.Write(body)
	if !bytes.HasSuffix(body, []byte("\n")) {
		out.WriteByte('\n')
	}
	out.WriteString(end)
	return out.Bytes()
}

// ReplaceBlock makes the file at path hold body between the lines begin
// and end (WithBlock), keeping what else it holds, and reports whether it
// changed. A file that does not exist is made (mode), unless body is
// empty; one that does keeps its mode.
func ReplaceBlock(path, begin, end string, body []byte, mode os.FileMode) (bool, error) {
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if len(body) == 0 {
			return false, nil
		}
	case err != nil:
		return false, fmt.Errorf("reading %s: %w", path, err)
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	next := WithBlock(old, begin, end, body)
	if bytes.Equal(old, next) {
		return false, nil
	}
	if next == nil {
		next = []byte{} // the file stays, empty (nil would remove it)
	}
	return ReplaceFileMode(path, next, mode)
}
