package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/image/k3s"
	"github.com/etoile-os/etoile/image/kernel"
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

// TestLayerConflictNamesEarlierLayer: a conflict between layers names the
// earlier one (an overlay, an extension, Étoile's own files), not only the
// path, so that the user knows which two to reconcile.
func TestLayerConflictNamesEarlierLayer(t *testing.T) {
	const kver = "6.1.0-56-amd64"
	link := func(dir, p, to string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	specDir := t.TempDir()
	ov1 := filepath.Join(specDir, "ov1")
	link(ov1, "opt", "usr/opt")
	fakeroot.Write(t, ov1, map[string]string{"srv/data/keep": "x"})
	ov2 := filepath.Join(specDir, "ov2")
	fakeroot.Write(t, ov2, map[string]string{"opt/tool": "x"})

	t.Run("overlay over overlay", func(t *testing.T) {
		b := &Builder{Spec: &ImageSpec{Overlays: []string{"ov1", "ov2"}, dir: specDir}}
		err := b.stageRoot(t.TempDir(), "v1")
		for _, w := range []string{"overlays[1] " + ov2, "opt is a folder here, but an earlier layer (overlays[0] ov1) made it a symlink to usr/opt"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("error = %v, want it to say %q", err, w)
			}
		}
	})
	for _, asLayer := range []bool{false, true} {
		kind := "folder"
		if asLayer {
			kind = "squashfs"
		}
		ext := func(name string, files map[string]string) Extension {
			dir := t.TempDir()
			fakeroot.Write(t, dir, files)
			if asLayer {
				return Extension{Name: name, Squashfs: mksquashfs(t, dir)}
			}
			return Extension{Name: name, Dir: dir}
		}
		for _, c := range []struct {
			name string
			exts []Extension
			want []string
		}{
			{"extension over overlay", []Extension{ext("site", map[string]string{"opt/x": "x"})},
				[]string{"extensions[0] site: ", "opt is a folder here, but an earlier layer (overlays[0] ov1) made it a symlink"}},
			{"extension over extension", []Extension{ext("a", map[string]string{"usr/share/a/file": "x"}), ext("b", map[string]string{"usr/share/a": "x"})},
				[]string{"extensions[1] b: ", "usr/share/a is a file here, but a folder in an earlier layer (extensions[0] a)"}},
			{"extension over a folder with an overlay's files", []Extension{ext("c", map[string]string{"srv/data": "x"})},
				[]string{"extensions[0] c: ", "srv/data is a file here, but a folder in an earlier layer (overlays[0] ov1)"}},
			{"extension over Étoile's own folder", []Extension{ext("d", map[string]string{"var/lib/etoile": "x"})},
				[]string{"extensions[0] d: ", "var/lib/etoile is a file here, but a folder in an earlier layer (Étoile's own files)"}},
		} {
			t.Run(c.name+" "+kind, func(t *testing.T) {
				b := &Builder{Spec: &ImageSpec{Overlays: []string{"ov1"}, dir: specDir, Extensions: c.exts}}
				root := t.TempDir()
				if err := b.stageRoot(root, "v1"); err != nil {
					t.Fatal(err)
				}
				err := b.stageExtensions(root, kver)
				for _, w := range c.want {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("error = %v, want it to say %q", err, w)
					}
				}
			})
		}
	}
}

