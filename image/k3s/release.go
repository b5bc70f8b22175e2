package k3s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etoile-os/etoile/internal/staletmp"
	"github.com/etoile-os/etoile/schema"
)

// maxDownload bounds one release file; K3s's airgap tarball is ~200 MB and
// its binary ~70 MB, so a server sending more is not a K3s release.
const maxDownload = 4 << 30

// httpClient has no overall timeout (the airgap tarball is large on slow
// links); the context bounds a download, and connecting, the TLS handshake,
// the first response byte and each stall of the body (stallTimeout) have
// their own limits so that a dead network fails fast. An https URL is never
// followed to a plain-HTTP one: the checksum file is what every file is
// verified against.
var httpClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirected from %s to %s: a plain-HTTP download of an https URL is refused", via[0].URL.Redacted(), req.URL.Redacted())
		}
		return nil
	},
}

// stallTimeout ends a download whose body sends nothing for that long.
var stallTimeout = time.Minute

// errStalled is a download's cause when its body stalled.
var errStalled = errors.New("stalled")

// releaseURL is the download URL of one file of a release. The '+' of K3s
// versions is escaped as GitHub writes it (%2B); a bare '+' in a path works
// on GitHub today but is a space to some proxies.
func releaseURL(base, version, file string) string {
	if base == "" {
		base = DefaultBaseURL
	}
	v := strings.ReplaceAll(url.PathEscape(version), "+", "%2B")
	return strings.TrimRight(base, "/") + "/" + v + "/" + url.PathEscape(file)
}

// fetchRelease returns the release's files from cacheDir/k3s/<version>,
// downloading and verifying them first when the cache lacks them or no
// longer matches the checksum file.
func fetchRelease(ctx context.Context, src Source, cacheDir string, log *slog.Logger) (*Artifacts, error) {
	version := versionOrDefault(src.Version)
	if cacheDir == "" {
		return nil, fmt.Errorf("k3s release %s: no cache folder given to keep the download in", version)
	}
	dir := filepath.Join(cacheDir, "k3s", version)
	log = log.With("k3s_version", version)
	binURL := releaseURL(src.BaseURL, version, BinaryName)

	a, err := verifiedFolder(dir, version)
	switch {
	case err == nil:
		// The checksum file verifies the download, not what it is for.
		if err := checkMachine(a.Binary, sourceArch(src)); err != nil {
			return nil, fmt.Errorf("K3s release %s from %s: %w", version, binURL, err)
		}
		log.Debug("k3s release cache hit", "dir", dir)
		a.Source = "release " + binURL
		a.DownloadLocation = binURL
		return a, nil
	case errors.Is(err, fs.ErrNotExist):
		// Not cached yet.
	default:
		log.Warn("cached K3s release does not verify; fetching it again", "dir", dir, "error", err)
		for _, n := range []string{BinaryName, AirgapName, ChecksumName} {
			if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("removing corrupted cache entry %s: %w", filepath.Join(dir, n), err)
			}
		}
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating K3s cache folder %s: %w", dir, err)
	}
	sumURL := releaseURL(src.BaseURL, version, ChecksumName)
	var sumData strings.Builder
	if _, err := download(ctx, sumURL, &sumData, maxChecksumFile, log); err != nil {
		return nil, err
	}
	sums, err := parseChecksums([]byte(sumData.String()))
	if err != nil {
		return nil, fmt.Errorf("K3s release checksum file %s: %w", sumURL, err)
	}
	for _, n := range []string{BinaryName, AirgapName} {
		if _, ok := sums[n]; !ok {
			return nil, fmt.Errorf("K3s release checksum file %s does not list %s: is %s a K3s release for amd64?", sumURL, n, version)
		}
		mode := os.FileMode(0o644)
		if n == BinaryName {
			mode = 0o755
		}
		if err := downloadVerified(ctx, releaseURL(src.BaseURL, version, n), filepath.Join(dir, n), sums[n], mode, log); err != nil {
			return nil, err
		}
	}
	// The checksum file lands last: a folder with it is complete.
	if err := writeAtomic(filepath.Join(dir, ChecksumName), []byte(sumData.String()), 0o644); err != nil {
		return nil, err
	}
	a, err = verifiedFolder(dir, version)
	if err != nil {
		return nil, fmt.Errorf("K3s release %s in %s does not verify right after download: %w", version, dir, err)
	}
	if err := checkMachine(a.Binary, sourceArch(src)); err != nil {
		return nil, fmt.Errorf("K3s release %s from %s: %w", version, binURL, err)
	}
	a.Source = "release " + binURL
	a.DownloadLocation = binURL
	return a, nil
}

