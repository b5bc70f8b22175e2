package k3s

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
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
// local archive. Layers are content-addressed: every layer is read to its
// end, where its digest is checked, before the binary is kept (see
// extractBinary), so the binary is as trustworthy as the image reference.
// The image must be for the build's architecture, by its config and by the
// binary's ELF header.
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
	arch := sourceArch(src)
	img, err := reg.Image(ref, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch.Name}))
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
	// The platform asked for only picks among a multi-arch index's
	// images: a single image (an arm64 one pushed to a mirror from an ARM
	// laptop) comes whatever it is for.
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("K3s image %s: reading its config: %w", pinned, err)
	}
	if (cfg.OS != "" && cfg.OS != "linux") || (cfg.Architecture != "" && cfg.Architecture != arch.Name) {
		return nil, fmt.Errorf("K3s image %s is for %s/%s (its config), the image being built is for linux/%s: "+
			"use rancher/k3s for linux/%s, or a multi-arch image that holds it (push it with e.g. `crane copy --platform linux/%s`)",
			pinned, cfg.OS, cfg.Architecture, arch.Name, arch.Name, arch.Name)
	}

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
	if a.Version, err = matchVersion(bin, src.Version, arch, log); err != nil {
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

// extractBinary extracts /bin/k3s from img into dir: only a regular file
// is taken (a link could point anywhere on the build machine), written to a
// temporary folder, and kept only once the image's whole flattened file
// system has been read. go-containerregistry checks a layer against its
// digest only when the layer has been read to its end, and reports a
// mismatch after it has ended the flattened tar normally: an extractor that
// stops at the tar's end (wharfie's) never sees the error and would keep,
// and record the sum of, a binary the registry or a mirror changed.
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
	unverified := func(err error) error {
		return fmt.Errorf("K3s image %s: a layer could not be read or did not match its digest, nothing was kept: %w; "+
			"pull it again, and check the registry or mirror serving it (k3s.registries)", pinned, err)
	}
	rc := mutate.Extract(img) // upper layers first, whiteouts applied
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := false
	for !found {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", unverified(err)
		}
		if path.Clean("/"+h.Name) != imageBinaryPath {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return "", fmt.Errorf("K3s image %s: %s is a %s, not the k3s binary", pinned, imageBinaryPath, tarType(h.Typeflag))
		}
		if err := writeFrom(out, tr); err != nil {
			return "", fmt.Errorf("extracting %s from K3s image %s: %w", imageBinaryPath, pinned, err)
		}
		found = true
	}
	// The rest of the stream: a digest mismatch surfaces only here.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return "", unverified(err)
	}
	if !found {
		return "", fmt.Errorf("K3s image %s has no %s: is it a rancher/k3s image?", pinned, imageBinaryPath)
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

// writeFrom writes r into a new file out, synced to the disk.
func writeFrom(out string, r io.Reader) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// tarType names a tar entry's type for errors.
func tarType(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeDir:
		return "folder"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// cpuArch is what the K3s artifacts must be built for: the Go, Debian and
// OCI name of the architecture and the ELF machine of its programs (the
// image package's Arch.Name and Arch.ELFMachine).
type cpuArch struct {
	Name    string
	Machine elf.Machine
}

// sourceArch is the architecture src's artifacts must be for. Source names
// none: every source is amd64's (AirgapName, ChecksumName), as is every
// architecture the image package builds for.
func sourceArch(Source) cpuArch { return cpuArch{Name: "amd64", Machine: elf.EM_X86_64} }

// checkMachine makes sure bin is an ELF program for arch: a k3s for another
// CPU passes every other check and fails on every node with "exec format
// error".
func checkMachine(bin string, arch cpuArch) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("the k3s binary %s is not an executable (ELF) program: %v; a K3s release's k3s is one", bin, err)
	}
	defer f.Close()
	if f.Machine != arch.Machine {
		return fmt.Errorf("the k3s binary %s is built for %s, but the image is for %s (%s): use K3s built for %s", bin, f.Machine, arch.Name, arch.Machine, arch.Name)
	}
	return nil
}

// matchVersion checks the binary's architecture, and checks it against the
// wanted version (or reads the version from it when none is wanted).
func matchVersion(bin, want string, arch cpuArch, log *slog.Logger) (string, error) {
	if err := checkMachine(bin, arch); err != nil {
		return "", err
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
