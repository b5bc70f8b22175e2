// Package k3s brings the K3s artifacts into an Étoile image: the k3s binary
// and the airgap images tarball, from the K3s project's release (checked
// against the release's checksum file), from a local folder laid out like a
// release (offline and airgapped builders), or from an OCI image through
// rancher/wharfie. Nothing that failed verification is ever returned.
//
// Sources:
//
//   - release (default): <BaseURL>/<version>/{k3s, k3s-airgap-images-amd64.tar.zst,
//     sha256sum-amd64.txt} are downloaded into <cache>/k3s/<version>/ under
//     temporary names, verified against the checksum file and only then
//     renamed into place. A later build uses the cache without the network;
//     a cache entry that no longer verifies is fetched again.
//   - dir: a folder holding the same three files, verified the same way, for
//     builders without network: download the three files of a release once,
//     then `etoile build --k3s-dir DIR` or ETOILE_K3S_DIR=DIR.
//   - oci: /bin/k3s extracted from an image (docker.io/rancher/k3s:<version
//     with - for +> by default, pulled with wharfie, honouring a K3s-style
//     registries.yaml), the airgap images from a local archive.
//
// Every source can add the site's own image archives (Source.ExtraAirgap),
// which land next to K3s's in the image. Artifacts.ImageFiles says where
// everything goes in the system image.
package k3s

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultVersion is the K3s release an image gets when its spec names none:
// the newest v1.34 patch release published on the K3s releases page
// (https://github.com/k3s-io/k3s/releases/tag/v1.34.9%2Bk3s1: Kubernetes
// v1.34.9, containerd v2.2.5-k3s2).
const DefaultVersion = "v1.34.9+k3s1"

// DefaultBaseURL is where K3s releases are downloaded from; a release's files
// are under <base>/<version>/.
const DefaultBaseURL = "https://github.com/k3s-io/k3s/releases/download"

// File names of a K3s release for amd64, as published and as expected in a
// --k3s-dir folder.
const (
	BinaryName   = "k3s"
	AirgapName   = "k3s-airgap-images-amd64.tar.zst"
	ChecksumName = "sha256sum-amd64.txt"
)

// Where K3s lives in the system image.
const (
	// ImageBinaryPath is the k3s binary in the system image.
	ImageBinaryPath = "/usr/local/bin/k3s"
	// ImageAirgapDir is the folder K3s imports image tarballs from at start.
	ImageAirgapDir = "/var/lib/rancher/k3s/agent/images"
)

// ImageLinks are the multi-call names K3s answers to; each is a symlink to
// k3s in the same folder (K3s picks its personality from argv[0]).
var ImageLinks = []string{"kubectl", "crictl", "ctr"}

// Source kinds.
const (
	KindRelease = "release"
	KindOCI     = "oci"
	KindDir     = "dir"
)

// EnvDir is the environment variable that selects the dir source.
const EnvDir = "ETOILE_K3S_DIR"

// Source says where the K3s artifacts come from.
type Source struct {
	Kind    string // "release" (default) | "oci" | "dir"
	Version string // K3s version, e.g. v1.34.9+k3s1; empty: DefaultVersion (dir: read from the binary)
	Dir     string // dir: folder holding k3s, the airgap tarball and sha256sum-amd64.txt
	// Image is the OCI image holding /bin/k3s (oci); empty:
	// docker.io/rancher/k3s:<version with - for +>.
	Image string
	// AirgapTarball is a local image archive (.tar, .tar.zst, .tar.gz, ...)
	// holding K3s's system images (oci). Empty: no airgap images, K3s pulls
	// its images from the network at first start.
	AirgapTarball string
	// BaseURL is the release download base (release); empty: DefaultBaseURL.
	// Tests point it at a local server.
	BaseURL string
	// RegistriesFile is a K3s-style registries.yaml with mirrors and
	// credentials used to pull Image (oci); empty or missing: none.
	RegistriesFile string
	// ExtraAirgap lists more image archives for the site's own workloads,
	// for every kind. Each is checked to be a readable image archive and
	// lands next to K3s's own airgap tarball.
	ExtraAirgap []string
}

