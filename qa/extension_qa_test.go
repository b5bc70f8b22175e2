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
	"time"

	"github.com/etoile-os/etoile/image"
	"github.com/etoile-os/etoile/image/kernel"
)

// TestExtensionModuleDrivesNIC builds an image whose extension carries a
// kernel module the initramfs does not hold — the driver of QEMU's Realtek
// RTL8139C+ NIC (8139cp), taken from the image's own kernel package as a
// stand-in for an out-of-tree driver such as NVIDIA's — and a
// modules-load.d file naming tcp_bbr, and boots its raw disk under OVMF with
// that NIC and a virtio one. The build indexes 8139cp with the initramfs's
// modules (and adds its dependency mii from the kernel package when the
// initramfs lacks it; the default image has it for r8152); the agent
// lays the image's modules over the initramfs's, loads 8139cp for the NIC
// once the system image is mounted, the NIC gets its DHCP lease, the
// generated host name comes from its MAC (the lower one), and tcp_bbr loads
// after the ready line. The extension also carries nvidia-container-runtime
// and the image the K3s stand-in with a server config: the agent finds the
// runtime where K3s will (its PATH in the booted system) before starting it.
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
	// NVIDIA's container runtime, as a GPU image's extension carries it (a stand-in file: K3s only
	// looks for an executable of that name on its PATH).
	if err := os.MkdirAll(filepath.Join(ext, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ext, "usr/bin/nvidia-container-runtime"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(ext, "etc/modules-load.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ext, "etc/modules-load.d/qa.conf"), []byte("# a site's congestion control\ntcp_bbr\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A site's own workload images (here a copy of the stand-in release's image archive, a real OCI
	// archive) go where K3s imports them at start.
	k3sDir := filepath.Join(filepath.Dir(standinOut(t)), "k3s-standin") // make image-standin made both
	siteImages := filepath.Join(dir, "site-app.tar.zst")
	if data, err := os.ReadFile(filepath.Join(k3sDir, "k3s-airgap-images-amd64.tar.zst")); err != nil {
		t.Fatalf("no K3s stand-in release folder at %s: run `make k3s-standin` (%v)", k3sDir, err)
	} else if err := os.WriteFile(siteImages, data, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := string(image.DefaultSpecYAML())
	for old, new := range map[string]string{
		"  source: release\n": "  source: release\n  airgapImages: [" + siteImages + "]\n",
		"extensions: []":      "extensions:\n  - {name: qa-nic, dir: " + ext + "}",
		"  - iso\n":           "", // the raw disk boots; netboot's system image is read by unsquashfs
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
	// The K3s stand-in (a test double, not K3s) and a server config baked in: K3s is started with the
	// extension's files on its PATH.
	if _, err := os.Stat(filepath.Join(k3sDir, "k3s")); err != nil {
		t.Fatalf("no K3s stand-in release folder at %s: run `make k3s-standin`", k3sDir)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(serverConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	cmd := exec.Command(filepath.Join(bin, "etoile"), "build", "-f", specPath, "-o", out, "--agent", filepath.Join(bin, "etoile-agent"),
		"--k3s-dir", k3sDir, "--config", cfg)
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
	// The site's archive is in the system image, linked where K3s imports archives from.
	list := runTool(t, "", tool(t, UnsquashfsTool), "-lls", filepath.Join(out, SystemName))
	for _, re := range []string{
		`(?m)^-rw-r--r-- root/root .* squashfs-root/usr/lib/etoile/k3s/images/site-app\.tar\.zst$`,
		`(?m)^lrwxrwxrwx root/root .* squashfs-root/var/lib/rancher/k3s/agent/images/site-app\.tar\.zst -> /usr/lib/etoile/k3s/images/site-app\.tar\.zst$`,
	} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("the system image lacks the site's airgap archive: no line matching %s", re)
		}
	}
	if sbom, err := os.ReadFile(filepath.Join(out, SPDXName)); err != nil || !strings.Contains(string(sbom), "site-app.tar.zst") {
		t.Errorf("the SBOM does not name the site's airgap archive (%v)", err)
	}

	// Two NICs: a virtio one, driven from the initramfs, and the RTL8139 with the lower MAC, driven only
	// by the extension's module. The generated host name comes from the lowest MAC of the machine's NICs,
	// whatever driver each needs and whenever it loads: it is the K3s node's name, the same on every boot.
	vm := Start(t, Config{Devices: []Device{OVMF{}, VirtioDisk{Path: filepath.Join(out, RawName)},
		UserNIC{MAC: "52:54:00:12:34:57"}, UserNIC{ID: "net1", Model: "rtl8139", MAC: "52:54:00:12:34:01"}}})
	ready := vm.WaitFor(regexp.MustCompile(`^etoile: ready `), ReadyTimeout)
	if !strings.Contains(ready.Line, " ip=10.0.2.15") {
		t.Errorf("no lease: %s", ready.Line)
	}
	// Both NICs' leases, tcp_bbr loaded after the ready line and K3s (the stand-in) ready, in whatever
	// order they come.
	leaseRe := regexp.MustCompile(`^etoile: dhcp lease iface=(\S+) addr=10\.0\.2\.15/`)
	lateRe := regexp.MustCompile(`^etoile: step=late-modules .*modules=.*\btcp_bbr\b`)
	waitConsole(t, vm, ReadyTimeout+K3sTimeout, "both NICs' leases (the RTL8139's through the extension's driver), tcp_bbr's load and K3s ready",
		func(lines []Line) bool {
			ifaces := map[string]bool{}
			late, k3s := false, false
			for _, l := range lines {
				if m := leaseRe.FindStringSubmatch(l.Text); m != nil {
					ifaces[m[1]] = true
				}
				late = late || lateRe.MatchString(l.Text)
				k3s = k3s || k3sReadyRE.MatchString(l.Text)
			}
			return len(ifaces) == 2 && late && k3s
		})
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`^etoile: kernel modules of the system image added index=/lib/modules/\S+ modules=8139cp,(mii,)?tcp_bbr$`),
		regexp.MustCompile(`^etoile: drivers loaded from the system image's modules modules=(mii,)?8139cp$`),
		regexp.MustCompile(`^etoile: network hostname=etoile-123401 ip=10.0.2.15 links=\S+$`),
		regexp.MustCompile(`^etoile: modules-load.d files=/etc/modules-load.d/qa.conf modules=tcp_bbr$`),
		regexp.MustCompile(`^etoile: container runtimes K3s adds to its containerd \(runtimeClassName\) runtimes="nvidia=/usr/bin/nvidia-container-runtime"$`),
	} {
		if !slices.ContainsFunc(vm.Lines(), func(l Line) bool { return re.MatchString(l.Text) }) {
			t.Errorf("console lacks a line matching %s", re)
		}
	}
	for _, l := range vm.Lines() {
		// (QEMU's user network reaches no NTP server: that warning comes ~90 s after the boot on a slow machine.)
		if strings.Contains(l.Text, "etoile: warning") && !strings.Contains(l.Text, "no NTP server answered") {
			t.Errorf("warning on the console: %s", l.Text)
		}
	}
}

// waitConsole waits until cond holds for the console's lines so far, in
// whatever order they came (timeout scaled as every wait is).
func waitConsole(t *testing.T, vm *VM, timeout time.Duration, what string, cond func([]Line) bool) {
	t.Helper()
	timeout = Scale(t, timeout)
	for deadline := time.Now().Add(timeout); !cond(vm.Lines()); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not seen within %s: %s", timeout, what)
		}
	}
}