// verifiedFolder checks a release-shaped folder against its checksum file.
// fs.ErrNotExist (wrapped) means the folder is incomplete.
func verifiedFolder(dir, version string) (*Artifacts, error) {
	data, err := schema.ReadFile(filepath.Join(dir, ChecksumName), maxChecksumFile)
	if err != nil {
		return nil, err
	}
	sums, err := parseChecksums(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ChecksumName), err)
	}
	a := &Artifacts{Version: version, AirgapSHA256: map[string]string{}}
	a.Binary = filepath.Join(dir, BinaryName)
	if a.BinarySHA256, err = checkFile(a.Binary, BinaryName, sums); err != nil {
		return nil, err
	}
	air := filepath.Join(dir, AirgapName)
	sum, err := checkFile(air, AirgapName, sums)
	if err != nil {
		return nil, err
	}
	a.AirgapImages = []string{air}
	a.AirgapSHA256[air] = sum
	return a, nil
}

// download copies the body of a GET of u into w, at most limit bytes.
// Errors name the URL and the offline way.
func download(ctx context.Context, u string, w io.Writer, limit int64, log *slog.Logger) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("downloading %s: %w", u, err)
	}
	req.Header.Set("User-Agent", "etoile-build")
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("downloading %s: %w; %s", u, err, dirHint)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("downloading %s: server answered %s; check the K3s version, or %s", u, resp.Status, dirHint)
	}
	if resp.ContentLength > limit {
		return 0, fmt.Errorf("downloading %s: %d bytes announced, more than the %d allowed", u, resp.ContentLength, limit)
	}
	// Each stretch of stallTimeout without a byte ends the download.
	stall := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	body := readFunc(func(p []byte) (int, error) {
		n, err := resp.Body.Read(p)
		if n > 0 {
			stall.Reset(stallTimeout)
		}
		return n, err
	})
	n, err := io.Copy(w, io.LimitReader(body, limit+1))
	if errors.Is(context.Cause(ctx), errStalled) {
		return n, fmt.Errorf("downloading %s: nothing came for %s after %d bytes; %s", u, stallTimeout, n, dirHint)
	}
	if err != nil {
		return n, fmt.Errorf("downloading %s: %w after %d bytes; %s", u, err, n, dirHint)
	}
	if n > limit {
		return n, fmt.Errorf("downloading %s: more than the %d bytes allowed", u, limit)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("downloading %s: got %d of %d bytes", u, n, resp.ContentLength)
	}
	log.Info("downloaded", "url", u, "bytes", n, "seconds", time.Since(start).Round(time.Millisecond).Seconds())
	return n, nil
}

// downloadVerified downloads u to a temporary file next to dest, checks its
// SHA-256 and only then renames it to dest.
func downloadVerified(ctx context.Context, u, dest, wantSHA string, mode os.FileMode, log *slog.Logger) error {
	staletmp.Remove(filepath.Dir(dest), ".*.part-*") // a killed build's
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".part-")
	if err != nil {
		return fmt.Errorf("creating a download file next to %s: %w", dest, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	h := sha256.New()
	if _, err := download(ctx, u, io.MultiWriter(tmp, h), maxDownload, log); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSHA {
		return fmt.Errorf("downloaded %s has SHA-256 %s but the release's %s lists %s: the download is corrupted or tampered with, nothing was kept", u, got, ChecksumName, wantSHA)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("moving the verified download to %s: %w", dest, err)
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// readFunc is an io.Reader made of a function.
type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }
