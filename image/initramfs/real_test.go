package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/image/kernel"
)

// budget is the limit for the initramfs.
const budget = 30 << 20

// TestRealKernelInitramfs builds the default module set of Debian's kernel
// into an initramfs, checks the size budget, determinism and the contents
// with the independent zstd and cpio tools.
func TestRealKernelInitramfs(t *testing.T) {
	zstdTool, cpio := tool(t, "zstd", "zstd"), tool(t, "cpio", "cpio")
	k, mods := realKernel(t)
	// The test binary stands in for the agent: a static Go binary of
	// similar size and compressibility.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agent, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Init: agent, KernelVersion: k.Version, Modules: mods, Epoch: 1700000000}

	var a, b bytes.Buffer
	start := time.Now()
	st, err := Write(&a, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	took := time.Since(start)
	t.Logf("stand-in /init: %s, %.1f MB", self, float64(len(agent))/(1<<20))
	t.Logf("initramfs for kernel %s: %d modules, %d entries, %.1f MB uncompressed, %.1f MB zstd (%d bytes), written in %s",
		k.Version, st.Modules, st.Entries, float64(st.UncompressedSize)/(1<<20), float64(st.CompressedSize)/(1<<20), st.CompressedSize, took.Round(time.Millisecond))
	if st.CompressedSize > budget {
		t.Errorf("initramfs is %d bytes, over the %d budget", st.CompressedSize, budget)
	}
	if _, err := Write(&b, opts); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(a.Bytes()) != sha256.Sum256(b.Bytes()) {
		t.Fatalf("two builds of the real initramfs differ")
	}

	img := filepath.Join(t.TempDir(), "initramfs.img")
	os.WriteFile(img, a.Bytes(), 0o644)
	list := cpioBoth(t, img, zstdTool, cpio, t.TempDir(), "-t")
	listed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		listed[l] = true
	}
	base := "lib/modules/" + k.Version + "/"
	for _, m := range mods {
		if !listed[base+m.RelPath+ModuleSuffix] {
			t.Errorf("cpio -t does not list module %s", base+m.RelPath+ModuleSuffix)
		}
	}
	for _, f := range []string{"init", "dev/console", "dev/null", base + "modules.dep", base + "modules.alias", base + "modules.builtin"} {
		if !listed[f] {
			t.Errorf("cpio -t does not list %s", f)
		}
	}

	// kmod's depmod, run on the unpacked archive, must agree with the
	// modules.dep and modules.alias written into it.
	depmod, err := exec.LookPath("depmod")
	if err != nil {
		if depmod = "/usr/sbin/depmod"; !fileExists(depmod) {
			t.Fatalf("depmod not found: install the Debian package \"kmod\"")
		}
	}
	root := filepath.Join(t.TempDir(), "root")
	os.Mkdir(root, 0o755)
	cpioBoth(t, img, zstdTool, cpio, root, "-i -d --no-absolute-filenames --nonmatching 'dev/*'")
	want, err := exec.Command(depmod, "-n", "-b", root, k.Version).Output()
	if err != nil {
		t.Fatalf("depmod -n -b %s %s: %v", root, k.Version, err)
	}
	wantDep, wantAlias := depmodSets(string(want))
	gotDepData, _ := os.ReadFile(filepath.Join(root, base, "modules.dep"))
	gotAliasData, _ := os.ReadFile(filepath.Join(root, base, "modules.alias"))
	gotDep, _ := depmodSets(string(gotDepData))
	_, gotAlias := depmodSets(string(gotAliasData))
	if len(gotDep) != len(mods) {
		t.Errorf("modules.dep has %d entries for %d modules", len(gotDep), len(mods))
	}
	for m, d := range wantDep {
		if gotDep[m] != d {
			t.Errorf("modules.dep for %s: %q, depmod says %q", m, gotDep[m], d)
		}
	}
	for a := range wantAlias {
		if !gotAlias[a] {
			t.Errorf("modules.alias lacks %q that depmod finds", a)
		}
	}
	if len(gotAlias) != len(wantAlias) {
		t.Errorf("modules.alias has %d aliases, depmod %d", len(gotAlias), len(wantAlias))
	}
	t.Logf("depmod on the unpacked initramfs agrees: %d modules, %d aliases", len(wantDep), len(wantAlias))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// depmodSets reads depmod text: module -> sorted dependency list, and the
// set of "pattern module" aliases (symbol aliases left out).
func depmodSets(text string) (map[string]string, map[string]bool) {
	deps, aliases := map[string]string{}, map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case f[0] == "alias" && len(f) == 3 && !strings.HasPrefix(f[1], "symbol:"):
			aliases[f[1]+" "+f[2]] = true
		case strings.HasSuffix(f[0], ".ko:"), strings.HasSuffix(f[0], ".ko"+ModuleSuffix+":"):
			d := f[1:]
			sort.Strings(d)
			deps[strings.TrimSuffix(f[0], ":")] = strings.Join(d, " ")
		}
	}
	return deps, aliases
}

// realKernel is Debian's kernel package (the build's default, fetched with
// apt into the user's etoile cache as a build does) and the default spec's
// modules selected from it; a missing apt-get fails the test.
func realKernel(t *testing.T) (*kernel.Kernel, []kernel.Module) {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Fatalf("apt-get not found: this test needs the Debian package \"apt\" with a configured sources list")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, err := kernel.Resolve(context.Background(), kernel.Source{}, filepath.Join(cache, "etoile"), nil)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	mods, err := k.Select(kernel.DefaultModules)
	if err != nil {
		t.Fatalf("Select(DefaultModules): %v", err)
	}
	return k, mods
}
