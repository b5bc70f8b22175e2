package kmod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestReadModulesLoadDInsideRoot: symlinks among the modules-load.d files
// and folders of a tree lead where they lead on the machine whose root the
// tree is: an absolute target is taken from the tree's top, ".." stops
// there, and a file the tree lacks is an error naming it, never the file
// of the machine that reads the tree (the build host, reading an image's).
func TestReadModulesLoadDInsideRoot(t *testing.T) {
	host := t.TempDir()
	fakeroot.Write(t, host, map[string]string{"x/site.conf": "host_module\n"})
	root := t.TempDir()
	inRootCopy := strings.TrimPrefix(filepath.Join(host, "x/site.conf"), "/") // the host's path, inside root
	fakeroot.Write(t, root, map[string]string{
		"usr/lib/site-modules/site.conf": "site_module\n",
		"srv/net.conf":                   "tcp_bbr\n",
		inRootCopy:                       "image_module\n",
	})
	link := func(to, at string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, at)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, filepath.Join(root, at)); err != nil {
			t.Fatal(err)
		}
	}
	link("/usr/lib/site-modules", "usr/lib/modules-load.d")                        // a folder, absolute
	link("../../../../../../../../../srv/net.conf", "etc/modules-load.d/net.conf") // past the top
	link(filepath.Join(host, "x/site.conf"), "etc/modules-load.d/abs.conf")        // the host's path
	ml, err := ReadModulesLoadD(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"image_module", "tcp_bbr", "site_module"}; !slices.Equal(ml.Names, want) {
		t.Errorf("names = %q, want %q (read inside the tree)", ml.Names, want)
	}
	if want := []string{"/etc/modules-load.d/abs.conf", "/etc/modules-load.d/net.conf", "/usr/lib/modules-load.d/site.conf"}; !slices.Equal(ml.Files, want) {
		t.Errorf("files = %q, want %q (the paths the machine lists)", ml.Files, want)
	}
	// The tree lacks what the link names: an error, not the host's file.
	if err := os.Remove(filepath.Join(root, inRootCopy)); err != nil {
		t.Fatal(err)
	}
	ml, err = ReadModulesLoadD(root)
	if err == nil || !strings.Contains(err.Error(), "/etc/modules-load.d/abs.conf") || slices.Contains(ml.Names, "host_module") {
		t.Errorf("a link to a file the tree lacks: names %q, error %v; want an error naming /etc/modules-load.d/abs.conf", ml.Names, err)
	}
}
