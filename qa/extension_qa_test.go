//go:build qa

package qa

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image"
	"github.com/etoile-os/etoile/image/kernel"
)

// TestExtensionModuleDrivesNIC builds an image whose extension carries a
// kernel module the initramfs does not hold — the driver of QEMU's Realtek
// RTL8139C+ NIC (8139cp), taken from the image's own kernel package as a
// stand-in for an out-of-tree driver such as NVIDIA's — and a
// modules-load.d file naming tcp_bbr, and boots its raw disk under OVMF with
// that NIC as the only one. The build indexes 8139cp with the initramfs's
// modules (and adds its dependency mii from the kernel package when the
// initramfs lacks it; the default image has it for r8152); the agent
// lays the image's modules over the initramfs's, loads 8139cp for the NIC
// once the system image is mounted, the NIC gets its DHCP lease before the
// ready line, and tcp_bbr loads after it.
func TestExtensionModuleDrivesNIC(t *testing.T) {
	t.Parallel()
	bin := binDir(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cache, err := image.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	// The image's kernel, from the cache `make image` filled.
	k, err := kernel.Resolve(context.Background(), kernel.Source{Arch: "amd64"}, cache, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("resolving the image's kernel: %v", err)
	}
	mods, err := k.Select([]string{"8139cp"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ext := filepath.Join(dir, "ext")
	for _, m := range mods {
		if m.Name != "8139cp" {
			continue
		}
		data, err := os.ReadFile(m.Source)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(ext, "lib/modules", k.Version, "extra/realtek", filepath.Base(m.Source))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(ext, "etc/modules-load.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ext, "etc/modules-load.d/qa.conf"), []byte("# a site's congestion control\ntcp_bbr\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := string(image.DefaultSpecYAML())
	for old, new := range map[string]string{
		"extensions: []":  "extensions:\n  - {name: qa-nic, dir: " + ext + "}",
		"source: release": "source: none",
		"  - iso\n":       "",
		"  - netboot\n":   "",
	} {
		if !strings.Contains(spec, old) {
			t.Fatalf("the default spec no longer has %q", old)
		}
		spec = strings.Replace(spec, old, new, 1)
	}
	specPath := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	cmd := exec.Command(filepath.Join(bin, "etoile"), "build", "-f", specPath, "-o", out, "--agent", filepath.Join(bin, "etoile-agent"))
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("etoile build with the extension: %v\n%s", err, b)
	}
	// mii comes from the kernel package unless the initramfs has it already
	// (the default image's r8152 needs it).
	if !regexp.MustCompile(`extension kernel modules.* modules=8139cp .*with_kernel_modules=(mii,)?tcp_bbr`).Match(b) {
		t.Errorf("the build does not report the extension's module and mii:\n%s", b)
	}

	vm := Start(t, Config{Devices: []Device{OVMF{}, VirtioDisk{Path: filepath.Join(out, RawName)}, UserNIC{Model: "rtl8139"}}})
	ready := vm.WaitFor(regexp.MustCompile(`^etoile: ready `), ReadyTimeout)
	if !strings.Contains(ready.Line, " ip=10.0.2.15") {
		t.Errorf("the RTL8139 NIC, driven by the extension's module, got no lease: %s", ready.Line)
	}
	vm.WaitFor(regexp.MustCompile(`^etoile: step=late-modules .*modules=.*\btcp_bbr\b`), ReadyTimeout)
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`^etoile: kernel modules of the system image added index=/lib/modules/\S+ modules=8139cp,(mii,)?tcp_bbr$`),
		regexp.MustCompile(`^etoile: drivers loaded from the system image's modules modules=(mii,)?8139cp$`),
		regexp.MustCompile(`^etoile: network .* ip=10.0.2.15 links=eth0$`),
		regexp.MustCompile(`^etoile: modules-load.d files=/etc/modules-load.d/qa.conf modules=tcp_bbr$`),
	} {
		if !slices.ContainsFunc(vm.Lines(), func(l Line) bool { return re.MatchString(l.Text) }) {
			t.Errorf("console lacks a line matching %s", re)
		}
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "etoile: warning") {
			t.Errorf("warning on the console: %s", l.Text)
		}
	}
}
