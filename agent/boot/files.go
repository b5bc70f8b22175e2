package boot

import (
	"fmt"
	"os"
	"path/filepath"
)

// touch makes an empty file (and its folders) unless something is there.
func touch(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("making %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		return fmt.Errorf("making %s: %w", path, err)
	}
	return f.Close()
}
