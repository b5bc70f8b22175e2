package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/image/debian"
	"github.com/etoile-os/etoile/image/k3s"
	"github.com/etoile-os/etoile/image/kernel"

	"github.com/github/go-spdx/v2/spdxexp"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"
	"github.com/spdx/tools-golang/spdxlib"
	"github.com/spdx/tools-golang/tagvalue"
)

// The SBOM is checked here by an SPDX implementation that is not ours
// (github.com/spdx/tools-golang reads it; github.com/github/go-spdx judges
// its license expressions), and against the clauses of SPDX 2.3 that
// neither enforces. https://spdx.github.io/spdx-spec/v2.3/

func hex64(c string) string { return strings.Repeat(c, 64) }

// spdxFixture is what a default build with K3s from a release describes:
// a kernel and bootloader packages from Debian, the CA bundle, K3s with its
// airgap archive and a site archive, a site overlay, every output.
type spdxFixture struct {
	b      *Builder
	kernel *kernel.Kernel
	boot   []*debian.Package
	ca     *debian.Package
	k3s    *k3s.Artifacts
	arts   []Artifact
}

// newSPDXFixture describes an image whose agent is the binary at agent,
// or, where agent is "", this test binary (whose build information names
// no modules).
func newSPDXFixture(t *testing.T, agent string) *spdxFixture {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if agent != "" {
		exe = agent
	}
	dir := t.TempDir()
	fakeroot.Write(t, dir, map[string]string{"site/etc/motd": "hello"})
	b := &Builder{Spec: &ImageSpec{Arch: "amd64", Overlays: []string{"site"}, dir: dir,
		K3s: K3sSpec{AirgapImages: []string{"/site/site-apps.tar.zst"}}}, AgentPath: exe, Epoch: 1767225600,
		Tool: ToolInfo{Version: "v0.1.0", Commit: "0123456789abcdef0123456789abcdef01234567"}}
	deb := func(name, version, arch, sum string) *debian.Package {
		return &debian.Package{Name: name, Version: version, Architecture: arch, SHA256: hex64(sum)}
	}
	return &spdxFixture{
		b: b,
		kernel: &kernel.Kernel{Version: "6.12.48+deb13-amd64",
			Packages: []*debian.Package{deb("linux-image-6.12.48+deb13-amd64", "6.12.48-1", "amd64", "a")}},
		boot: []*debian.Package{deb("systemd-boot-efi", "1:257.8-1~deb13u2", "amd64", "b"),
			deb("isolinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3.1", "all", "c"),
			deb("syslinux-common", "3:6.04~git20190206.bf6db5b4+dfsg1-3.1", "all", "d")},
		ca: deb("ca-certificates", "20250419", "all", "e"),
		k3s: &k3s.Artifacts{Version: "v1.34.9+k3s1", Source: "release", BinarySHA256: hex64("1"),
			DownloadLocation: "https://github.com/k3s-io/k3s/releases/download/v1.34.9%2Bk3s1/k3s",
			PURL:             "pkg:github/k3s-io/k3s@v1.34.9%2Bk3s1",
			AirgapImages:     []string{"/k3s/k3s-airgap-images-amd64.tar.zst", "/site/site-apps.tar.zst"},
			AirgapSHA256:     map[string]string{"/k3s/k3s-airgap-images-amd64.tar.zst": hex64("2"), "/site/site-apps.tar.zst": hex64("3")}},
		arts: []Artifact{{Name: "etoile-amd64-initramfs.img", SHA256: hex64("4")}, {Name: "etoile-amd64-system.sqfs", SHA256: hex64("5")},
			{Name: "etoile-amd64-vmlinuz", SHA256: hex64("6")}, {Name: "etoile-amd64.iso", SHA256: hex64("7")}, {Name: "etoile-amd64.raw", SHA256: hex64("8")}},
	}
}

