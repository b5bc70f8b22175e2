package kernel

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// cacheRoot is where the product caches packages, so reruns reuse them.
func cacheRoot(t testing.TB) string {
	d, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no cache folder: set XDG_CACHE_HOME or HOME: %v", err)
	}
	return filepath.Join(d, "etoile")
}

var (
	realOnce sync.Once
	realK    *Kernel
	realErr  error
)

// realKernel resolves Debian's default kernel package once per test binary.
func realKernel(t *testing.T) *Kernel {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Fatalf("apt-get not found: the real-kernel tests need the Debian package \"apt\" with a configured sources list")
	}
	realOnce.Do(func() {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		realK, realErr = Resolve(context.Background(), Source{}, cacheRoot(t), log)
	})
	if realErr != nil {
		t.Fatalf("Resolve(linux-image-amd64): %v", realErr)
	}
	return realK
}

func TestRealKernelResolves(t *testing.T) {
	k := realKernel(t)
	t.Logf("kernel %s vmlinuz=%s modules=%s packages=%s", k.Version, k.Vmlinuz, k.ModulesDir, chain(k.Packages))
	if len(k.Packages) != 2 || k.Packages[0].Name != DefaultPackage || !strings.HasPrefix(k.Packages[1].Name, "linux-image-") {
		t.Errorf("Packages = %s, want the metapackage then the image package", chain(k.Packages))
	}
	if !strings.HasSuffix(k.Packages[1].Name, k.Version) {
		t.Errorf("image package %s does not carry version %s", k.Packages[1].Name, k.Version)
	}
	if filepath.Base(k.ModulesDir) != k.Version || !filepath.IsAbs(k.ModulesDir) {
		t.Errorf("ModulesDir = %s", k.ModulesDir)
	}
	head := make([]byte, 0x210)
	f, err := os.Open(k.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(f, head)
	f.Close()
	if string(head[0x202:0x206]) != "HdrS" { // x86 boot protocol header magic
		t.Errorf("%s is not an x86 bzImage", k.Vmlinuz)
	}
	for _, n := range []string{"boot/System.map-" + k.Version, "usr/share/doc"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(k.ModulesDir))), n)); err == nil {
			t.Errorf("%s was unpacked; only vmlinuz and modules are needed", n)
		}
	}

	// a second Resolve reuses the entry
	k2, err := Resolve(context.Background(), Source{Package: DefaultPackage}, cacheRoot(t), nil)
	if err != nil || k2.ModulesDir != k.ModulesDir {
		t.Fatalf("second Resolve = %v, %v", k2, err)
	}
}

func TestRealKernelDefaultModules(t *testing.T) {
	k := realKernel(t)
	mods, err := k.Select(DefaultModules)
	if err != nil {
		t.Fatalf("Select(DefaultModules): %v", err)
	}
	var asked, builtin []string
	for _, n := range DefaultModules {
		if k.Builtin(n) {
			builtin = append(builtin, n)
		} else {
			asked = append(asked, n)
		}
	}
	var total int64
	names := map[string]bool{}
	for _, m := range mods {
		names[m.Name] = true
		st, err := os.Stat(m.Source)
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
	}
	for _, n := range asked {
		if !names[normName(n)] {
			t.Errorf("requested module %s is not in the selection", n)
		}
	}
	t.Logf("kernel %s: %d requested, built in: %s; %d modules selected with dependencies, %d bytes on disk",
		k.Version, len(DefaultModules), strings.Join(builtin, " "), len(mods), total)
	t.Logf("selected: %s", strings.Join(slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}), " "))
	// r8169 needs the Realtek PHY driver through a soft dependency
	if names["r8169"] && !names["realtek"] {
		t.Errorf("r8169 selected without its softdep pre: realtek")
	}
	// each module decompresses to an ELF relocatable
	for _, m := range mods[:3] {
		rc, err := m.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil || ef.Type != elf.ET_REL {
			t.Errorf("module %s does not open as an ELF relocatable: %v", m.Name, err)
		}
	}
}

// TestGeneratedIndexMatchesDepmod checks the modules.dep, modules.alias and
// modules.softdep written for the Debian package against kmod's depmod run
// on the same tree: same dependency sets, aliases and soft dependencies.
func TestGeneratedIndexMatchesDepmod(t *testing.T) {
	k := realKernel(t)
	depmod, err := exec.LookPath("depmod")
	if err != nil {
		depmod = "/usr/sbin/depmod"
		if _, err := os.Stat(depmod); err != nil {
			t.Fatalf("depmod not found: install the Debian package \"kmod\"")
		}
	}
	base := filepath.Dir(filepath.Dir(filepath.Dir(k.ModulesDir)))
	out, err := exec.Command(depmod, "-n", "-b", base, k.Version).Output()
	if err != nil {
		t.Fatalf("depmod -n -b %s %s: %v", base, k.Version, err)
	}
	wantDeps := map[string][]string{}
	wantAlias := map[string]bool{}
	wantSoft := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "alias "):
			f := strings.Fields(line)
			if !strings.HasPrefix(f[1], "symbol:") {
				wantAlias[f[1]+" "+f[2]] = true
			}
		case strings.HasPrefix(line, "softdep "):
			wantSoft[strings.Join(strings.Fields(line), " ")] = true
		case strings.Contains(line, ".ko:"):
			mod, deps, _ := strings.Cut(line, ":")
			d := strings.Fields(deps)
			sort.Strings(d)
			wantDeps[mod] = d
		}
	}
	ix := k.idx
	if len(ix.byPath) != len(wantDeps) {
		t.Errorf("index has %d modules, depmod %d", len(ix.byPath), len(wantDeps))
	}
	bad := 0
	for p, want := range wantDeps {
		m := ix.byPath[p]
		if m == nil {
			t.Errorf("depmod lists %s, the index does not", p)
			continue
		}
		got := slices.Sorted(slices.Values(m.Deps))
		if !slices.Equal(got, want) && bad < 10 {
			bad++
			t.Errorf("%s: deps %q, depmod says %q", p, got, want)
		}
	}
	gotAlias := map[string]bool{}
	gotSoft := map[string]bool{}
	for _, m := range ix.mods {
		for _, a := range m.Aliases {
			gotAlias[a+" "+m.Name] = true
		}
		for _, s := range m.SoftDeps {
			gotSoft[strings.Join(strings.Fields("softdep "+m.Name+" "+s), " ")] = true
		}
	}
	diff := func(what string, a, b map[string]bool) {
		n := 0
		for x := range a {
			if !b[x] {
				n++
				if n <= 5 {
					t.Errorf("%s %q only in depmod", what, x)
				}
			}
		}
		for x := range b {
			if !a[x] {
				n++
				if n <= 5 {
					t.Errorf("%s %q only in Étoile's index", what, x)
				}
			}
		}
	}
	diff("alias", wantAlias, gotAlias)
	diff("softdep", wantSoft, gotSoft)
	t.Logf("compared %d modules, %d aliases, %d softdeps with depmod", len(wantDeps), len(wantAlias), len(wantSoft))
}