// Artifacts are verified K3s files, ready to be copied into the image.
type Artifacts struct {
	Version      string
	Binary       string   // path to the verified k3s binary
	BinarySHA256 string   // lower-case hex
	AirgapImages []string // paths of verified image archives; K3s's own first
	// AirgapSHA256 maps each AirgapImages path to its SHA-256 (hex).
	AirgapSHA256 map[string]string
	// Source says where the files came from, for logs and the SBOM comment:
	// "release https://…/k3s", "a local release folder" (no path: the image
	// must not depend on where the folder was), "oci docker.io/rancher/k3s@sha256:…".
	Source string
	// DownloadLocation is the SPDX downloadLocation of K3s: the release URL
	// of the binary, the image reference pinned by digest, or NOASSERTION
	// for a local folder.
	DownloadLocation string
	// Standin is true when the binary is Étoile's K3s stand-in (it carries
	// StandinMarker): a test double of the K3s command line, never K3s. The
	// build's summary and the SBOM say so.
	Standin bool
	// PURL is the package URL of K3s for the SBOM's external references:
	// pkg:github/k3s-io/k3s@<version> for releases and folders,
	// pkg:oci/k3s@<digest>?repository_url=<repo> for images.
	PURL string
}

// File is one entry K3s adds to the system image.
type File struct {
	Path   string      // absolute path in the image
	Source string      // file on the build host to copy; empty for a link
	Link   string      // symlink target; empty for a regular file
	Mode   os.FileMode // for regular files
	// SHA256 is what Source was verified to hold (hex): the copy into the
	// image checks it again, so a file changed since is never shipped.
	SHA256 string
}

// ImageFiles lists what the system image gets: the binary at
// ImageBinaryPath, its kubectl/crictl/ctr links, and every airgap archive
// under ImageAirgapDir with its own base name (K3s picks the decompressor
// from the extension).
func (a *Artifacts) ImageFiles() []File {
	files := []File{{Path: ImageBinaryPath, Source: a.Binary, Mode: 0o755, SHA256: a.BinarySHA256}}
	for _, l := range ImageLinks {
		files = append(files, File{Path: filepath.Join(filepath.Dir(ImageBinaryPath), l), Link: filepath.Base(ImageBinaryPath)})
	}
	for _, p := range a.AirgapImages {
		files = append(files, File{Path: filepath.Join(ImageAirgapDir, filepath.Base(p)), Source: p, Mode: 0o644, SHA256: a.AirgapSHA256[p]})
	}
	return files
}

// dirHint is how every failed download tells the user to work offline.
const dirHint = "to build without network, put a K3s release folder (" + BinaryName + ", " + AirgapName + ", " + ChecksumName +
	") on this machine and pass `etoile build --k3s-dir DIR` or set " + EnvDir + "=DIR"

