package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestModulesLoadDLinksStayInImage: a symlink in an overlay's
// modules-load.d leads where it leads on the node, inside the image: an
// absolute one to the image's /usr/lib/modules-load.d/site.conf is read
// from the image (whatever the build host has there), and one to a file of
// the build host that the image lacks is an error naming it, not the host's
// file read into the build.
func TestModulesLoadDLinksStayInImage(t *testing.T) {
	k, log := debianKernel(t)
	host := t.TempDir()
	fakeroot.Write(t, host, map[string]string{"site.conf": "hostonly_module\n"})
	for _, tc := range []struct {
		name, link, target, want string
	}{
		{"absolute, in the image", "site.conf", "/usr/lib/modules-load.d/site.conf", ""},
		{"relative, past the top", "up.conf", "../../../../../../../../../usr/lib/modules-load.d/site.conf", ""},
		{"to the build host", "host.conf", filepath.Join(host, "site.conf"), "/etc/modules-load.d/host.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specDir := t.TempDir()
			ov := filepath.Join(specDir, "site")
			fakeroot.Write(t, ov, map[string]string{"usr/lib/modules-load.d/site.conf": "8139cp\n", "etc/modules-load.d/.keep": ""})
			if err := os.Symlink(tc.target, filepath.Join(ov, "etc/modules-load.d", tc.link)); err != nil {
				t.Fatal(err)
			}
			b := &Builder{Spec: &ImageSpec{Overlays: []string{"site"}, dir: specDir}}
			root := t.TempDir()
			if err := b.stageRoot(root, "v1"); err != nil {
				t.Fatal(err)
			}
			err := mergeExtensionModules(root, k, nil, b.staged, log)
			if tc.want == "" {
				if err != nil {
					t.Errorf("etc/modules-load.d/%s -> %s: %v", tc.link, tc.target, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hostonly_module") {
				t.Errorf("etc/modules-load.d/%s -> %s: %v, want an error naming %s, and nothing the build host's file says", tc.link, tc.target, err, tc.want)
			}
		})
	}
}
