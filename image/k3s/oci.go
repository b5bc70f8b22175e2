package k3s

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/rancher/wharfie/pkg/extract"
	"github.com/rancher/wharfie/pkg/registries"
	"github.com/rancher/wharfie/pkg/tarfile"

	"github.com/etoile-os/etoile/internal/staletmp"
	"github.com/etoile-os/etoile/schema"
)

// imageBinaryPath is where the rancher/k3s image keeps the binary.
const imageBinaryPath = "/bin/k3s"

// fetchOCI pulls the K3s image with wharfie (which honours a K3s-style
// registries.yaml: mirrors, rewrites, credentials, TLS), extracts /bin/k3s
// into cacheDir/k3s/oci/<image digest>/ and takes the airgap images from a
// local archive. Layers are content-addressed and verified against their
// digests while they are read, so the binary is as trustworthy as the
// image reference.
func fetchOCI(ctx context.Context, src Source, cacheDir string, log *slog.Logger) (*Artifacts, error) {
	version := versionOrDefault(src.Version)
	if cacheDir == "" {
		return nil, fmt.Errorf("k3s image: no cache folder given to extract the binary into")
	}
	refStr := src.Image
	if refStr == "" {
		refStr = DefaultImage(version)
	}
	ref, err := name.ParseReference(refStr)
	if err != nil {
		return nil, fmt.Errorf("k3s.image %q is not an image reference: %w", refStr, err)
	}
	reg, err := registries.GetPrivateRegistries(src.RegistriesFile)
	if err != nil {
		return nil, fmt.Errorf("reading registries file %s: %w", src.RegistriesFile, err)
	}
	img, err := reg.Image(ref, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		regs := "mirrors and credentials go in a K3s-format registries.yaml named by the spec's k3s.registries, a path relative to the spec file"
		if src.RegistriesFile != "" {
			regs = "mirrors and credentials come from k3s.registries, " + src.RegistriesFile
		}
		return nil, fmt.Errorf("pulling K3s image %s: %w; check the name and the registry: %s; or %s", ref, err, regs, dirHint)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("K3s image %s: reading its digest: %w", ref, err)
	}
	pinned := ref.Context().Name() + "@" + digest.String()
	log = log.With("image", pinned)

	dir := filepath.Join(cacheDir, "k3s", "oci", digest.Hex)
	bin := filepath.Join(dir, BinaryName)
	sum, err := cachedExtract(bin)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("cached k3s extraction does not verify; extracting it again", "binary", bin, "error", err)
		}
		if sum, err = extractBinary(img, pinned, dir); err != nil {
			return nil, err
		}
		log.Info("extracted k3s from image", "binary", bin)
	}

	a := &Artifacts{Binary: bin, BinarySHA256: sum, AirgapSHA256: map[string]string{},
		Source: "oci " + pinned, DownloadLocation: "NOASSERTION",
		PURL: "pkg:oci/" + path.Base(ref.Context().RepositoryStr()) + "@" + url.QueryEscape(digest.String()) +
			"?repository_url=" + url.QueryEscape(ref.Context().Name())}
	if a.Version, err = matchVersion(bin, src.Version, log); err != nil {
		return nil, fmt.Errorf("K3s image %s: %w", pinned, err)
	}
	if src.AirgapTarball == "" {
		log.Warn("no airgap images for the oci source (k3s.airgapTarball): K3s will pull its system images from the network at first start")
		return a, nil
	}
	air, err := filepath.Abs(src.AirgapTarball)
	if err != nil {
		return nil, fmt.Errorf("k3s.airgapTarball %q: %w", src.AirgapTarball, err)
	}
	tags, err := checkImageArchive(air)
	if err != nil {
		return nil, fmt.Errorf("k3s.airgapTarball: %w", err)
	}
	airSum, err := hashFile(air)
	if err != nil {
		return nil, fmt.Errorf("k3s.airgapTarball: %w", err)
	}
	a.AirgapImages = []string{air}
	a.AirgapSHA256[air] = airSum
	log.Info("k3s airgap images", "file", air, "sha256", airSum, "images", strings.Join(tags, ","))
	return a, nil
}

