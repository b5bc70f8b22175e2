package image

import (
	"encoding/json"
	"os"
	"testing"

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
	b := &Builder{Spec: &ImageSpec{Arch: "amd64"}, AgentPath: exe, Tool: ToolInfo{Version: "v0.1.0", Commit: "abc"}}
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
