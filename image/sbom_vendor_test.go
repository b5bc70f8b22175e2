package image

import (
	"encoding/json"
	"testing"

	"github.com/etoile-os/etoile/image/debian"
)

// TestSBOMUbuntuPackages: an Ubuntu build machine's kernel, bootloaders and
// CA certificates come from Ubuntu's archive: the SBOM names them as
// Ubuntu's (pkg:deb/ubuntu/…, supplied by Canonical), for scanners that
// match them against Ubuntu's advisories, not Debian's. Debian's stay
// Debian's.
func TestSBOMUbuntuPackages(t *testing.T) {
	f := newSPDXFixture(t, "")
	f.kernel.Version = "6.8.0-51-generic"
	f.kernel.Packages = []*debian.Package{{Name: "linux-image-6.8.0-51-generic", Version: "6.8.0-51.52", Architecture: "amd64", SHA256: hex64("a"), Vendor: debian.VendorUbuntu}}
	f.boot = []*debian.Package{{Name: "systemd-boot-efi", Version: "255.4-1ubuntu8", Architecture: "amd64", SHA256: hex64("b"), Vendor: debian.VendorUbuntu}}
	f.ca = &debian.Package{Name: "ca-certificates", Version: "20240203", Architecture: "all", SHA256: hex64("e"), Vendor: debian.VendorDebian}
	var doc spdxDoc
	if err := json.Unmarshal(f.sbom(t), &doc); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]string{
		"linux-image-6.8.0-51-generic": {"Organization: Canonical Ltd.", "pkg:deb/ubuntu/linux-image-6.8.0-51-generic@6.8.0-51.52?arch=amd64"},
		"systemd-boot-efi":             {"Organization: Canonical Ltd.", "pkg:deb/ubuntu/systemd-boot-efi@255.4-1ubuntu8?arch=amd64"},
		"ca-certificates":              {"Organization: Debian", "pkg:deb/debian/ca-certificates@20240203?arch=all"},
	} {
		p := findPackage(doc, name)
		if p == nil || len(p.ExternalRefs) != 1 {
			t.Errorf("%s: %+v", name, p)
			continue
		}
		if p.Supplier != want[0] || p.ExternalRefs[0].Locator != want[1] {
			t.Errorf("%s: supplier %q, purl %q; want %q, %q", name, p.Supplier, p.ExternalRefs[0].Locator, want[0], want[1])
		}
	}
	readSPDX(t, f.sbom(t)) // an SPDX reader takes it
}
