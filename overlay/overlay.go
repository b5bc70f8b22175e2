// Package overlay holds the files every Étoile system image starts from.
// They are embedded in the etoile binary so that a build needs nothing from
// the source tree; an ImageSpec's own overlays are laid on top.
package overlay

import (
	"embed"
	"io/fs"
)

//go:embed all:rootfs
var files embed.FS

// Root returns the overlay tree, rooted at the system image's "/".
func Root() (fs.FS, error) {
	return fs.Sub(files, "rootfs")
}