var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-(rc|alpha|beta)[0-9]+)?\+k3s[0-9]+$`)

// ValidVersion reports whether v looks like a K3s release version
// (v1.34.9+k3s1, v1.35.0-rc1+k3s1).
func ValidVersion(v string) bool { return versionRE.MatchString(v) }

// DefaultImage is the rancher/k3s image of version v; image tags spell the
// '+' of K3s versions as '-'.
func DefaultImage(v string) string {
	return "docker.io/rancher/k3s:" + strings.ReplaceAll(v, "+", "-")
}

// Fetch returns verified K3s artifacts from src. Downloads and extractions
// land in cacheDir/k3s/; a cache entry that no longer matches its checksums
// is fetched again.
func Fetch(ctx context.Context, src Source, cacheDir string, log *slog.Logger) (*Artifacts, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if src.Version != "" && !ValidVersion(src.Version) {
		return nil, fmt.Errorf("k3s.version %q is not a K3s release version (like %s)", src.Version, DefaultVersion)
	}
	kind := src.Kind
	if kind == "" {
		kind = KindRelease
	}
	var (
		a   *Artifacts
		err error
	)
	switch kind {
	case KindRelease:
		a, err = fetchRelease(ctx, src, cacheDir, log)
	case KindDir:
		a, err = fetchDir(src, log)
	case KindOCI:
		a, err = fetchOCI(ctx, src, cacheDir, log)
	default:
		return nil, fmt.Errorf("k3s.source %q is not one of %s, %s, %s", src.Kind, KindRelease, KindOCI, KindDir)
	}
	if err != nil {
		return nil, err
	}
	if a.Standin, err = containsMarker(a.Binary); err != nil {
		return nil, err
	}
	if a.Standin {
		// Not the K3s project's package: no pkg:github/k3s-io/k3s purl.
		log.Warn("the k3s binary is Étoile's K3s STAND-IN (qa/k3sstandin), a test double of the K3s command line: not K3s", "binary", a.Binary)
	} else if a.PURL == "" {
		a.PURL = "pkg:github/k3s-io/k3s@" + strings.ReplaceAll(url.PathEscape(a.Version), "+", "%2B")
	}
	if err := addExtraAirgap(a, src.ExtraAirgap, log); err != nil {
		return nil, err
	}
	log.Info("k3s artifacts ready", "version", a.Version, "source", a.Source, "binary_sha256", a.BinarySHA256, "airgap", len(a.AirgapImages))
	return a, nil
}

// StandinMarker is a string Étoile's K3s stand-in (qa/k3sstandin) carries
// in its binary, by which the build tells it from K3s.
const StandinMarker = "etoile-k3s-standin: a test double of the K3s command line, not K3s"

// containsMarker reports whether the binary holds StandinMarker.
func containsMarker(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	marker := []byte(StandinMarker)
	buf := make([]byte, 1<<20+len(marker))
	keep := 0
	for {
		n, err := io.ReadFull(f, buf[keep:])
		data := buf[:keep+n]
		if bytes.Contains(data, marker) {
			return true, nil
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading %s: %w", path, err)
		}
		// Carry the tail over so a marker across the boundary is seen.
		keep = copy(buf, data[len(data)-len(marker):])
	}
}

func versionOrDefault(v string) string {
	if v == "" {
		return DefaultVersion
	}
	return v
}

// airgapArchiveHint says what a k3s.airgapImages entry must be.
const airgapArchiveHint = "each k3s.airgapImages entry must be an image archive as docker save writes it " +
	"(a .tar, or one compressed: .tar.gz .tgz .tar.zst .tzst .tar.bz2 .tbz .tar.lz4) " +
	"whose manifest.json names at least one tagged image (repository:tag), " +
	"e.g. docker save -o app.tar registry.example/app:1; an OCI layout without manifest.json is not read"

// addExtraAirgap verifies the site's extra image archives and appends them.
func addExtraAirgap(a *Artifacts, extra []string, log *slog.Logger) error {
	seen := map[string]string{}
	for _, p := range a.AirgapImages {
		seen[filepath.Base(p)] = p
	}
	for i, p := range extra {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("k3s.airgapImages[%d] %q: %w", i, p, err)
		}
		if prev, dup := seen[filepath.Base(abs)]; dup {
			return fmt.Errorf("k3s.airgapImages[%d] %q: its file name is also used by %s, and both land in %s: rename one", i, p, prev, ImageAirgapDir)
		}
		tags, err := checkImageArchive(abs)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("k3s.airgapImages[%d]: %w", i, err)
			}
			return fmt.Errorf("k3s.airgapImages[%d]: %w; %s", i, err, airgapArchiveHint)
		}
		sum, err := hashFile(abs)
		if err != nil {
			return fmt.Errorf("k3s.airgapImages[%d]: %w", i, err)
		}
		seen[filepath.Base(abs)] = abs
		a.AirgapImages = append(a.AirgapImages, abs)
		a.AirgapSHA256[abs] = sum
		log.Info("extra airgap images", "file", abs, "sha256", sum, "images", strings.Join(tags, ","))
	}
	return nil
}

var errNotRegular = errors.New("not a regular file")
