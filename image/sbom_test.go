package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/image/debian"

	"github.com/etoile-os/etoile/image/k3s"
	"github.com/etoile-os/etoile/image/kernel"
)

// TestSBOMK3sAndAirgap: K3s is named with its version and the binary's
// SHA-256, K3s's airgap archive with K3s's version, the site's archive
// without one (the build does not know it), each with its checksum.
func TestSBOMK3sAndAirgap(t *testing.T) {
	exe, err := os.Executable() // any Go binary stands for the agent's build information
	if err != nil {
		t.Fatal(err)
	}
	b := &Builder{Spec: &ImageSpec{Arch: "amd64", K3s: K3sSpec{AirgapImages: []string{"/site/site-apps.tar.zst"}}},
		AgentPath: exe, Tool: ToolInfo{Version: "v0.1.0", Commit: "abc"}}
	art := &k3s.Artifacts{Version: "v1.34.9+k3s1", Source: "dir /k3s", BinarySHA256: "11",
		AirgapImages: []string{"/k3s/k3s-airgap-images-amd64.tar.zst", "/site/site-apps.tar.zst"},
		AirgapSHA256: map[string]string{"/k3s/k3s-airgap-images-amd64.tar.zst": "22", "/site/site-apps.tar.zst": "33"}}
	data, err := b.sbom("v0.1.0", &kernel.Kernel{Version: "6.1.0-56-amd64"}, nil, nil, art, nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{ // name → version, SHA-256
		"k3s":                             {"v1.34.9+k3s1", "11"},
		"k3s-airgap-images-amd64.tar.zst": {"v1.34.9+k3s1", "22"},
		"site-apps.tar.zst":               {"", "33"},
	}
	for _, p := range doc.Packages {
		w, ok := want[p.Name]
		if !ok {
			continue
		}
		delete(want, p.Name)
		if p.VersionInfo != w[0] || len(p.Checksums) != 1 || p.Checksums[0].Value != w[1] {
			t.Errorf("%s: version %q checksums %+v, want %q and SHA256 %s", p.Name, p.VersionInfo, p.Checksums, w[0], w[1])
		}
	}
	if len(want) > 0 {
		t.Errorf("SBOM lacks %v", want)
	}
}

// sbomDoc makes b's SBOM (with no kernel package, boot packages but those
// given, no K3s) and decodes it.
func sbomDoc(t *testing.T, b *Builder, boot ...*debian.Package) spdxDoc {
	t.Helper()
	data, err := b.sbom("v0.1.0", &kernel.Kernel{Version: "6.1.0-56-amd64"}, boot, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func findPackage(doc spdxDoc, name string) *spdxPackage {
	for i := range doc.Packages {
		if doc.Packages[i].Name == name {
			return &doc.Packages[i]
		}
	}
	return nil
}

// TestSBOMNamesExtensionsAndOverlays: what a spec adds to the system image
// (an extension's folder or squashfs layer, a site overlay) is in the SBOM
// with a checksum of its content, which changes with it.
func TestSBOMNamesExtensionsAndOverlays(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fakeroot.Write(t, dir, map[string]string{"site/etc/motd": "hello", "vendor/usr/bin/vendor-tool": "v1", "nvidia.sqfs": "layer bytes"})
	spec := &ImageSpec{Arch: "amd64", Overlays: []string{"site"}, dir: dir,
		Extensions: []Extension{{Name: "vendor", Dir: "vendor"}, {Name: "nvidia", Squashfs: "nvidia.sqfs"}}}
	b := &Builder{Spec: spec, AgentPath: exe, Tool: ToolInfo{Version: "v0.1.0", Commit: "abc1234"}}
	doc := sbomDoc(t, b)
	sum := sha256.Sum256([]byte("layer bytes"))
	for name, check := range map[string]func(p *spdxPackage) bool{
		"vendor": func(p *spdxPackage) bool { return len(p.Checksums) == 1 && len(p.Checksums[0].Value) == 64 },
		"nvidia": func(p *spdxPackage) bool {
			return len(p.Checksums) == 1 && p.Checksums[0].Value == hex.EncodeToString(sum[:])
		},
		"site": func(p *spdxPackage) bool { return len(p.Checksums) == 1 && strings.Contains(p.Comment, "overlays[0]") },
	} {
		p := findPackage(doc, name)
		if p == nil || !check(p) {
			t.Errorf("package %s: %+v", name, p)
			continue
		}
		if !slices.Contains(doc.Relationships, spdxRelationship{"SPDXRef-etoile", "CONTAINS", p.SPDXID}) {
			t.Errorf("the image does not CONTAIN %s", p.SPDXID)
		}
	}
	before := findPackage(doc, "vendor").Checksums[0].Value
	fakeroot.Write(t, dir, map[string]string{"vendor/usr/bin/vendor-tool": "v2"})
	if after := findPackage(sbomDoc(t, b), "vendor").Checksums[0].Value; after == before {
		t.Error("the extension folder's checksum did not change with its content")
	}
}

// TestSBOMPackageURLs: versions with + (Debian's +deb12u1, Go's
// +incompatible) are percent-encoded in package URLs, and the Go standard
// library is a package of its own.
func TestSBOMPackageURLs(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := &Builder{Spec: &ImageSpec{Arch: "amd64"}, AgentPath: exe, Tool: ToolInfo{Version: "v0.1.0", Commit: "abc1234"}}
	doc := sbomDoc(t, b, &debian.Package{Name: "ca-certificates", Version: "20230311+deb12u1", Architecture: "all", SHA256: strings.Repeat("0", 64)},
		&debian.Package{Name: "systemd-boot-efi", Version: "1:252.39-1~deb12u1", Architecture: "amd64", SHA256: strings.Repeat("1", 64)})
	purl := func(name string) string {
		if p := findPackage(doc, name); p != nil && len(p.ExternalRefs) == 1 {
			return p.ExternalRefs[0].Locator
		}
		return ""
	}
	if got := purl("ca-certificates"); got != "pkg:deb/debian/ca-certificates@20230311%2Bdeb12u1?arch=all" {
		t.Errorf("ca-certificates purl = %q", got)
	}
	if got := purl("systemd-boot-efi"); got != "pkg:deb/debian/systemd-boot-efi@1:252.39-1~deb12u1?arch=amd64" {
		t.Errorf("systemd-boot-efi purl = %q", got)
	}
	if got := goPURL("github.com/a/b", "v2.0.0+incompatible"); got != "pkg:golang/github.com/a/b@v2.0.0%2Bincompatible" {
		t.Errorf("go purl = %q", got)
	}
	goVer := strings.TrimPrefix(runtime.Version(), "go")
	if got := purl("stdlib"); got != "pkg:golang/stdlib@"+goVer {
		t.Errorf("stdlib purl = %q, want pkg:golang/stdlib@%s", got, goVer)
	}
	if p := findPackage(doc, "etoile"); p == nil || p.DownloadLocation != "git+https://github.com/etoile-os/etoile@abc1234" {
		t.Errorf("etoile's download location: %+v", p)
	}
}

// TestSBOMIDsAreUnique: archive names an SPDX id cannot tell apart
// (a_b.tar, a-b.tar) get ids of their own, and every relationship names an
// element of the document.
func TestSBOMIDsAreUnique(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := &Builder{Spec: &ImageSpec{Arch: "amd64"}, AgentPath: exe, Tool: ToolInfo{Version: "v0.1.0", Commit: "abc"}}
	art := &k3s.Artifacts{Version: "v1.34.9+k3s1", Source: "dir /k3s", BinarySHA256: "11",
		AirgapImages: []string{"/k3s/a_b.tar", "/site/a-b.tar"}, AirgapSHA256: map[string]string{"/k3s/a_b.tar": "22", "/site/a-b.tar": "33"}}
	data, err := b.sbom("v0.1.0", &kernel.Kernel{Version: "6.1.0-56-amd64"}, nil, nil, art, []Artifact{{Name: "etoile-amd64.iso", SHA256: "44"}})
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{"SPDXRef-DOCUMENT": true}
	for _, p := range doc.Packages {
		if ids[p.SPDXID] {
			t.Errorf("id %s is used twice", p.SPDXID)
		}
		ids[p.SPDXID] = true
	}
	for _, r := range doc.Relationships {
		if !ids[r.Element] || !ids[r.Related] {
			t.Errorf("relationship %+v names an element the document lacks", r)
		}
	}
}

// TestSBOMAgentSaysItsOwnVersion: the agent's package carries the version
// and commit the agent was built with (its own `version`), not this tool's
// — an agent from another build (--agent) is not mislabelled.
func TestSBOMAgentSaysItsOwnVersion(t *testing.T) {
	agent := buildAgent(t, "-X github.com/etoile-os/etoile/agent.Version=v9.9.9 -X github.com/etoile-os/etoile/agent.Commit=0123456789abcdef")
	b := &Builder{Spec: &ImageSpec{Arch: runtime.GOARCH}, AgentPath: agent, Tool: ToolInfo{Version: "v0.1.0", Commit: "abc1234"}}
	if _, ok := ArchInfo(runtime.GOARCH); !ok {
		t.Fatalf("this machine's architecture %s is not one Étoile builds for", runtime.GOARCH)
	}
	p := findPackage(sbomDoc(t, b), "etoile-agent")
	if p == nil || p.VersionInfo != "v9.9.9" || !strings.Contains(p.Comment, "commit 0123456789abcdef") ||
		p.DownloadLocation != "git+https://github.com/etoile-os/etoile@0123456789abcdef" {
		t.Errorf("the agent's package: %+v", p)
	}
}
