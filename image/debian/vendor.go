package debian

import (
	"os"
	"slices"
	"strings"
)

// The distributions whose archives the host's apt fetches from, as package
// URLs name them (pkg:deb/debian/…, pkg:deb/ubuntu/…).
const (
	VendorDebian = "debian"
	VendorUbuntu = "ubuntu"
)

// osRelease is the build machine's os-release file; tests replace it.
var osRelease = "/etc/os-release"

// HostIsUbuntu reads the os-release file at path: Ubuntu or a distribution
// built on it (ID or ID_LIKE names ubuntu), whose apt fetches Ubuntu's
// packages.
func HostIsUbuntu(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || (k != "ID" && k != "ID_LIKE") {
			continue
		}
		if slices.Contains(strings.Fields(strings.Trim(v, `"'`)), "ubuntu") {
			return true
		}
	}
	return false
}

// vendorOf says whose archive p comes from. Ubuntu's when the host's apt is
// Ubuntu's: its archive also serves, built by Ubuntu, the packages it takes
// unchanged from Debian, whose control files still name Debian's
// maintainers, so the control file alone cannot tell. Ubuntu's too when
// the control file names Ubuntu's maintainers (a package Ubuntu changed
// always does), as in an Ubuntu .deb copied into the cache by hand.
// Debian's otherwise.
func vendorOf(p *Package) string {
	m := strings.ToLower(p.Maintainer)
	if strings.Contains(m, "ubuntu.com>") || strings.Contains(m, "canonical.com>") || HostIsUbuntu(osRelease) {
		return VendorUbuntu
	}
	return VendorDebian
}