// TestExtensionModuleErrorNamesExtension: a module an extension brings that
// the kernel cannot use is named by the extension and its path in the
// image, not by the build's staged tree (a temporary folder, gone when the
// user reads the error).
func TestExtensionModuleErrorNamesExtension(t *testing.T) {
	k, log := debianKernel(t)
	mod := "lib/modules/" + k.Version + "/extra/bogus.ko"
	site, gpu := t.TempDir(), t.TempDir()
	fakeroot.Write(t, site, map[string]string{"etc/site": "x"})
	fakeroot.Write(t, gpu, map[string]string{mod: "not a kernel module"})
	b := &Builder{Spec: &ImageSpec{Extensions: []Extension{{Name: "site", Dir: site}, {Name: "gpu", Dir: gpu}}}}
	root := filepath.Join(t.TempDir(), ".build-1234", "rootfs")
	if err := b.stageRoot(root, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := b.stageExtensions(root, k.Version); err != nil {
		t.Fatal(err)
	}
	err := mergeExtensionModules(root, k, nil, b.staged, log)
	if err == nil {
		t.Fatal("a module that is not one was merged")
	}
	for _, w := range []string{"extensions[1] gpu: module /" + mod + ": is not an ELF kernel module", "built for " + k.Version} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if strings.Contains(err.Error(), root) || strings.Contains(err.Error(), ".build-") {
		t.Errorf("error %q names the staged tree, a temporary folder", err)
	}
}

// TestMergedUsrLayer: a layer made from a merged-/usr root (lib ->
// usr/lib, its modules in usr/lib/modules, as a Debian or Ubuntu root has
// them) is staged, its module indexed where the machine's /lib/modules
// leads; a lib link out of the image is refused.
func TestMergedUsrLayer(t *testing.T) {
	k, log := debianKernel(t)
	mods, err := k.Select([]string{"8139cp"})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	var base string
	for _, m := range mods {
		if m.Name == "8139cp" {
			if data, err = os.ReadFile(m.Source); err != nil {
				t.Fatal(err)
			}
			base = filepath.Base(m.Source)
		}
	}
	for _, asLayer := range []bool{false, true} {
		src := t.TempDir()
		fakeroot.Write(t, src, map[string]string{"usr/lib/modules/" + k.Version + "/extra/" + base: string(data), "usr/bin/tool": "x"})
		for _, l := range []string{"lib", "bin"} {
			if err := os.Symlink("usr/"+l, filepath.Join(src, l)); err != nil {
				t.Fatal(err)
			}
		}
		ext := Extension{Name: "nvidia", Dir: src}
		if asLayer {
			ext = Extension{Name: "nvidia", Squashfs: mksquashfs(t, src)}
		}
		b := &Builder{Spec: &ImageSpec{Extensions: []Extension{ext}}}
		root := t.TempDir()
		if err := b.stageRoot(root, "v1"); err != nil {
			t.Fatal(err)
		}
		if err := b.stageExtensions(root, k.Version); err != nil {
			t.Fatalf("squashfs %v: a merged-/usr layer was refused: %v", asLayer, err)
		}
		if err := mergeExtensionModules(root, k, nil, b.staged, log); err != nil {
			t.Fatalf("squashfs %v: %v", asLayer, err)
		}
		dep, err := os.ReadFile(filepath.Join(root, "lib/modules", k.Version, "modules.dep"))
		if err != nil || !strings.Contains(string(dep), "extra/"+base+":") {
			t.Errorf("squashfs %v: modules.dep through lib -> usr/lib lacks the module: %v\n%s", asLayer, err, dep)
		}
		if to, err := os.Readlink(filepath.Join(root, "lib")); err != nil || to != "usr/lib" {
			t.Errorf("squashfs %v: lib is %q, %v; want the layer's link to usr/lib", asLayer, to, err)
		}
	}
	// A layer whose lib leads out of the image is refused as it is
	// staged; and were such a link in the staged tree, its modules' folder
	// is not written through it.
	src := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(src, "lib")); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	b := &Builder{Spec: &ImageSpec{Extensions: []Extension{{Name: "bad", Dir: src}}}}
	if err := b.stageRoot(root, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := b.stageExtensions(root, k.Version); err == nil || !strings.Contains(err.Error(), "extensions[0] bad") || !strings.Contains(err.Error(), "make it relative") {
		t.Errorf("staging a layer with an absolute lib link: %v", err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../..", filepath.Join(root, "lib2")); err != nil {
		t.Fatal(err)
	}
	w, err := openStage(root)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := resolveInTree(w.root, "lib/modules/"+k.Version); err == nil || !strings.Contains(err.Error(), "lib is a symlink to "+outside) || !strings.Contains(err.Error(), "make it relative") {
		t.Errorf("an absolute lib link: %v", err)
	}
	if err := mergeExtensionModules(root, k, nil, b.staged, log); err == nil || !strings.Contains(err.Error(), "make it relative") {
		t.Errorf("merging through an absolute lib link: %v", err)
	}
	if got := relativeTo("", "/usr/lib"); got != "usr/lib" {
		t.Errorf("relativeTo = %q", got)
	}
	if _, err := resolveInTree(w.root, "lib2/x"); err == nil || !strings.Contains(err.Error(), "outside the image") {
		t.Errorf("a link out of the tree: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("the build wrote outside its tree: %v", entries)
	}
}

// TestBuildWarnsOfAnIncompleteNvidiaRuntime: an image whose extension
// carries nvidia-container-runtime alone gets the build's warning, naming
// what the runtime runs; an image without the runtime gets none.
func TestBuildWarnsOfAnIncompleteNvidiaRuntime(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	stage := t.TempDir()
	checkNvidiaRuntime(stage, log)
	if buf.Len() != 0 {
		t.Errorf("no runtime, yet: %s", buf.String())
	}
	fakeroot.WriteExec(t, stage, map[string]string{"usr/bin/nvidia-container-runtime": "#!/bin/sh\n"})
	checkNvidiaRuntime(stage, log)
	for _, w := range []string{"level=WARN", "NVIDIA container runtime lacks what it needs", "nvidia-container-runtime-hook", "nvidia-container-cli", "/sbin/ldconfig", "libnvidia-ml.so.1"} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("the build's log lacks %q:\n%s", w, buf.String())
		}
	}
}

// debianKernel is the image's default kernel, from the cache the build
// fills (make test builds the image first).
func debianKernel(t *testing.T) (*kernel.Kernel, *slog.Logger) {
	t.Helper()
	cache, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	k, err := kernel.Resolve(context.Background(), kernel.Source{Arch: "amd64"}, cache, log)
	if err != nil {
		t.Fatalf("resolving Debian's kernel: %v", err)
	}
	return k, log
}

// TestStageShell: an image with K3s gets /bin/sh linked to K3s's own busybox
// (k3s-root's iptables are #!/bin/sh scripts); a shell an overlay or
// extension brings stays; a merged-/usr layer gets the link in usr/bin.
func TestStageShell(t *testing.T) {
	b := &Builder{Spec: &ImageSpec{}}
	root := t.TempDir()
	if err := b.stageRoot(root, "v1"); err != nil {
		t.Fatal(err)
	}
	sh, err := stageShell(root)
	if err != nil || sh != "/bin/sh" {
		t.Fatalf("stageShell = %q, %v", sh, err)
	}
	if to, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || to != K3sShell {
		t.Errorf("/bin/sh -> %q (%v), want %s", to, err, K3sShell)
	}

	own := t.TempDir()
	fakeroot.Write(t, own, map[string]string{"bin/sh": "#!an extension's shell"})
	if sh, err := stageShell(own); err != nil || sh != "" {
		t.Errorf("with a shell of the image's own: %q, %v", sh, err)
	}
	if data, _ := os.ReadFile(filepath.Join(own, "bin/sh")); string(data) != "#!an extension's shell" {
		t.Errorf("the layer's shell was replaced: %q", data)
	}

	merged := t.TempDir()
	fakeroot.Write(t, merged, map[string]string{"usr/bin/tool": "x"})
	if err := os.Symlink("usr/bin", filepath.Join(merged, "bin")); err != nil {
		t.Fatal(err)
	}
	if sh, err := stageShell(merged); err != nil || sh != "/usr/bin/sh" {
		t.Fatalf("merged /usr: %q, %v", sh, err)
	}
	if to, err := os.Readlink(filepath.Join(merged, "usr/bin/sh")); err != nil || to != K3sShell {
		t.Errorf("usr/bin/sh -> %q (%v)", to, err)
	}

	// bin -> /usr/bin, absolute, with the layer's own shell there: kept.
	abs := t.TempDir()
	fakeroot.Write(t, abs, map[string]string{"usr/bin/sh": "#!a layer's shell"})
	if err := os.Symlink("/usr/bin", filepath.Join(abs, "bin")); err != nil {
		t.Fatal(err)
	}
	if sh, err := stageShell(abs); err != nil || sh != "" {
		t.Errorf("bin -> /usr/bin with a shell: %q, %v", sh, err)
	}
	if data, _ := os.ReadFile(filepath.Join(abs, "usr/bin/sh")); string(data) != "#!a layer's shell" {
		t.Errorf("the layer's shell behind an absolute bin link was replaced: %q", data)
	}
}
