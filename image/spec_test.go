package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image/kernel"
)

func TestDefaultSpecIsValid(t *testing.T) {
	s, err := LoadSpec("")
	if err != nil {
		t.Fatalf("the embedded default spec does not validate: %v", err)
	}
	// The build machine's distribution's kernel (hostIsUbuntu is tested below).
	wantKernel := "linux-image-amd64"
	if hostIsUbuntu("/etc/os-release") {
		wantKernel = "linux-image-generic"
	}
	if s.Arch != "amd64" || s.Kernel.Package != wantKernel {
		t.Errorf("default arch/kernel = %q/%q, want amd64/%s", s.Arch, s.Kernel.Package, wantKernel)
	}
	for _, o := range []string{OutputISO, OutputRaw, OutputNetboot} {
		if !s.Wants(o) {
			t.Errorf("default spec does not build %s", o)
		}
	}
	// Issue 2's module list, every name of it.
	listed := map[string]bool{}
	for _, m := range s.Modules {
		listed[m] = true
	}
	for _, m := range issueModules {
		if !listed[m] {
			t.Errorf("default module list lacks %s (issue 2's list)", m)
		}
	}
}

// issueModules is the module list issue 2 asks of every image: storage,
// filesystems, network, Kubernetes networking.
var issueModules = []string{
	"virtio_blk", "virtio_scsi", "nvme", "ahci", "sd_mod", "sr_mod", "usb-storage", "uas", "xhci_pci",
	"squashfs", "overlay", "isofs", "vfat", "ext4", "loop",
	"virtio_net", "e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "mlx5_core", "bnxt_en", "r8169", "tg3",
	"br_netfilter", "vxlan", "nf_tables", "nf_conntrack", "iptable_nat", "iptable_filter", "ip_vs", "wireguard",
}