// cachedExtract returns the SHA-256 of a binary extracted earlier, checked
// against the sum recorded next to it.
func cachedExtract(bin string) (string, error) {
	want, err := schema.ReadFile(bin+".sha256", 128)
	if err != nil {
		return "", err
	}
	got, err := hashFile(bin)
	if err != nil {
		return "", err
	}
	if got != strings.TrimSpace(string(want)) {
		return "", fmt.Errorf("%s has SHA-256 %s, not the %s recorded at extraction", bin, got, strings.TrimSpace(string(want)))
	}
	return got, nil
}

// extractBinary extracts /bin/k3s from img into dir with wharfie's
// extractor (which refuses paths escaping the target).
func extractBinary(img v1.Image, pinned, dir string) (string, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", parent, err)
	}
	staletmp.Remove(parent, ".extract-*") // a killed build's
	tmp, err := os.MkdirTemp(parent, ".extract-")
	if err != nil {
		return "", fmt.Errorf("creating an extraction folder in %s: %w", parent, err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, BinaryName)
	if err := extract.ExtractDirs(img, map[string]string{imageBinaryPath: out}); err != nil {
		return "", fmt.Errorf("extracting %s from K3s image %s: %w", imageBinaryPath, pinned, err)
	}
	st, err := os.Lstat(out)
	if err != nil {
		return "", fmt.Errorf("K3s image %s has no %s: is it a rancher/k3s image? (%w)", pinned, imageBinaryPath, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("K3s image %s: %s is a %s, not the k3s binary", pinned, imageBinaryPath, st.Mode().Type())
	}
	if err := os.Chmod(out, 0o755); err != nil {
		return "", err
	}
	sum, err := hashFile(out)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(out+".sha256", []byte(sum+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("replacing %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("moving the extracted k3s to %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	return sum, nil
}

// matchVersion checks the binary against the wanted version (or reads the
// version from it when none is wanted).
func matchVersion(bin, want string, log *slog.Logger) (string, error) {
	if f, err := elf.Open(bin); err != nil {
		return "", fmt.Errorf("the k3s binary %s is not an executable (ELF) program: %v; a K3s release's k3s is one", bin, err)
	} else {
		f.Close()
	}
	found, err := binaryVersions(bin)
	if err != nil {
		return "", err
	}
	switch {
	case len(found) == 0:
		// K3s links its version in: a binary without one is not K3s.
		return "", fmt.Errorf("the k3s binary %s names no K3s version (like %s): it is not a K3s binary", bin, DefaultVersion)
	case want == "" && len(found) == 1:
		return found[0], nil
	case want == "":
		return "", fmt.Errorf("cannot tell which K3s version %s is (version strings in it: %q): set k3s.version", bin, found)
	}
	for _, f := range found {
		if f == want {
			if len(found) > 1 && log != nil {
				// The binary's own version cannot be told from the others
				// without running it: said, not guessed.
				log.Warn("the k3s binary names several K3s versions: taken as the one k3s.version asks for; check `k3s --version` on a node",
					"binary", bin, "versions", strings.Join(found, ","), "want", want)
			}
			return want, nil
		}
	}
	return "", fmt.Errorf("the k3s binary is K3s %q, but the spec asks for %s", found, want)
}

// checkImageArchive opens an image archive with wharfie's tarfile opener
// (decompressor chosen from the file name, bounded zstd window) and loads
// its manifest and first image, so that a truncated or foreign file fails
// the build instead of K3s's import at boot. It returns the image tags.
func checkImageArchive(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("image archive %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("image archive %s: %w", path, errNotRegular)
	}
	opener, err := tarfile.GetOpener(path)
	if err != nil {
		return nil, fmt.Errorf("image archive %s: %w", path, err)
	}
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("image archive %s is not a readable image archive (docker save format with manifest.json): %w", path, err)
	}
	var tags []string
	for _, d := range m {
		tags = append(tags, d.RepoTags...)
	}
	if len(tags) == 0 {
		return nil, fmt.Errorf("image archive %s holds no tagged image: K3s imports images by their tags", path)
	}
	tag, err := name.NewTag(tags[0])
	if err != nil {
		return nil, fmt.Errorf("image archive %s: tag %q: %w", path, tags[0], err)
	}
	img, err := tarball.Image(opener, &tag)
	if err != nil {
		return nil, fmt.Errorf("image archive %s: image %s: %w", path, tags[0], err)
	}
	if _, err := img.ConfigFile(); err != nil {
		return nil, fmt.Errorf("image archive %s: image %s: config: %w", path, tags[0], err)
	}
	return tags, nil
}