func (f *spdxFixture) sbom(t *testing.T) []byte {
	t.Helper()
	data, err := f.b.sbom("v0.1.0", f.kernel, f.boot, f.ca, f.k3s, f.arts)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readSPDX reads data with tools-golang's JSON reader, requiring SPDX 2.3,
// and runs its validation.
func readSPDX(t *testing.T, data []byte) *spdx.Document {
	t.Helper()
	var raw struct {
		SPDXVersion string `json:"spdxVersion"`
	}
	if err := json.Unmarshal(data, &raw); err != nil || raw.SPDXVersion != v2_3.Version {
		t.Fatalf("spdxVersion %q (%v), want %s", raw.SPDXVersion, err, v2_3.Version)
	}
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("tools-golang cannot read the SBOM: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("tools-golang's validation: %v", err)
	}
	return doc
}

// TestSBOMIsValidSPDX23: the SBOM of a build with Debian kernel and boot
// packages, K3s and its airgap archives, an overlay and every output reads
// as SPDX 2.3 in tools-golang, passes its validation and survives its
// tag-value writer and reader, and meets the clauses of SPDX 2.3 checked
// in checkSPDX23.
func TestSBOMIsValidSPDX23(t *testing.T) {
	agent := buildAgent(t, "-X github.com/etoile-os/etoile/agent.Version=v0.1.0 -X github.com/etoile-os/etoile/agent.Commit=0123456789abcdef0123456789abcdef01234567")
	f := newSPDXFixture(t, agent)
	data := f.sbom(t)
	checkSPDXJSONFields(t, data)
	doc := readSPDX(t, data)
	checkSPDX23(t, doc)

	// Versions and checksums the issues ask for, as the independent reader
	// sees them.
	want := map[string][2]string{ // name → versionInfo, SHA-256
		"etoile":                          {"v0.1.0", ""},
		"linux-image-6.12.48+deb13-amd64": {"6.12.48-1", hex64("a")},
		"systemd-boot-efi":                {"1:257.8-1~deb13u2", hex64("b")},
		"isolinux":                        {"3:6.04~git20190206.bf6db5b4+dfsg1-3.1", hex64("c")},
		"ca-certificates":                 {"20250419", hex64("e")},
		"k3s":                             {"v1.34.9+k3s1", hex64("1")},
		"k3s-airgap-images-amd64.tar.zst": {"v1.34.9+k3s1", hex64("2")},
		"etoile-agent":                    {"v0.1.0", ""},
		"etoile-amd64.iso":                {"v0.1.0", hex64("7")},
	}
	for _, p := range doc.Packages {
		w, ok := want[p.PackageName]
		if !ok {
			continue
		}
		delete(want, p.PackageName)
		if p.PackageVersion != w[0] {
			t.Errorf("%s: versionInfo %q, want %q", p.PackageName, p.PackageVersion, w[0])
		}
		if w[1] != "" && !slices.ContainsFunc(p.PackageChecksums, func(c spdxChecksumT) bool { return c.Algorithm == "SHA256" && c.Value == w[1] }) {
			t.Errorf("%s: checksums %+v, want SHA256 %s", p.PackageName, p.PackageChecksums, w[1])
		}
	}
	if len(want) > 0 {
		t.Errorf("tools-golang finds no package for %v", want)
	}
	// The Go modules linked into the agent, each with its version and
	// package URL; the agent DEPENDS_ON each.
	var modules int
	for _, p := range doc.Packages {
		if !strings.HasPrefix(string(p.PackageSPDXIdentifier), "gomod-") || p.PackageName == "stdlib" {
			continue
		}
		modules++
		if !regexp.MustCompile(`^v\d+\.\d+\.\d+`).MatchString(p.PackageVersion) || len(p.PackageExternalReferences) != 1 ||
			p.PackageExternalReferences[0].Locator != goPURL(p.PackageName, p.PackageVersion) {
			t.Errorf("Go module %s: version %q, refs %+v", p.PackageName, p.PackageVersion, p.PackageExternalReferences)
		}
		if !slices.ContainsFunc(doc.Relationships, func(r *spdx.Relationship) bool {
			return r.RefA.ElementRefID == "etoile-agent" && r.Relationship == "DEPENDS_ON" && r.RefB.ElementRefID == p.PackageSPDXIdentifier
		}) {
			t.Errorf("the agent does not DEPEND_ON %s", p.PackageName)
		}
	}
	if modules == 0 || !slices.ContainsFunc(doc.Packages, func(p *spdx.Package) bool { return p.PackageName == "golang.org/x/sys" }) {
		t.Errorf("%d Go modules, none golang.org/x/sys: the agent's modules are not listed", modules)
	}
	// Every output is in the document with its SHA-256.
	for _, a := range f.arts {
		if !slices.ContainsFunc(doc.Packages, func(p *spdx.Package) bool {
			return p.PackageFileName == a.Name && slices.ContainsFunc(p.PackageChecksums, func(c spdxChecksumT) bool { return c.Value == a.SHA256 })
		}) && !slices.ContainsFunc(doc.Files, func(fl *spdx.File) bool {
			return strings.TrimPrefix(fl.FileName, "./") == a.Name && slices.ContainsFunc(fl.Checksums, func(c spdxChecksumT) bool { return c.Value == a.SHA256 })
		}) {
			t.Errorf("output %s with SHA-256 %s is not in the SBOM", a.Name, a.SHA256)
		}
	}

	// The same inputs give the same bytes; other content another namespace.
	if again := f.sbom(t); !bytes.Equal(again, data) {
		t.Error("two SBOMs of the same inputs differ")
	}
	f.arts[3].SHA256 = hex64("9")
	if other := readSPDX(t, f.sbom(t)); other.DocumentNamespace == doc.DocumentNamespace {
		t.Errorf("two SBOMs of different outputs share the namespace %s", doc.DocumentNamespace)
	}
}

// TestSBOMVariantsAreValidSPDX23: the other shapes a build takes — a
// kernel from a folder, the K3s stand-in, K3s from an OCI image, no K3s —
// are valid SPDX 2.3 too.
func TestSBOMVariantsAreValidSPDX23(t *testing.T) {
	for name, change := range map[string]func(f *spdxFixture){
		"kernel-dir": func(f *spdxFixture) {
			f.kernel = &kernel.Kernel{Version: "6.12.48+deb13-amd64"}
			f.boot, f.ca = nil, nil
		},
		"k3s-standin": func(f *spdxFixture) {
			f.k3s.Standin, f.k3s.PURL, f.k3s.DownloadLocation, f.k3s.Source = true, "", "NOASSERTION", "dir"
		},
		"k3s-oci": func(f *spdxFixture) {
			f.k3s.PURL = "pkg:oci/k3s@sha256%3A" + hex64("f") + "?repository_url=docker.io%2Francher%2Fk3s"
			f.k3s.DownloadLocation, f.k3s.AirgapImages = "", nil
		},
		"no-k3s":    func(f *spdxFixture) { f.k3s = nil },
		"no-output": func(f *spdxFixture) { f.arts = nil },
	} {
		t.Run(name, func(t *testing.T) {
			f := newSPDXFixture(t, "")
			change(f)
			data := f.sbom(t)
			checkSPDXJSONFields(t, data)
			checkSPDX23(t, readSPDX(t, data))
		})
	}
}

// TestSBOMGoPURLWithoutVersion: a module replaced by a folder has no version;
// its package URL then has no @ (an empty version is not valid purl).
func TestSBOMGoPURLWithoutVersion(t *testing.T) {
	if got := goPURL("example.com/local/mod", ""); got != "pkg:golang/example.com/local/mod" {
		t.Errorf("goPURL with no version = %q", got)
	}
	if err := checkPURL("pkg:golang/example.com/local/mod@"); err == nil {
		t.Error("checkPURL accepts an empty version")
	}
}

type spdxChecksumT = common.Checksum

var (
	spdxIDRe       = regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`)
	sha256Re       = regexp.MustCompile(`^[0-9a-f]{64}$`)
	sha1Re         = regexp.MustCompile(`^[0-9a-f]{40}$`)
	createdRe      = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	vcsLocationRe  = regexp.MustCompile(`^(git|hg|svn|bzr)\+(https?|ssh|git|svn|sftp|ftp)://[^\s#@]+(@[^\s#]+)?(#\S+)?$`)
	purposes23     = []string{"APPLICATION", "FRAMEWORK", "LIBRARY", "CONTAINER", "OPERATING-SYSTEM", "DEVICE", "FIRMWARE", "SOURCE", "ARCHIVE", "FILE", "INSTALL", "OTHER"}
	relationships  = []string{"DESCRIBES", "DESCRIBED_BY", "CONTAINS", "CONTAINED_BY", "DEPENDS_ON", "DEPENDENCY_OF", "GENERATES", "GENERATED_FROM", "DISTRIBUTION_ARTIFACT", "PACKAGE_OF", "OTHER"}
	refCategories  = []string{"SECURITY", "PACKAGE-MANAGER", "PERSISTENT-ID", "OTHER"}
	purlTypeRe     = regexp.MustCompile(`^[a-z][a-z0-9.+-]*$`)
	purlSegmentRe  = regexp.MustCompile(`^([A-Za-z0-9.\-_~:]|%[0-9A-F]{2})+$`)
	purlQualKeyRe  = regexp.MustCompile(`^[a-z][a-z0-9.\-_]*$`)
	purlQualValRe  = regexp.MustCompile(`^([A-Za-z0-9.\-_~:/]|%[0-9A-F]{2})+$`)
	spdxCreatorsRe = regexp.MustCompile(`^(Tool|Organization|Person): \S`)
	spdxAgentRe    = regexp.MustCompile(`^(NOASSERTION|(Organization|Person): \S.*)$`)
)

// checkPURL checks a package URL against the purl grammar
// (scheme:type/namespace/name@version?qualifiers#subpath), each component
// percent-encoded, and the rules of the types the SBOM uses.
func checkPURL(s string) error {
	rest, ok := strings.CutPrefix(s, "pkg:")
	if !ok {
		return errf("%q: not pkg:", s)
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		return errf("%q: a subpath the SBOM has no use for", s)
	}
	var quals string
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, quals = rest[:i], rest[i+1:]
	}
	var version string
	hasVersion := false
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest, version, hasVersion = rest[:i], rest[i+1:], true
	}
	if hasVersion && !purlSegmentRe.MatchString(version) {
		return errf("%q: version %q is empty or not percent-encoded", s, version)
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 2 || !purlTypeRe.MatchString(segs[0]) {
		return errf("%q: no type and name", s)
	}
	for _, seg := range segs[1:] {
		if !purlSegmentRe.MatchString(seg) {
			return errf("%q: segment %q is empty or not percent-encoded", s, seg)
		}
		if _, err := url.PathUnescape(seg); err != nil {
			return errf("%q: %v", s, err)
		}
	}
	q := map[string]string{}
	if quals != "" {
		for _, kv := range strings.Split(quals, "&") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !purlQualKeyRe.MatchString(k) || !purlQualValRe.MatchString(v) {
				return errf("%q: qualifier %q", s, kv)
			}
			if _, dup := q[k]; dup {
				return errf("%q: qualifier %s twice", s, k)
			}
			q[k] = v
		}
	}
	switch segs[0] {
	case "deb":
		if len(segs) != 3 || segs[1] != "debian" || q["arch"] == "" || !hasVersion {
			return errf("%q: want pkg:deb/debian/NAME@VERSION?arch=ARCH", s)
		}
	case "golang":
		if segs[1] != "stdlib" && !strings.Contains(segs[1], ".") {
			return errf("%q: a Go module path begins with a domain", s)
		}
	case "github":
		if len(segs) != 3 || !hasVersion {
			return errf("%q: want pkg:github/OWNER/REPO@VERSION", s)
		}
	case "oci":
		if len(segs) != 2 || !strings.HasPrefix(version, "sha256%3A") {
			return errf("%q: want pkg:oci/NAME@sha256%%3A…", s)
		}
	default:
		return errf("%q: a purl type the SBOM does not use", s)
	}
	return nil
}