// TestKernelDefaultModulesIsTheDefaultSpec: kernel.DefaultModules, the list
// the real-kernel tests of image/kernel and image/initramfs select (and
// size the initramfs budget with), is the default spec's module list: the
// tests measure the image that ships, not a list that has drifted from it.
func TestKernelDefaultModulesIsTheDefaultSpec(t *testing.T) {
	s, err := LoadSpec("")
	if err != nil {
		t.Fatal(err)
	}
	spec, code := map[string]bool{}, map[string]bool{}
	for _, m := range s.Modules {
		spec[m] = true
	}
	for _, m := range kernel.DefaultModules {
		code[m] = true
	}
	for m := range spec {
		if !code[m] {
			t.Errorf("default.yaml lists %s, kernel.DefaultModules does not", m)
		}
	}
	for m := range code {
		if !spec[m] {
			t.Errorf("kernel.DefaultModules lists %s, default.yaml does not", m)
		}
	}
	if len(kernel.DefaultModules) != len(code) {
		t.Errorf("kernel.DefaultModules lists a module twice: %v", kernel.DefaultModules)
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	const head = "apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\nmodules: [squashfs]\n"
	tests := []struct {
		name, yaml string
		want       []string // every one must appear in the error
	}{
		{"unknown top field", head + "kernal: {}\n", []string{"kernal", "unknown field", `did you mean "kernel"`}},
		{"unknown nested field", head + "kernel:\n  pakage: x\n", []string{"kernel.pakage", "unknown field"}},
		{"wrong type", head + "outputs: iso\n", []string{"outputs", "expected a list", `"iso"`}},
		{"bad list item type", head + "kernel:\n  cmdline: [quiet, {a: b}]\n", []string{"kernel.cmdline[1]", "expected a string"}},
		{"bad output", head + "outputs: [iso, floppy]\n", []string{"outputs[1]", `"floppy"`, "iso, raw or netboot"}},
		{"arch", head + "arch: sparc\n", []string{"arch", `"sparc"`, "amd64"}},
		{"both kernel sources", head + "kernel: {package: linux-image-amd64, dir: " + dir + "}\n", []string{"kernel", "not both"}},
		{"kernel dir missing", head + "kernel: {dir: /nonexistent/k}\n", []string{"kernel.dir", "/nonexistent/k", "vmlinuz"}},
		{"cmdline with space", head + "kernel:\n  cmdline: [\"a b\"]\n", []string{"kernel.cmdline[0]", `"a b"`}},
		{"cmdline sets the slot", head + "kernel:\n  cmdline: [quiet, etoile.slot=z]\n", []string{"kernel.cmdline[1]", `"etoile.slot=z"`, "set for each medium by the build"}},
		{"cmdline sets the system URL", head + "kernel:\n  cmdline: ['etoile.system=ftp://x']\n", []string{"kernel.cmdline[0]", "netboot server"}},
		{"cmdline config not a URL", head + "kernel:\n  cmdline: ['etoile.config=/etc/x.yaml']\n", []string{"kernel.cmdline[0]", "http:// or https:// URL"}},
		{"cmdline unknown etoile argument", head + "kernel:\n  cmdline: [etoile.debugg]\n", []string{"kernel.cmdline[0]", "etoile.debug,"}},
		{"cmdline too long", head + "kernel:\n  cmdline: [" + strings.Repeat("a=bcdefghijklmnop,", 100) + "x]\n", []string{"kernel.cmdline", "at most 1536"}},
		{"outputs empty", head + "outputs: []\n", []string{"outputs", "leave outputs out"}},
		{"version too long", head + "version: " + strings.Repeat("v", 65) + "\n", []string{"version", `"` + strings.Repeat("v", 65) + `" is 65 characters long`, "at most 64"}},
		{"bad module", "apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\nmodules: [squashfs, \"bad/name\", squashfs]\n", []string{"modules[1]", "bad/name", "modules[2]", "listed twice"}},
		{"compression", head + "initramfs: {compression: lz4}\n", []string{"initramfs.compression", `"lz4"`, "zstd"}},
		{"overlay missing", head + "overlays: [nope]\n", []string{"overlays[0]", `"nope"`, "not a folder"}},
		{"overlay empty", head + "overlays: ['']\n", []string{"overlays[0]", "empty", `"."`}},
		{"overlay null", head + "overlays:\n  -\n", []string{"overlays[0]", "empty"}},
		{"wrong kind", "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nmodules: [a]\n", []string{"kind", "MachineConfig", "ImageSpec"}},
		{"wrong version", "apiVersion: v2\nkind: ImageSpec\nmodules: [a]\n", []string{"apiVersion", `"v2"`, "etoile.io/v1alpha1"}},
		{"not yaml", "a: [\n", []string{"not valid YAML"}},
		{"empty", "", []string{"empty document"}},
		{"version", head + "version: \"1 0\"\n", []string{"version", `"1 0"`}},
		{"duplicate key", head + "arch: amd64\narch: amd64\n", []string{"arch", "twice"}},
		{"k3s version", head + "k3s: {version: \"1.34\"}\n", []string{"k3s.version", `"1.34"`, "v1.34.9+k3s1"}},
		{"k3s source", head + "k3s: {source: ftp}\n", []string{"k3s.source", `"ftp"`, "release, oci, dir or none"}},
		{"k3s dir missing", head + "k3s: {source: dir}\n", []string{"k3s.dir", "missing"}},
		{"k3s dir for release", head + "k3s: {source: release, dir: " + dir + "}\n", []string{"k3s.dir", "only used with source dir"}},
		{"k3s airgap missing", head + "k3s: {airgapImages: [nope.tar]}\n", []string{"k3s.airgapImages[0]", `"nope.tar"`}},
		{"extension both", head + "extensions: [{name: gpu, dir: " + dir + ", squashfs: x.sqfs}]\n", []string{"extensions[0]", "exactly one"}},
		{"extension name", head + "extensions: [{name: GPU!, dir: " + dir + "}]\n", []string{"extensions[0].name", `"GPU!"`}},
		{"extension missing layer", head + "extensions: [{name: gpu, squashfs: none.sqfs}]\n", []string{"extensions[0].squashfs", `"none.sqfs"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.yaml), dir)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestSpecRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "extra", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "spec.yaml")
	data := "apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\nmodules: [squashfs]\noverlays: [extra]\noutputs: [netboot]\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.OverlayDirs(); len(got) != 1 || got[0] != filepath.Join(dir, "extra") {
		t.Errorf("overlay dirs = %v, want [%s]", got, filepath.Join(dir, "extra"))
	}
	if s.Wants(OutputISO) || !s.Wants(OutputNetboot) {
		t.Errorf("outputs = %v", s.Outputs)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add(DefaultSpecYAML())
	f.Add([]byte("apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\nkernel: {cmdline: [a, [b]]}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data, t.TempDir())
		if err == nil && s == nil {
			t.Fatal("no spec and no error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

func TestHostIsUbuntu(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]bool{
		"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n":        false,
		"NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n": true,
		"ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n":                          true,
	} {
		p := filepath.Join(dir, "os-release")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := hostIsUbuntu(p); got != want {
			t.Errorf("%q: %v, want %v", body, got, want)
		}
	}
	if hostIsUbuntu(filepath.Join(dir, "none")) {
		t.Error("no os-release: want false")
	}
}
