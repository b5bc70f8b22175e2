package image

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/etoile-os/etoile/image/debian"
	"github.com/etoile-os/etoile/image/k3s"
	"github.com/etoile-os/etoile/image/kernel"
)

// SPDX 2.3 JSON, the subset Étoile writes. Field names follow the spec's
// JSON schema.
type spdxDoc struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreation       `json:"creationInfo"`
	DocumentDescribes []string           `json:"documentDescribes"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreation struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name             string         `json:"name"`
	SPDXID           string         `json:"SPDXID"`
	VersionInfo      string         `json:"versionInfo,omitempty"`
	FileName         string         `json:"packageFileName,omitempty"`
	Supplier         string         `json:"supplier,omitempty"`
	DownloadLocation string         `json:"downloadLocation"`
	FilesAnalyzed    bool           `json:"filesAnalyzed"`
	Checksums        []spdxChecksum `json:"checksums,omitempty"`
	LicenseConcluded string         `json:"licenseConcluded"`
	LicenseDeclared  string         `json:"licenseDeclared"`
	CopyrightText    string         `json:"copyrightText"`
	Comment          string         `json:"comment,omitempty"`
	ExternalRefs     []spdxRef      `json:"externalRefs,omitempty"`
	PrimaryPurpose   string         `json:"primaryPackagePurpose,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

const noAssertion = "NOASSERTION"

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(kind, name string) string {
	return "SPDXRef-" + kind + "-" + strings.Trim(spdxIDUnsafe.ReplaceAllString(name, "-"), "-")
}

// purlEscape percent-encodes s for a package URL's name or version: all but
// letters, digits and . - _ ~ (and : , which a Debian epoch has and the
// purl spec leaves as it is). A raw + reads as a space to some parsers.
func purlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte(".-_~:", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// goPURL is a Go module's package URL (its path's slashes kept). A module
// replaced by a folder has no version: its URL then has no @ (a purl's
// version, when there is an @, is not empty).
func goPURL(path, version string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		parts[i] = purlEscape(p)
	}
	purl := "pkg:golang/" + strings.Join(parts, "/")
	if version != "" {
		purl += "@" + purlEscape(version)
	}
	return purl
}

// debPackage describes a package from Debian's archive, or Ubuntu's (an
// Ubuntu build machine's apt fetches Ubuntu's kernel, bootloaders and CA
// certificates): scanners match the package URL's namespace against that
// distribution's security advisories.
func debPackage(p *debian.Package, purpose string) spdxPackage {
	vendor, supplier := debian.VendorDebian, "Organization: Debian"
	if p.Vendor == debian.VendorUbuntu {
		vendor, supplier = debian.VendorUbuntu, "Organization: Canonical Ltd."
	}
	return spdxPackage{
		Name: p.Name, SPDXID: spdxID("deb", p.Name), VersionInfo: p.Version,
		Supplier: supplier, DownloadLocation: noAssertion,
		Checksums:        []spdxChecksum{{Algorithm: "SHA256", Value: p.SHA256}},
		LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
		ExternalRefs: []spdxRef{{Category: "PACKAGE-MANAGER", Type: "purl",
			Locator: fmt.Sprintf("pkg:deb/%s/%s@%s?arch=%s", vendor, purlEscape(p.Name), purlEscape(p.Version), purlEscape(p.Architecture))}},
		PrimaryPurpose: purpose,
	}
}

// etoileSource is Étoile's download location: its repository at commit
// when the commit is known.
func etoileSource(commit string) string {
	if commitHex.MatchString(commit) {
		return "git+https://github.com/etoile-os/etoile@" + commit
	}
	return "https://github.com/etoile-os/etoile"
}

