package image

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/image/k3s"
)

// mksquashfs makes a squashfs layer of src with squashfs-tools, as an
// operator would.
func mksquashfs(t *testing.T, src string) string {
	t.Helper()
	tool, err := exec.LookPath("mksquashfs")
	if err != nil {
		t.Fatal("mksquashfs not found: install it with `apt-get install -y squashfs-tools` (make test does)")
	}
	layer := filepath.Join(t.TempDir(), "layer.sqfs")
	if out, err := exec.Command(tool, src, layer, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return layer
}

// TestStageExtensions lays a folder and a squashfs layer (made by
// mksquashfs) over the staged root, in order: files, folders and symlinks
// arrive, and the later extension wins over the earlier one.
func TestStageExtensions(t *testing.T) {
	dir := t.TempDir()
	fakeroot.Write(t, dir, map[string]string{
		"usr/bin/site-tool":        "v1",
		"etc/site/motd":            "from the folder",
		"usr/share/doc/site/a.txt": "a",
	})
	src := t.TempDir()
	fakeroot.Write(t, src, map[string]string{
		"usr/bin/nvidia-container-runtime": "#!/bin/sh\n",
		"etc/site/motd":                    "from the layer",
	})
	if err := os.Symlink("nvidia-container-runtime", filepath.Join(src, "usr/bin/nvidia-container-runtime.cdi")); err != nil {
		t.Fatal(err)
	}
	layer := mksquashfs(t, src)
	b := &Builder{Spec: &ImageSpec{Extensions: []Extension{{Name: "site", Dir: dir}, {Name: "nvidia", Squashfs: layer}}}}
	root := t.TempDir()
	if err := b.stageExtensions(root, "6.1.0-56-amd64"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"usr/bin/site-tool":                "v1",
		"etc/site/motd":                    "from the layer",
		"usr/share/doc/site/a.txt":         "a",
		"usr/bin/nvidia-container-runtime": "#!/bin/sh\n",
	} {
		if got, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(root, "usr/bin/nvidia-container-runtime.cdi")); err != nil || l != "nvidia-container-runtime" {
		t.Errorf("symlink from the layer = %q, %v", l, err)
	}
}

// TestVarRunIsRun: the staged root's /var/run is a link to /run, and an
// extension with files under var/run (which /run's tmpfs would hide at
// boot) is refused, naming the path and the link.
func TestVarRunIsRun(t *testing.T) {
	root := t.TempDir()
	if err := (&Builder{Spec: &ImageSpec{}}).stageRoot(root, "v1"); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(root, "var/run")); err != nil || l != "../run" {
		t.Fatalf("var/run = %q, %v; want a link to ../run", l, err)
	}
	dir := t.TempDir()
	fakeroot.Write(t, dir, map[string]string{"var/run/nvidia-persistenced/keep": ""})
	b := &Builder{Spec: &ImageSpec{Extensions: []Extension{{Name: "nvidia", Dir: dir}}}}
	err := b.stageExtensions(root, "6.1.0-56-amd64")
	if err == nil || !strings.Contains(err.Error(), "var/run: the image's /var/run is /run, an empty tmpfs at boot") || !strings.Contains(err.Error(), "leave var/run out of the layer") {
		t.Errorf("an extension with var/run/: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "run/nvidia-persistenced")); err == nil {
		t.Error("the extension's folder was written through the link")
	}
	// A layer made from a Debian root has the same link: accepted; a link
	// elsewhere is refused.
	for to, ok := range map[string]bool{"/run": true, "../run": true, "../tmp": false} {
		dir := t.TempDir()
		fakeroot.Write(t, dir, map[string]string{"usr/bin/tool": "x"})
		if err := os.MkdirAll(filepath.Join(dir, "var"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, filepath.Join(dir, "var/run")); err != nil {
			t.Fatal(err)
		}
		b := &Builder{Spec: &ImageSpec{Extensions: []Extension{{Name: "root", Dir: dir}}}}
		err := b.stageExtensions(root, "6.1.0-56-amd64")
		if ok != (err == nil) {
			t.Errorf("a layer's var/run -> %s: %v", to, err)
		}
		if l, _ := os.Readlink(filepath.Join(root, "var/run")); l != "../run" {
			t.Errorf("after a layer's var/run -> %s the image's var/run -> %q", to, l)
		}
	}
}

// TestStageExtensionsRefusesOtherKernels: modules for another kernel, or
// under /usr/lib/modules, are refused with the extension, the version and
// what to do, from a folder and from a squashfs layer alike.
func TestStageExtensionsRefusesOtherKernels(t *testing.T) {
	const kver = "6.1.0-56-amd64"
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"other kernel", map[string]string{"lib/modules/6.12.9-amd64/extra/nvidia.ko": "x"},
			[]string{"for kernel 6.12.9-amd64", "image's kernel is " + kver, "linux-headers-" + kver}},
		{"usr/lib/modules", map[string]string{"usr/lib/modules/" + kver + "/extra/nvidia.ko": "x"},
			[]string{"/usr/lib/modules/" + kver, "move them there", "/lib/modules/" + kver}},
	}
	for _, c := range cases {
		for _, asLayer := range []bool{false, true} {
			name := c.name + " folder"
			if asLayer {
				name = c.name + " squashfs"
			}
			t.Run(name, func(t *testing.T) {
				src := t.TempDir()
				fakeroot.Write(t, src, c.files)
				ext := Extension{Name: "nvidia", Dir: src}
				if asLayer {
					ext = Extension{Name: "nvidia", Squashfs: mksquashfs(t, src)}
				}
				b := &Builder{Spec: &ImageSpec{Extensions: []Extension{{Name: "ok", Dir: t.TempDir()}, ext}}}
				err := b.stageExtensions(t.TempDir(), kver)
				if err == nil {
					t.Fatal("staged")
				}
				for _, w := range append([]string{"extensions[1] nvidia:"}, c.want...) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			})
		}
	}
}

// TestBuildUmask: under a builder's umask of 077, what a build stages keeps
// the modes it asks for (the system image carries them), and the umask is
// put back afterwards.
func TestBuildUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "etc")
	restore := buildUmask()
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	}
	restore()
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o755, filepath.Join(dir, "passwd"): 0o644} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", p, st.Mode(), err, want)
		}
	}
	if now := syscall.Umask(0o077); now != 0o077 {
		t.Errorf("umask after the build = %#o, want 077 back", now)
	}
}

// TestStageK3sChecksWhatItCopies: a K3s file changed after the build
// verified it (a release folder edited during the build) is not shipped:
// the copy into the staged root checks the verified SHA-256 again.
func TestStageK3sChecksWhatItCopies(t *testing.T) {
	src := t.TempDir()
	bin := filepath.Join(src, "k3s")
	if err := os.WriteFile(bin, []byte("verified k3s"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("verified k3s"))
	art := &k3s.Artifacts{Binary: bin, BinarySHA256: hex.EncodeToString(sum[:]), AirgapSHA256: map[string]string{}}
	root := t.TempDir()
	if err := stageK3s(root, art); err != nil {
		t.Fatalf("staging the verified binary: %v", err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho swapped\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root = t.TempDir()
	err := stageK3s(root, art)
	if err == nil || !strings.Contains(err.Error(), "changed after it was verified") {
		t.Fatalf("staging a binary changed since its check: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, strings.TrimPrefix(k3s.ImageBinaryPath, "/"))); err == nil {
		t.Error("the changed binary was left in the staged root")
	}
}
