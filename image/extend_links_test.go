package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExtensionAbsoluteLibLinkNeverReadsTheHost: an extension folder whose
// lib is an absolute link (lib -> /usr/lib, as some root filesystems have
// it) is refused with what to make it, and the build machine's own module
// folders behind the link are never read (no false error about modules for
// another kernel found there).
func TestExtensionAbsoluteLibLinkNeverReadsTheHost(t *testing.T) {
	const kver = "6.1.0-56-amd64"
	host := t.TempDir() // stands for the build machine's /usr/lib
	if err := os.MkdirAll(filepath.Join(host, "modules", "9.9.9-host"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{host, "/usr/lib"} {
		t.Run(target, func(t *testing.T) {
			ext := t.TempDir()
			if err := os.MkdirAll(filepath.Join(ext, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(ext, "lib")); err != nil {
				t.Fatal(err)
			}
			b := &Builder{Spec: &ImageSpec{Extensions: []Extension{{Name: "tools", Dir: ext}}}}
			err := b.stageExtensions(t.TempDir(), kver)
			if err == nil {
				t.Fatal("an extension with an absolute lib link was staged")
			}
			for _, w := range []string{"extensions[0] tools", "/lib is a symlink to " + target, "make it relative"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "9.9.9-host") {
				t.Errorf("the build read the host's module folder through the link: %v", err)
			}
		})
	}
}
