package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefaultCacheDir: the cache is $XDG_CACHE_HOME/etoile when that is
// set, else ~/.cache/etoile; with neither, the error says what to set.
func TestDefaultCacheDir(t *testing.T) {
	xdg, home := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", xdg)
	if got, err := DefaultCacheDir(); err != nil || got != filepath.Join(xdg, "etoile") {
		t.Errorf("XDG_CACHE_HOME=%s: DefaultCacheDir() = %q, %v, want %s", xdg, got, err, filepath.Join(xdg, "etoile"))
	}
	os.Unsetenv("XDG_CACHE_HOME") // t.Setenv above restores it after the test
	if got, err := DefaultCacheDir(); err != nil || got != filepath.Join(home, ".cache", "etoile") {
		t.Errorf("XDG_CACHE_HOME unset, HOME=%s: DefaultCacheDir() = %q, %v, want %s", home, got, err, filepath.Join(home, ".cache", "etoile"))
	}
	os.Unsetenv("HOME")
	if got, err := DefaultCacheDir(); err == nil || !strings.Contains(err.Error(), "XDG_CACHE_HOME") || !strings.Contains(err.Error(), "HOME") {
		t.Errorf("neither set: DefaultCacheDir() = %q, %v, want an error naming XDG_CACHE_HOME and HOME", got, err)
	}
}
