// Package staletmp removes what killed builds left in a cache: the
// temporary files and folders a build writes before renaming them into
// place. Builds may share a cache, so only those older than an hour go —
// none a build still running writes.
package staletmp

import (
	"os"
	"path/filepath"
	"time"
)

// Age is how old a temporary entry must be to count as a killed build's.
const Age = time.Hour

// Remove deletes the entries of dir matching any of patterns
// (filepath.Match) whose modification time is older than Age. It reports
// what it could not remove to nobody: a leftover costs room, not
// correctness.
func Remove(dir string, patterns ...string) {
	for _, pat := range patterns {
		old, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, p := range old {
			if st, err := os.Lstat(p); err == nil && time.Since(st.ModTime()) > Age {
				_ = os.RemoveAll(p)
			}
		}
	}
}
