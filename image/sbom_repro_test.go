package image

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image/k3s"
)

// checkout makes an overlay folder at dir/rel as a checkout under umask
// does: a folder etc with a file motd and a program bin/tool.
func checkout(t *testing.T, dir, rel string, umask os.FileMode) {
	t.Helper()
	root := filepath.Join(dir, rel)
	for _, d := range []string{root, filepath.Join(root, "etc"), filepath.Join(root, "bin")} {
		if err := os.MkdirAll(d, 0o777&^umask); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777&^umask); err != nil {
			t.Fatal(err)
		}
	}
	for p, mode := range map[string]os.FileMode{"etc/motd": 0o666, "bin/tool": 0o777} {
		full := filepath.Join(root, p)
		if err := os.WriteFile(full, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode&^umask); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("motd", filepath.Join(root, "etc", "issue")); err != nil {
		t.Fatal(err)
	}
}

// TestSBOMSameForAnyCheckout: the same overlay, checked out under another
// umask (an Ubuntu user's 002, CI's 022, a hardened 077) or into a folder
// of another name (overlays: ["."]), gives the same image and so the same
// SBOM, and SHA256SUMS, which lists it: the reproducibility the README
// claims. A change the image does show (a file made executable) changes
// the overlay's checksum.
func TestSBOMSameForAnyCheckout(t *testing.T) {
	f := newSPDXFixture(t, "")
	var first []byte
	for _, tc := range []struct {
		folder string
		umask  os.FileMode
	}{{"ci-build-1234", 0o022}, {"alice-checkout", 0o002}, {"hardened", 0o077}} {
		for _, overlay := range []string{"site", "."} {
			dir := filepath.Join(t.TempDir(), tc.folder)
			checkout(t, dir, overlay, tc.umask)
			f.b.Spec.dir, f.b.Spec.Overlays = dir, []string{overlay}
			data := f.sbom(t)
			if strings.Contains(string(data), tc.folder) {
				t.Errorf("overlays: [%q] in a folder named %s: the SBOM names the folder", overlay, tc.folder)
			}
			if overlay == "site" {
				if first == nil {
					first = data
				} else if string(data) != string(first) {
					t.Errorf("overlay checked out under umask %03o: the SBOM differs from the one under umask 022", tc.umask)
				}
				continue
			}
			var doc spdxDoc
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			if p := findPackage(doc, "overlays[0]"); p == nil || p.SPDXID != "SPDXRef-overlay-overlays-0" {
				t.Errorf("overlays: [\".\"]: no package overlays[0] (SPDXRef-overlay-overlays-0): %+v", p)
			}
		}
	}
	var doc spdxDoc
	if err := json.Unmarshal(first, &doc); err != nil {
		t.Fatal(err)
	}
	before := findPackage(doc, "site")
	if before == nil {
		t.Fatal("no package site for overlays: [site]")
	}
	dir := t.TempDir()
	checkout(t, dir, "site", 0o022)
	if err := os.Chmod(filepath.Join(dir, "site", "etc", "motd"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.b.Spec.dir, f.b.Spec.Overlays = dir, []string{"site"}
	var changed spdxDoc
	if err := json.Unmarshal(f.sbom(t), &changed); err != nil {
		t.Fatal(err)
	}
	if after := findPackage(changed, "site"); after == nil || after.Checksums[0].Value == before.Checksums[0].Value {
		t.Errorf("a file made executable (0755 in the image) does not change the overlay's checksum")
	}
}

// TestSBOMSiteArchiveWithoutK3sArchive: with k3s.source oci and no
// k3s.airgapTarball the only archive is the site's (k3s.airgapImages): it
// is not presented as K3s's own, with K3s's version.
func TestSBOMSiteArchiveWithoutK3sArchive(t *testing.T) {
	f := newSPDXFixture(t, "")
	site := filepath.Join(f.b.Spec.dir, "apps", "site-apps.tar.zst")
	f.b.Spec.K3s = K3sSpec{Source: K3sOCI, AirgapImages: []string{"apps/site-apps.tar.zst"}}
	for _, own := range [][]string{nil, {"/cache/k3s-airgap-images-amd64.tar.zst"}} {
		f.k3s = &k3s.Artifacts{Version: "v1.34.9+k3s1", Source: "oci docker.io/rancher/k3s@sha256:" + hex64("9"), BinarySHA256: hex64("1"),
			DownloadLocation: noAssertion, AirgapImages: append(own, site), AirgapSHA256: map[string]string{site: hex64("3")}}
		for _, p := range own {
			f.k3s.AirgapSHA256[p] = hex64("2")
		}
		var doc spdxDoc
		if err := json.Unmarshal(f.sbom(t), &doc); err != nil {
			t.Fatal(err)
		}
		p := findPackage(doc, "site-apps.tar.zst")
		if p == nil || p.VersionInfo != "" || !strings.Contains(p.Comment, "the site's container image archive (k3s.airgapImages)") {
			t.Errorf("K3s's archives %v: the site's archive is %+v, want no version and a comment naming k3s.airgapImages", own, p)
		}
		if len(own) > 0 {
			if p := findPackage(doc, "k3s-airgap-images-amd64.tar.zst"); p == nil || p.VersionInfo != "v1.34.9+k3s1" || !strings.Contains(p.Comment, "K3s's container image archive") {
				t.Errorf("K3s's own archive: %+v, want K3s's version", p)
			}
		}
	}
}
