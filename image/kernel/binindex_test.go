package kernel

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kmodTree writes files (the index) and every module of mods (compressed
// as the initramfs keeps them) under root/lib/modules/<version>.
func kmodTree(t *testing.T, k *Kernel, mods []Module, files map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "lib/modules", k.Version)
	for name, data := range files {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range mods {
		p := filepath.Join(dir, m.RelPath+".zst")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func kmodTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: apt-get install -y kmod (make test installs it)", name)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// TestBinaryIndexesReadByKmod: kmod's own modprobe (what a CNI plugin's
// container runs against the node's /lib/modules) resolves modules,
// their dependencies, aliases and built-ins from the indexes the build
// writes for the initramfs.
func TestBinaryIndexesReadByKmod(t *testing.T) {
	k := realKernel(t)
	mods, err := k.Select([]string{"ahci", "virtio_net", "squashfs", "overlay", "sd_mod", "nf_tables", "iptable_nat", "br_netfilter"})
	if err != nil {
		t.Fatal(err)
	}
	files, err := IndexFiles(mods, ".zst")
	if err != nil {
		t.Fatal(err)
	}
	root := kmodTree(t, k, mods, files)
	dir := filepath.Join(root, "lib/modules", k.Version)
	show := func(name string) []string {
		out := kmodTool(t, "modprobe", "--dirname", root, "--set-version", k.Version, "--ignore-install", "--show-depends", name)
		return strings.Split(strings.TrimSpace(out), "\n")
	}
	byName := map[string]Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	for _, m := range mods {
		got := show(m.Name)
		// Each dependency before the module, the module last, every path
		// the file the initramfs holds.
		if last := got[len(got)-1]; !strings.HasPrefix(last, "insmod "+filepath.Join(dir, m.RelPath+".zst")) {
			t.Errorf("modprobe --show-depends %s ends with %q, want the module's own file", m.Name, last)
		}
		// (and the soft dependencies, which kmod reads from modules.softdep)
		for _, l := range got {
			f, ok := strings.CutPrefix(strings.TrimSpace(l), "insmod ")
			if _, err := os.Stat(f); !ok || err != nil {
				t.Errorf("modprobe --show-depends %s: %q is not a module of the tree", m.Name, l)
			}
		}
		for _, d := range m.Deps {
			if !strings.Contains(strings.Join(got, "\n"), "insmod "+filepath.Join(dir, d+".zst")) {
				t.Errorf("modprobe --show-depends %s lacks its dependency %s:\n%s", m.Name, d, strings.Join(got, "\n"))
			}
		}
	}
	// A device's alias: QEMU q35's AHCI controller.
	got := show("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01")
	if !strings.HasSuffix(got[len(got)-1], "/ahci.ko.zst ") && !strings.HasSuffix(got[len(got)-1], "/ahci.ko.zst") {
		t.Errorf("the AHCI controller's modalias resolves to %q, want ahci", got)
	}
	// An alias with "-", which kmod reads as "_" on both sides (mount's request for a filesystem).
	if got := show("fs-overlay"); !strings.Contains(got[len(got)-1], "/overlay.ko.zst") {
		t.Errorf("fs-overlay: %q, want overlay", got)
	}
	// A module built into this kernel.
	builtin := ""
	for _, l := range k.idx.builtinLines {
		builtin = nameFromPath(l)
		break
	}
	if builtin == "" {
		t.Fatal("this kernel lists no built-in modules")
	}
	if got := show(builtin); len(got) != 1 || got[0] != "builtin "+builtin {
		t.Errorf("built-in %s: %q, want \"builtin %s\"", builtin, got, builtin)
	}
	// Without the binary indexes kmod finds nothing: the test would catch their loss.
	for _, f := range []string{"modules.dep.bin", "modules.alias.bin", "modules.builtin.bin"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("modprobe", "--dirname", root, "--set-version", k.Version, "--show-depends", "ahci")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("kmod found ahci without the binary indexes: %s", out)
	}
}
