package k3s

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
)

// fetchDir verifies a local folder laid out like a K3s release, the same way
// a download is verified, and uses the files in place.
func fetchDir(src Source, log *slog.Logger) (*Artifacts, error) {
	if src.Dir == "" {
		return nil, fmt.Errorf("k3s source %q needs a folder: set k3s.dir, pass `etoile build --k3s-dir DIR` or set %s", KindDir, EnvDir)
	}
	dir, err := filepath.Abs(src.Dir)
	if err != nil {
		return nil, fmt.Errorf("k3s folder %q: %w", src.Dir, err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("k3s folder %s is not a folder: it must hold %s, %s and %s as in a K3s release", dir, BinaryName, AirgapName, ChecksumName)
	}
	a, err := verifiedFolder(dir, "")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("k3s folder %s is not a K3s release folder: it must hold %s, %s and %s (%w)", dir, BinaryName, AirgapName, ChecksumName, err)
	}
	if err != nil {
		return nil, fmt.Errorf("k3s folder %s does not verify against its %s: %w", dir, ChecksumName, err)
	}
	if a.Version, err = matchVersion(a.Binary, src.Version, sourceArch(src), log); err != nil {
		return nil, fmt.Errorf("k3s folder %s: %w: use a K3s release folder (of k3s.version, when set)", dir, err)
	}
	// The checksum file comes with the folder: it proves no more than the
	// folder does, so the archive is opened as K3s will at boot.
	if _, err := checkImageArchive(a.AirgapImages[0]); err != nil {
		return nil, fmt.Errorf("k3s folder %s: %w", dir, err)
	}
	// The folder's path stays out of the SBOM: the same files built from
	// another folder give the same image.
	a.Source = "a local release folder"
	a.DownloadLocation = "NOASSERTION"
	log.Info("k3s folder verified", "dir", dir, "version", a.Version)
	return a, nil
}

var embeddedVersionRE = regexp.MustCompile(`v[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(-(rc|alpha|beta)[0-9]{1,3})?\+k3s[0-9]{1,3}`)

// binaryVersions returns the distinct K3s version strings inside a binary
// (K3s links its version in with -X, so the string is there verbatim).
func binaryVersions(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const chunk, overlap = 1 << 20, 64
	buf := make([]byte, chunk+overlap)
	var found []string
	keep := 0
	for {
		n, err := io.ReadFull(f, buf[keep:])
		data := buf[:keep+n]
		for _, m := range embeddedVersionRE.FindAll(data, -1) {
			if s := string(m); !slices.Contains(found, s) {
				found = append(found, s)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		// Carry the tail over so a string across the boundary is seen.
		keep = copy(buf, data[len(data)-overlap:])
	}
	slices.Sort(found)
	return found, nil
}
