package image

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/etoile-os/etoile/image/media"
)

// TestOverlayModesDoNotDependOnTheUmask: an overlay checked out under umask
// 077 (folders 0700, files 0600, a script 0700, a setuid tool 04700) gives
// the same system image, byte for byte, as one checked out under 022
// (0755, 0644, 0755, 04755): modes are taken as git keeps them — folders
// 0755, files 0755 when their owner may run them and 0644 otherwise —
// with the setuid bit kept; no file of /etc is left that only root reads.
func TestOverlayModesDoNotDependOnTheUmask(t *testing.T) {
	checkout := func(dirMode, fileMode, execMode fs.FileMode) string {
		src := t.TempDir()
		for _, d := range []string{"etc/site", "usr/local/bin"} {
			if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for p, m := range map[string]fs.FileMode{"etc/site/site.conf": fileMode, "usr/local/bin/tool": execMode, "usr/local/bin/su-tool": execMode | fs.ModeSetuid} {
			if err := os.WriteFile(filepath.Join(src, p), []byte(p+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(src, p), m); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{"etc/site", "usr/local/bin", "usr/local", "usr", "etc"} {
			if err := os.Chmod(filepath.Join(src, d), dirMode); err != nil {
				t.Fatal(err)
			}
		}
		return src
	}
	image := func(src string) ([]byte, string) {
		root := filepath.Join(t.TempDir(), "rootfs")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := copyTree(os.DirFS(src), root); err != nil {
			t.Fatal(err)
		}
		sqfs := filepath.Join(t.TempDir(), "system.sqfs")
		if err := media.WriteSquashfs(sqfs, root, media.SquashfsOptions{Epoch: 1}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(sqfs)
		if err != nil {
			t.Fatal(err)
		}
		return data, root
	}
	private, privRoot := image(checkout(0o700, 0o600, 0o700))
	open, _ := image(checkout(0o755, 0o644, 0o755))
	if !bytes.Equal(private, open) {
		t.Errorf("the overlay checked out under umask 077 gives another system image than under 022")
	}
	for p, want := range map[string]fs.FileMode{
		"etc": fs.ModeDir | 0o755, "etc/site": fs.ModeDir | 0o755, "usr/local/bin": fs.ModeDir | 0o755,
		"etc/site/site.conf": 0o644, "usr/local/bin/tool": 0o755, "usr/local/bin/su-tool": 0o755 | fs.ModeSetuid,
	} {
		if st, err := os.Lstat(filepath.Join(privRoot, p)); err != nil || st.Mode() != want {
			t.Errorf("%s from the umask 077 checkout: %v, %v; want %v", p, st.Mode(), err, want)
		}
	}
}
