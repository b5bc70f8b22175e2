package debian

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestFetchSaysWhoseArchive: a package fetched on an Ubuntu build machine
// (or a derivative: ID_LIKE ubuntu) is Ubuntu's, even one Ubuntu took
// unchanged from Debian (its control file names Debian's maintainers); one
// whose control file names Ubuntu's maintainers is Ubuntu's on any
// machine; the rest, on a Debian machine, is Debian's. The SBOM's package
// URLs and suppliers follow.
func TestFetchSaysWhoseArchive(t *testing.T) {
	defer func(p string) { osRelease = p }(osRelease)
	for _, tc := range []struct {
		osRelease, maintainer, want string
	}{
		{"PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n", "Debian Kernel Team <debian-kernel@lists.debian.org>", VendorDebian},
		{"NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n", "Ubuntu Kernel Team <kernel-team@lists.ubuntu.com>", VendorUbuntu},
		{"NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n", "Debian X509 Maintainers <debian-x509@lists.debian.org>", VendorUbuntu},
		{"ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", "Debian X509 Maintainers <debian-x509@lists.debian.org>", VendorUbuntu},
		{"ID=debian\n", "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>", VendorUbuntu},
	} {
		osRelease = filepath.Join(t.TempDir(), "os-release")
		if err := os.WriteFile(osRelease, []byte(tc.osRelease), 0o644); err != nil {
			t.Fatal(err)
		}
		// The package is in the cache, verified, as apt names it.
		deb := buildDeb(t, t.TempDir(), "Package: etoile-test\nVersion: 1.0\nArchitecture: amd64\nMaintainer: "+tc.maintainer+"\nDescription: a test\n", "gz", testData)
		p, err := ReadPackage(deb)
		if err != nil {
			t.Fatal(err)
		}
		cache := t.TempDir()
		const file = "etoile-test_1.0_amd64.deb"
		if err := os.Rename(deb, filepath.Join(cache, file)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sidecarPath(filepath.Join(cache, file)), []byte(p.SHA256+"  "+file+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		apt := fakeApt(t, fmt.Sprintf("'http://archive.example/pool/main/e/etoile-test/%s' %s 100 SHA256:%s", file, file, p.SHA256))
		f := &Fetcher{CacheDir: cache, AptGet: apt, Architecture: "amd64"}
		got, err := f.Fetch(context.Background(), "etoile-test")
		if err != nil {
			t.Fatal(err)
		}
		if got.Vendor != tc.want {
			t.Errorf("os-release %q, Maintainer %q: vendor %q, want %q", tc.osRelease, tc.maintainer, got.Vendor, tc.want)
		}
	}
}