var commitHex = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// sbom describes the image: Étoile itself, the kernel and bootloader
// packages, the Go modules linked into the agent, and each artifact.
func (b *Builder) sbom(version string, k *kernel.Kernel, bootPkgs []*debian.Package, caPkg *debian.Package, k3sArt *k3s.Artifacts, arts []Artifact) ([]byte, error) {
	created := time.Unix(b.Epoch, 0).UTC().Format(time.RFC3339)
	root := spdxPackage{
		Name: "etoile", SPDXID: "SPDXRef-etoile", VersionInfo: version,
		Supplier: "Organization: Étoile", DownloadLocation: etoileSource(b.Tool.Commit),
		LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
		Comment:        fmt.Sprintf("Étoile %s image for %s; built by etoile %s, commit %s", version, b.Spec.Arch, b.Tool.Version, b.Tool.Commit),
		PrimaryPurpose: "OPERATING-SYSTEM",
	}
	doc := spdxDoc{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT",
		Name: fmt.Sprintf("etoile-%s-%s", b.Spec.Arch, version),
		CreationInfo: spdxCreation{Created: created, Creators: []string{
			"Tool: etoile-" + b.Tool.Version, "Organization: Étoile"}},
		DocumentDescribes: []string{root.SPDXID},
		Packages:          []spdxPackage{root},
	}
	rel := func(a, typ, c string) { doc.Relationships = append(doc.Relationships, spdxRelationship{a, typ, c}) }
	// Element ids are unique: names that differ only in characters an id
	// cannot hold (a_b.tar, a-b.tar) get -2, -3… in the order they come.
	used := map[string]int{root.SPDXID: 1}
	uniq := func(id string) string {
		used[id]++
		if n := used[id]; n > 1 {
			return fmt.Sprintf("%s-%d", id, n)
		}
		return id
	}
	rel("SPDXRef-DOCUMENT", "DESCRIBES", root.SPDXID)

	if len(k.Packages) == 0 {
		kp := spdxPackage{Name: "linux", SPDXID: uniq(spdxID("kernel", k.Version)), VersionInfo: k.Version,
			DownloadLocation: noAssertion, LicenseConcluded: noAssertion, LicenseDeclared: "GPL-2.0-only",
			CopyrightText: noAssertion, Comment: "kernel from a local folder (kernel.dir)"}
		doc.Packages = append(doc.Packages, kp)
		rel(root.SPDXID, "CONTAINS", kp.SPDXID)
	}
	for _, p := range k.Packages {
		sp := debPackage(p, "OPERATING-SYSTEM")
		sp.SPDXID = uniq(sp.SPDXID)
		sp.Comment = "Linux kernel " + k.Version
		doc.Packages = append(doc.Packages, sp)
		rel(root.SPDXID, "CONTAINS", sp.SPDXID)
	}
	for _, p := range bootPkgs {
		sp := debPackage(p, "APPLICATION")
		sp.SPDXID = uniq(sp.SPDXID)
		sp.Comment = "bootloader"
		doc.Packages = append(doc.Packages, sp)
		rel(root.SPDXID, "CONTAINS", sp.SPDXID)
	}
	if caPkg != nil {
		sp := debPackage(caPkg, "OTHER")
		sp.SPDXID = uniq(sp.SPDXID)
		sp.Comment = "CA certificates: /" + CABundlePath + " in the system image"
		doc.Packages = append(doc.Packages, sp)
		rel(root.SPDXID, "CONTAINS", sp.SPDXID)
	}

	if k3sArt != nil {
		kp := spdxPackage{Name: "k3s", SPDXID: uniq("SPDXRef-k3s"), VersionInfo: k3sArt.Version,
			Supplier: "Organization: K3s project (CNCF)", DownloadLocation: k3sArt.DownloadLocation,
			Checksums:        []spdxChecksum{{Algorithm: "SHA256", Value: k3sArt.BinarySHA256}},
			LicenseConcluded: noAssertion, LicenseDeclared: "Apache-2.0", CopyrightText: noAssertion,
			Comment: "k3s binary from " + k3sArt.Source, PrimaryPurpose: "APPLICATION"}
		if k3sArt.Standin {
			// Never presented as K3s: the component in K3s's place is a test double.
			kp.Supplier, kp.LicenseDeclared = "Organization: Étoile (qa/k3sstandin)", noAssertion
			kp.Comment = "K3s STAND-IN: Étoile's test double of the K3s command line (qa/k3sstandin), NOT K3s; from " + k3sArt.Source
		}
		if kp.DownloadLocation == "" {
			kp.DownloadLocation = noAssertion
		}
		if k3sArt.PURL != "" {
			kp.ExternalRefs = []spdxRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: k3sArt.PURL}}
		}
		doc.Packages = append(doc.Packages, kp)
		rel(root.SPDXID, "CONTAINS", kp.SPDXID)
		site := b.siteAirgap()
		for _, p := range k3sArt.AirgapImages {
			name := path.Base(p)
			ap := spdxPackage{Name: name, SPDXID: uniq(spdxID("airgap", name)), VersionInfo: k3sArt.Version,
				DownloadLocation: noAssertion, FilesAnalyzed: false,
				Checksums:        []spdxChecksum{{Algorithm: "SHA256", Value: k3sArt.AirgapSHA256[p]}},
				LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
				Comment: "K3s's container image archive, imported by K3s at start", PrimaryPurpose: "CONTAINER"}
			if site[filepath.Clean(p)] {
				// The site's own archive (k3s.airgapImages): its version is
				// not K3s's, and the build does not know it.
				ap.VersionInfo = ""
				ap.Comment = "the site's container image archive (k3s.airgapImages), imported by K3s at start"
			}
			doc.Packages = append(doc.Packages, ap)
			rel(kp.SPDXID, "DEPENDS_ON", ap.SPDXID)
		}
	}

	layers, err := b.layers()
	if err != nil {
		return nil, err
	}
	for _, e := range layers {
		lp := spdxPackage{Name: e.name, SPDXID: uniq(spdxID(e.kind, e.name)), DownloadLocation: noAssertion,
			Checksums:        []spdxChecksum{{Algorithm: "SHA256", Value: e.sha256}},
			LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
			Comment: e.comment, PrimaryPurpose: "OTHER"}
		doc.Packages = append(doc.Packages, lp)
		rel(root.SPDXID, "CONTAINS", lp.SPDXID)
	}

	bi, err := buildinfo.ReadFile(b.AgentPath)
	if err != nil {
		return nil, fmt.Errorf("reading Go build information from %s: %w (is it a Go binary?)", b.AgentPath, err)
	}
	agentVersion, agentCommit := b.agentIdentity(bi)
	agent := spdxPackage{Name: "etoile-agent", SPDXID: uniq("SPDXRef-etoile-agent"), VersionInfo: agentVersion,
		DownloadLocation: etoileSource(agentCommit), LicenseConcluded: noAssertion,
		LicenseDeclared: noAssertion, CopyrightText: noAssertion,
		Comment:        fmt.Sprintf("the node agent (PID 1), built with %s, commit %s", bi.GoVersion, agentCommit),
		PrimaryPurpose: "APPLICATION"}
	doc.Packages = append(doc.Packages, agent)
	rel(root.SPDXID, "CONTAINS", agent.SPDXID)
	// The Go standard library linked in, for scanners matching Go's own
	// vulnerabilities.
	if goVer, ok := strings.CutPrefix(bi.GoVersion, "go"); ok {
		std := spdxPackage{Name: "stdlib", SPDXID: uniq("SPDXRef-gomod-stdlib"), VersionInfo: goVer, DownloadLocation: "https://go.dev/dl/",
			LicenseConcluded: noAssertion, LicenseDeclared: "BSD-3-Clause", CopyrightText: noAssertion,
			Comment: "the Go standard library, " + bi.GoVersion, PrimaryPurpose: "LIBRARY",
			ExternalRefs: []spdxRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: goPURL("stdlib", goVer)}}}
		doc.Packages = append(doc.Packages, std)
		rel(agent.SPDXID, "DEPENDS_ON", std.SPDXID)
	}
	deps := toModules(bi)
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })
	for _, m := range deps {
		sp := spdxPackage{Name: m.Path, SPDXID: uniq(spdxID("gomod", m.Path)), VersionInfo: m.Version,
			DownloadLocation: noAssertion, LicenseConcluded: noAssertion, LicenseDeclared: noAssertion,
			CopyrightText: noAssertion, PrimaryPurpose: "LIBRARY",
			ExternalRefs: []spdxRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: goPURL(m.Path, m.Version)}}}
		if m.Sum != "" {
			sp.Comment = "go.sum " + m.Sum
		}
		doc.Packages = append(doc.Packages, sp)
		rel(agent.SPDXID, "DEPENDS_ON", sp.SPDXID)
	}
	// Each output is a package of one file (SPDX 2.3 7.24: FILE), not a
	// File element: a File must carry a SHA1 (8.4), which the build does
	// not compute, and a package whose files were not analyzed, as the
	// image's, shall contain no File (7.8).
	for _, a := range arts {
		ap := spdxPackage{Name: a.Name, SPDXID: uniq(spdxID("artifact", a.Name)), VersionInfo: version, FileName: a.Name,
			DownloadLocation: noAssertion,
			Checksums:        []spdxChecksum{{Algorithm: "SHA256", Value: a.SHA256}},
			LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
			Comment: "build output, in out/", PrimaryPurpose: "FILE"}
		doc.Packages = append(doc.Packages, ap)
		rel(root.SPDXID, "CONTAINS", ap.SPDXID)
	}
	// The namespace must be unique per document yet reproducible: derive it
	// from the content.
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(body)
	doc.DocumentNamespace = fmt.Sprintf("https://etoile.io/spdx/%s-%s", doc.Name, hex.EncodeToString(h[:8]))
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// siteAirgap is the set of the site's own image archives (k3s.airgapImages)
// as k3s.Fetch lists them in Artifacts.AirgapImages (absolute), after
// K3s's, of which there is none for k3s.source oci without
// k3s.airgapTarball: which archive is whose is told by path, not by place.
func (b *Builder) siteAirgap() map[string]bool {
	site := map[string]bool{}
	for _, a := range b.Spec.K3s.AirgapImages {
		if abs, err := filepath.Abs(b.Spec.Resolve(a)); err == nil {
			site[abs] = true
		}
	}
	return site
}

type debugModule struct{ Path, Version, Sum string }

func toModules(bi *buildinfo.BuildInfo) []*debugModule {
	var out []*debugModule
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		out = append(out, &debugModule{Path: m.Path, Version: m.Version, Sum: m.Sum})
	}
	return out
}
