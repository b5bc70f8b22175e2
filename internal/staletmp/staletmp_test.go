package staletmp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * Age)
	for name, age := range map[string]time.Time{".unpack-1": old, ".unpack-2": time.Now(), ".download-3": old, "entry": old} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, age, age); err != nil {
			t.Fatal(err)
		}
	}
	Remove(dir, ".unpack-*", ".download-*")
	for name, want := range map[string]bool{".unpack-1": false, ".unpack-2": true, ".download-3": false, "entry": true} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s there: %v, want %v", name, err == nil, want)
		}
	}
}
