package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image"
	"github.com/etoile-os/etoile/image/k3s"
)

// mediaTools are the tools that write ISO9660, FAT, GPT and squashfs, which
// issue 2 says a build never needs (Go writes them all): mkisofs/xorriso,
// mtools, mkfs.fat, sgdisk, mksquashfs, with the other names Debian
// installs them under.
var mediaTools = []string{"xorriso", "mkisofs", "genisoimage", "mksquashfs", "mcopy", "mformat", "mkfs.fat", "mkfs.vfat", "mkdosfs", "sgdisk"}

// TestOfflineBuildWithoutMediaTools runs `etoile build` of the default spec
// (k3s.source: release) as a user would, with K3s's release server out of
// reach (HTTPS through a proxy that refuses connections: what an offline
// machine sees, and nothing leaves this one) and every media-writing tool
// on PATH replaced by one that fails and leaves a mark:
//   - without --k3s-dir the build fails, naming the URL it could not
//     download and the --k3s-dir way, and leaves no output folder;
//   - with --k3s-optional it builds every output, says loudly the image
//     has NO K3s, and neither the system image nor the SBOM holds K3s;
//   - no media tool was run by either.
//
// Debian's kernel and boot loader packages come from the product's cache
// (make test builds the image first), through apt-get as in any build.
func TestOfflineBuildWithoutMediaTools(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Fatalf("apt-get not found: this test needs the Debian package \"apt\" with a configured sources list")
	}
	unsquashfs, err := exec.LookPath("unsquashfs")
	if err != nil {
		t.Fatalf("unsquashfs not found: install the Debian package \"squashfs-tools\" (apt-get install -y squashfs-tools)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	for _, b := range []struct{ out, pkg, cgo string }{{"etoile", ".", ""}, {"etoile-agent", "../etoile-agent", "CGO_ENABLED=0"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Env = os.Environ()
		if b.cgo != "" { // the agent is static, as make build makes it
			cmd.Env = append(cmd.Env, b.cgo)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}

	// The product's cache for the Debian packages and the unpacked kernel;
	// a cache of its own for K3s, so that no release cached there by an
	// earlier build (with network) is used instead of the download.
	shared, err := image.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"debs", "kernels"} {
		if err := os.MkdirAll(filepath.Join(shared, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(shared, sub), filepath.Join(cache, sub)); err != nil {
			t.Fatal(err)
		}
	}

	shims, marker := filepath.Join(dir, "shims"), filepath.Join(dir, "media-tool-ran")
	if err := os.Mkdir(shims, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range mediaTools {
		script := "#!/bin/sh\necho \"$0 $*\" >> '" + marker + "'\nexit 1\n"
		if err := os.WriteFile(filepath.Join(shims, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A port nothing listens on: the proxy refuses, as a network that is down does.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := "http://" + l.Addr().String()
	l.Close()
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "PATH", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ETOILE_K3S_DIR", "SOURCE_DATE_EPOCH":
		default:
			env = append(env, kv)
		}
	}
	// Go reads the upper-case names first; NO_PROXY set (to nothing that
	// matters) so that a no_proxy of the host's does not let github.com by.
	env = append(env, "PATH="+shims+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HTTPS_PROXY="+proxy, "HTTP_PROXY="+proxy, "NO_PROXY=nothing.invalid", "SOURCE_DATE_EPOCH=1700000000")

	etoile := func(args ...string) (string, string, error) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "etoile"), append([]string{"build", "--cache", cache, "--agent", filepath.Join(bin, "etoile-agent")}, args...)...)
		cmd.Env, cmd.Dir = env, dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	sumURL := k3s.DefaultBaseURL + "/" + strings.ReplaceAll(k3s.DefaultVersion, "+", "%2B") + "/" + k3s.ChecksumName

	t.Run("strict", func(t *testing.T) {
		out := filepath.Join(dir, "out-strict")
		_, stderr, err := etoile("-o", out)
		if err == nil {
			t.Fatalf("etoile build succeeded with K3s's release server out of reach:\n%s", stderr)
		}
		for _, w := range []string{"k3s", sumURL, "--k3s-dir DIR", "ETOILE_K3S_DIR"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("the error does not say %q:\n%s", w, stderr)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("the failed build left %s", out)
		}
	})

	t.Run("k3s-optional", func(t *testing.T) {
		out := filepath.Join(dir, "out")
		stdout, stderr, err := etoile("-o", out, "--k3s-optional")
		if err != nil {
			t.Fatalf("etoile build --k3s-optional: %v\n%s\n%s", err, stdout, stderr)
		}
		for _, w := range []string{"WARNING: this image has NO K3s: ", sumURL, "To include it offline: etoile build --k3s-dir DIR"} {
			if !strings.Contains(stdout, w) {
				t.Errorf("the build's summary does not say %q:\n%s", w, stdout)
			}
		}
		if strings.Contains(stdout, "is in the system image") {
			t.Errorf("the summary says K3s is in the image:\n%s", stdout)
		}
		for _, f := range []string{"etoile-amd64.iso", "etoile-amd64.raw", "etoile-amd64-vmlinuz", "etoile-amd64-initramfs.img",
			"etoile-amd64-system.sqfs", "SHA256SUMS", "etoile-amd64.spdx.json"} {
			if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
				t.Errorf("output %s: %v", f, err)
			}
		}

		listing, err := exec.Command(unsquashfs, "-l", "-d", "", filepath.Join(out, "etoile-amd64-system.sqfs")).Output()
		if err != nil {
			t.Fatalf("unsquashfs -l: %v", err)
		}
		entries := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(string(listing)), "\n") {
			entries["/"+strings.TrimPrefix(strings.TrimPrefix(l, "squashfs-root"), "/")] = true
		}
		if !entries["/etc"] || !entries[k3s.ImageAirgapDir] {
			t.Fatalf("unsquashfs -l does not list /etc and %s (from the overlay):\n%s", k3s.ImageAirgapDir, listing)
		}
		k3sFiles := []string{k3s.ImageBinaryPath}
		for _, n := range k3s.ImageLinks {
			k3sFiles = append(k3sFiles, path.Join(path.Dir(k3s.ImageBinaryPath), n))
		}
		for _, p := range k3sFiles {
			if entries[p] {
				t.Errorf("the system image holds %s", p)
			}
		}
		for p := range entries {
			if strings.HasPrefix(p, k3s.ImageAirgapDir+"/") || strings.HasPrefix(p, "/usr/lib/etoile/k3s") {
				t.Errorf("the system image holds %s", p)
			}
		}

		data, err := os.ReadFile(filepath.Join(out, "etoile-amd64.spdx.json"))
		if err != nil {
			t.Fatal(err)
		}
		var sbom struct {
			Packages []struct {
				Name string `json:"name"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(data, &sbom); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range sbom.Packages {
			names = append(names, p.Name)
		}
		if len(names) == 0 || !strings.Contains(strings.Join(names, " "), "linux-image-") {
			t.Fatalf("the SBOM lists no kernel package: %q", names)
		}
		for _, n := range names {
			if strings.Contains(strings.ToLower(n), "k3s") {
				t.Errorf("the SBOM lists package %q in an image without K3s", n)
			}
		}
	})

	if ran, err := os.ReadFile(marker); err == nil {
		t.Errorf("the build ran media tools it must not need:\n%s", ran)
	}
}