func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// checkLicense: NOASSERTION, NONE or an SPDX license expression.
func checkLicense(s string) bool {
	if s == "NOASSERTION" || s == "NONE" {
		return true
	}
	ok, _ := spdxexp.ValidateLicenses([]string{s})
	return ok
}

// checkDownloadLocation: NONE, NOASSERTION, a URL or a VCS location (SPDX
// 2.3 clause 7.7).
func checkDownloadLocation(s string) bool {
	if s == "NONE" || s == "NOASSERTION" || vcsLocationRe.MatchString(s) {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http" || u.Scheme == "ftp") && u.Host != "" && !strings.ContainsAny(s, " \t\n")
}

// checkSPDX23 checks what tools-golang read against SPDX 2.3.
func checkSPDX23(t *testing.T, doc *spdx.Document) {
	t.Helper()
	if doc.DataLicense != "CC0-1.0" || doc.SPDXIdentifier != "DOCUMENT" || doc.DocumentName == "" {
		t.Errorf("document: dataLicense %q, SPDXID %q, name %q", doc.DataLicense, doc.SPDXIdentifier, doc.DocumentName)
	}
	// 6.5: a unique absolute URI, no '#'.
	if u, err := url.Parse(doc.DocumentNamespace); err != nil || !u.IsAbs() || u.Host == "" || strings.Contains(doc.DocumentNamespace, "#") {
		t.Errorf("documentNamespace %q is not an absolute URI without #", doc.DocumentNamespace)
	}
	// 6.8, 6.9.
	if doc.CreationInfo == nil {
		t.Fatal("no creationInfo")
	}
	if !createdRe.MatchString(doc.CreationInfo.Created) {
		t.Errorf("created %q is not YYYY-MM-DDThh:mm:ssZ", doc.CreationInfo.Created)
	} else if _, err := time.Parse(time.RFC3339, doc.CreationInfo.Created); err != nil {
		t.Errorf("created %q: %v", doc.CreationInfo.Created, err)
	}
	if len(doc.CreationInfo.Creators) == 0 {
		t.Error("no creators")
	}
	for _, c := range doc.CreationInfo.Creators {
		if s := c.CreatorType + ": " + c.Creator; !spdxCreatorsRe.MatchString(s) {
			t.Errorf("creator %q", s)
		}
	}
	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || !slices.Contains(described, "etoile") {
		t.Errorf("the document DESCRIBES %v (%v), want SPDXRef-etoile", described, err)
	}

	ids := map[string]string{"DOCUMENT": "document"} // id → what
	files := map[string]bool{}
	for _, f := range doc.Files {
		id := string(f.FileSPDXIdentifier)
		if !spdxIDRe.MatchString("SPDXRef-"+id) || ids[id] != "" {
			t.Errorf("file %s: SPDXID %q malformed or used twice", f.FileName, id)
		}
		ids[id], files[id] = "file", true
		// 8.4: a file's checksums include SHA1.
		if !slices.ContainsFunc(f.Checksums, func(c spdxChecksumT) bool { return c.Algorithm == "SHA1" && sha1Re.MatchString(c.Value) }) {
			t.Errorf("file %s: checksums %+v lack the SHA1 clause 8.4 requires", f.FileName, f.Checksums)
		}
	}
	for _, p := range doc.Packages {
		id := string(p.PackageSPDXIdentifier)
		where := p.PackageName + " (" + id + ")"
		if !spdxIDRe.MatchString("SPDXRef-"+id) || ids[id] != "" {
			t.Errorf("%s: SPDXID malformed or used twice", where)
		}
		ids[id] = "package"
		if strings.TrimSpace(p.PackageName) == "" {
			t.Errorf("%s: no name", where)
		}
		if !checkDownloadLocation(p.PackageDownloadLocation) {
			t.Errorf("%s: downloadLocation %q", where, p.PackageDownloadLocation)
		}
		if !p.IsFilesAnalyzedTagPresent || p.FilesAnalyzed && p.PackageVerificationCode == nil {
			t.Errorf("%s: filesAnalyzed %v (written: %v) with verification code %v", where, p.FilesAnalyzed, p.IsFilesAnalyzedTagPresent, p.PackageVerificationCode)
		}
		for _, c := range p.PackageChecksums {
			switch c.Algorithm {
			case "SHA256":
				if !sha256Re.MatchString(c.Value) {
					t.Errorf("%s: SHA256 %q is not 64 lower-case hex digits", where, c.Value)
				}
			default:
				t.Errorf("%s: checksum algorithm %s", where, c.Algorithm)
			}
		}
		if !checkLicense(p.PackageLicenseConcluded) || !checkLicense(p.PackageLicenseDeclared) {
			t.Errorf("%s: licenseConcluded %q, licenseDeclared %q", where, p.PackageLicenseConcluded, p.PackageLicenseDeclared)
		}
		if p.PackageCopyrightText == "" {
			t.Errorf("%s: no copyrightText", where)
		}
		if p.PackageSupplier != nil {
			s := p.PackageSupplier.Supplier
			if p.PackageSupplier.SupplierType != "" {
				s = p.PackageSupplier.SupplierType + ": " + s
			}
			if !spdxAgentRe.MatchString(s) {
				t.Errorf("%s: supplier %q", where, s)
			}
		}
		if p.PrimaryPackagePurpose != "" && !slices.Contains(purposes23, p.PrimaryPackagePurpose) {
			t.Errorf("%s: primaryPackagePurpose %q", where, p.PrimaryPackagePurpose)
		}
		for _, r := range p.PackageExternalReferences {
			if !slices.Contains(refCategories, r.Category) {
				t.Errorf("%s: referenceCategory %q", where, r.Category)
			}
			if r.RefType != "purl" {
				continue
			}
			if err := checkPURL(r.Locator); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
	}
	for _, r := range doc.Relationships {
		a, b := string(r.RefA.ElementRefID), string(r.RefB.ElementRefID)
		if !slices.Contains(relationships, r.Relationship) {
			t.Errorf("relationship %s %s %s: type", a, r.Relationship, b)
		}
		if ids[a] == "" || ids[b] == "" {
			t.Errorf("relationship %s %s %s names an element the document lacks", a, r.Relationship, b)
		}
	}
	// 7.8: a package whose files were not analyzed contains no file.
	for _, r := range doc.Relationships {
		if r.Relationship != "CONTAINS" || !files[string(r.RefB.ElementRefID)] {
			continue
		}
		for _, p := range doc.Packages {
			if p.PackageSPDXIdentifier == r.RefA.ElementRefID && !p.FilesAnalyzed {
				t.Errorf("package %s has filesAnalyzed false yet CONTAINS the file %s (clause 7.8: it shall contain no file)", p.PackageName, r.RefB.ElementRefID)
			}
		}
	}

	// tools-golang's tag-value writer and reader keep every element.
	var tv bytes.Buffer
	if err := tagvalue.Write(doc, &tv); err != nil {
		t.Fatalf("tools-golang cannot write the SBOM as tag-value: %v", err)
	}
	back, err := tagvalue.Read(&tv)
	if err != nil {
		t.Fatalf("tools-golang cannot read its own tag-value of the SBOM: %v", err)
	}
	if len(back.Packages) != len(doc.Packages) || len(back.Files) != len(doc.Files) || len(back.Relationships) != len(doc.Relationships) {
		t.Errorf("tag-value round trip: %d packages, %d files, %d relationships; want %d, %d, %d",
			len(back.Packages), len(back.Files), len(back.Relationships), len(doc.Packages), len(doc.Files), len(doc.Relationships))
	}
	if err := spdxlib.ValidateDocument(back); err != nil {
		t.Errorf("tag-value round trip: %v", err)
	}
}

// checkSPDXJSONFields: every property the SBOM writes is one the SPDX 2.3
// JSON schema defines where it is (tools-golang ignores those it does not
// know, so a misspelt property would pass it unseen).
func checkSPDXJSONFields(t *testing.T, data []byte) {
	t.Helper()
	allowed := map[string][]string{
		"document":     {"spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo", "documentDescribes", "packages", "files", "relationships", "comment", "externalDocumentRefs", "hasExtractedLicensingInfos", "annotations", "snippets"},
		"creationInfo": {"created", "creators", "comment", "licenseListVersion"},
		"package": {"name", "SPDXID", "versionInfo", "packageFileName", "supplier", "originator", "downloadLocation", "filesAnalyzed", "packageVerificationCode",
			"checksums", "homepage", "sourceInfo", "licenseConcluded", "licenseInfoFromFiles", "licenseDeclared", "licenseComments", "copyrightText", "summary",
			"description", "comment", "externalRefs", "attributionTexts", "primaryPackagePurpose", "releaseDate", "builtDate", "validUntilDate", "hasFiles", "annotations"},
		"file":         {"fileName", "SPDXID", "fileTypes", "checksums", "licenseConcluded", "licenseInfoInFiles", "licenseComments", "copyrightText", "comment", "noticeText", "fileContributors", "attributionTexts", "annotations"},
		"checksum":     {"algorithm", "checksumValue"},
		"externalRef":  {"referenceCategory", "referenceType", "referenceLocator", "comment"},
		"relationship": {"spdxElementId", "relationshipType", "relatedSpdxElement", "comment"},
	}
	check := func(what string, obj map[string]any) {
		for k := range obj {
			if !slices.Contains(allowed[what], k) {
				t.Errorf("%s property %q is not in the SPDX 2.3 JSON schema", what, k)
			}
		}
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	objs := func(v any) []map[string]any {
		var out []map[string]any
		list, _ := v.([]any)
		for _, e := range list {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	}
	check("document", doc)
	if ci, ok := doc["creationInfo"].(map[string]any); ok {
		check("creationInfo", ci)
	}
	for _, p := range objs(doc["packages"]) {
		check("package", p)
		for _, c := range objs(p["checksums"]) {
			check("checksum", c)
		}
		for _, r := range objs(p["externalRefs"]) {
			check("externalRef", r)
		}
	}
	for _, f := range objs(doc["files"]) {
		check("file", f)
		for _, c := range objs(f["checksums"]) {
			check("checksum", c)
		}
	}
	for _, r := range objs(doc["relationships"]) {
		check("relationship", r)
	}
}

// TestSPDXCheckersReject: the checks above refuse what SPDX 2.3 and purl
// refuse, so a pass means something.
func TestSPDXCheckersReject(t *testing.T) {
	for _, p := range []string{"pkg:deb/debian/ca-certificates@20230311+deb12u1?arch=all", "pkg:deb/ubuntu/x@1?arch=amd64",
		"pkg:deb/debian/x@1", "pkg:golang/github.com/a/b@", "pkg:golang/github.com//b@v1.0.0", "pkg:github/k3s-io@v1", "golang/x@v1",
		"pkg:golang/github.com/a/b@v1 .0", "pkg:deb/debian/x@1?Arch=amd64"} {
		if checkPURL(p) == nil {
			t.Errorf("checkPURL accepts %q", p)
		}
	}
	for _, l := range []string{"", "GPL-2.0", "Apache 2.0", "MIT AND"} {
		if l != "GPL-2.0" && checkLicense(l) { // GPL-2.0 is deprecated, not invalid
			t.Errorf("checkLicense accepts %q", l)
		}
	}
	for _, d := range []string{"", "github.com/etoile-os/etoile", "git+https://github.com/etoile-os/etoile@", "file:///tmp/x"} {
		if checkDownloadLocation(d) {
			t.Errorf("checkDownloadLocation accepts %q", d)
		}
	}
	if checkPURL("pkg:deb/debian/systemd-boot-efi@1:257.8-1~deb13u2?arch=amd64") != nil || !checkLicense("GPL-2.0-only WITH Linux-syscall-note") {
		t.Error("the checks refuse what is valid")
	}
}
