package debian

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/etoile-os/etoile/internal/staletmp"
)

// DefaultLocalHint is what Fetch errors suggest instead of downloading.
const DefaultLocalHint = "point the build at a local kernel folder instead (spec field `kernel.dir`, or `etoile build --kernel-dir DIR`)"

// Fetcher downloads packages with the host's apt into a cache folder. Files
// are named as in the Debian pool (name_version_arch.deb) and each has a
// ".sha256" sidecar written once the download was verified.
type Fetcher struct {
	CacheDir string       // e.g. ~/.cache/etoile/debs
	Log      *slog.Logger // nil: discard
	// AptGet is the apt-get program to run; empty means "apt-get" from PATH.
	AptGet string
	// LocalHint overrides DefaultLocalHint in error messages, for packages
	// that are not the kernel.
	LocalHint string
	// Architecture is the Debian architecture to fetch (e.g. "arm64");
	// empty means the host's. Another one must be enabled in apt first
	// (dpkg --add-architecture ARCH; apt-get update).
	Architecture string
}

// aptURI is one line of `apt-get download --print-uris`.
type aptURI struct {
	URL, Filename string
	Size          int64
	SHA256        string // empty when apt printed another hash kind
}

func (f *Fetcher) log() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

func (f *Fetcher) hint() string {
	if f.LocalHint != "" {
		return f.LocalHint
	}
	return DefaultLocalHint
}

// Fetch returns the candidate version of package name, from the cache when it
// is already there and intact, otherwise downloaded with `apt-get download`
// (which needs no root). When apt cannot resolve or download the package but
// the cache holds a verified copy, that copy is used and a warning logged, so
// builds keep working offline. The package's Vendor says whose archive it
// comes from (vendorOf).
func (f *Fetcher) Fetch(ctx context.Context, name string) (*Package, error) {
	p, err := f.fetch(ctx, name)
	if p != nil {
		p.Vendor = vendorOf(p)
	}
	return p, err
}

func (f *Fetcher) fetch(ctx context.Context, name string) (*Package, error) {
	if !validPackageName(name) {
		return nil, fmt.Errorf("package name %q is not a valid Debian package name (lower-case letters, digits, '+', '-', '.')", name)
	}
	if f.CacheDir == "" {
		return nil, fmt.Errorf("debian.Fetcher.CacheDir is empty: set it to the package cache folder (e.g. ~/.cache/etoile/debs)")
	}
	if err := os.MkdirAll(f.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating package cache %s: %w", f.CacheDir, err)
	}
	log := f.log().With("package", name)

	aptGet := f.AptGet
	if aptGet == "" {
		aptGet = "apt-get"
	}
	aptPath, err := exec.LookPath(aptGet)
	if err != nil {
		if p := f.newestCached(name); p != nil {
			log.Warn("apt-get not found; using the cached package", "version", p.Version, "deb", p.DebPath)
			return p, nil
		}
		return nil, fmt.Errorf("fetching Debian package %q: %s not found (%w): install apt (Debian package \"apt\") or run on a Debian/Ubuntu host, or %s", name, aptGet, err, f.hint())
	}

	uri, err := f.printURI(ctx, aptPath, name)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err() // interrupted: apt was killed, nothing to fall back on
	}
	if err != nil {
		if p := f.newestCached(name); p != nil {
			log.Warn("apt could not resolve the package; using the cached copy", "version", p.Version, "deb", p.DebPath, "apt_error", err)
			return p, nil
		}
		return nil, f.fetchError(name, err)
	}
	dest := filepath.Join(f.CacheDir, uri.Filename)
	if p := f.adoptCopied(dest, name, uri.SHA256); p != nil {
		return p, nil
	}
	if p := f.verifiedCached(dest, uri.SHA256, log); p != nil {
		log.Debug("package cache hit", "version", p.Version, "deb", dest)
		return p, nil
	}
	p, err := f.download(ctx, aptPath, name, uri, log)
	if err != nil && ctx.Err() != nil {
		// Interrupted (Ctrl-C): apt was killed, which is neither a network
		// failure nor a reason to fall back on an older copy.
		return nil, fmt.Errorf("fetching Debian package %q: %w", name, ctx.Err())
	}
	if err != nil {
		if p := f.newestCached(name); p != nil {
			log.Warn("downloading the package failed; using the cached copy", "version", p.Version, "deb", p.DebPath, "apt_error", err)
			return p, nil
		}
		return nil, f.fetchError(name, err)
	}
	return p, nil
}

// aptName is name[:arch][=version] as apt-get takes it.
func (f *Fetcher) aptName(name, version string) string {
	if f.Architecture != "" {
		name += ":" + f.Architecture
	}
	if version != "" {
		name += "=" + version
	}
	return name
}

func (f *Fetcher) fetchError(name string, err error) error {
	// apt says it does not know the package when the architecture is not
	// enabled; another failure (the network) gets the usual hint.
	if host := hostArch(); f.Architecture != "" && host != "" && host != f.Architecture && strings.Contains(err.Error(), "Unable to locate package") {
		return fmt.Errorf("fetching Debian package %q for %s: %w; this machine is %s, and apt offers another architecture's packages only once it is enabled: "+
			"run `dpkg --add-architecture %s && apt-get update` (as root), or %s", name, f.Architecture, err, host, f.Architecture, f.hint())
	}
	return fmt.Errorf("fetching Debian package %q: %w; run `apt-get update` (as root) if the package lists are missing or stale, or %s", name, err, f.hint())
}

// hostArch is the build machine's Debian architecture (dpkg's), or ""
// when not known. Tests replace it.
var hostArch = func() string {
	if out, err := exec.Command("dpkg", "--print-architecture").Output(); err == nil {
		if a := strings.TrimSpace(string(out)); a != "" {
			return a
		}
	}
	return map[string]string{"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf", "ppc64le": "ppc64el",
		"riscv64": "riscv64", "s390x": "s390x", "mips64le": "mips64el", "loong64": "loong64"}[runtime.GOARCH]
}

// aptCmd runs apt-get with a stable locale, and as root tells apt not to drop
// to the _apt user, which cannot write into the caller's folders.
func aptCmd(ctx context.Context, aptPath, dir string, args ...string) *exec.Cmd {
	var full []string
	if os.Geteuid() == 0 {
		full = append(full, "-o", "APT::Sandbox::User=root")
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, aptPath, full...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	// Interrupted (Ctrl-C), apt and its download methods (children that
	// hold its output open) are asked to stop as a group, so that apt
	// removes its partial files and the build ends at once rather than
	// when the methods' downloads do; SIGKILL after aptStopWait.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = aptStopWait
	return cmd
}

// aptStopWait is how long an interrupted apt has to stop before it is
// killed and its output no longer waited for.
const aptStopWait = 5 * time.Second

func runApt(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return nil, fmt.Errorf("`%s` failed (%w): %s", strings.Join(cmd.Args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

func (f *Fetcher) printURI(ctx context.Context, aptPath, name string) (*aptURI, error) {
	// apt-get leaves out files already present in its working folder, so it
	// runs in an empty one.
	staletmp.Remove(f.CacheDir, ".query-*")
	empty, err := os.MkdirTemp(f.CacheDir, ".query-")
	if err != nil {
		return nil, fmt.Errorf("creating a scratch folder in %s: %w", f.CacheDir, err)
	}
	defer os.RemoveAll(empty)
	out, err := runApt(aptCmd(ctx, aptPath, empty, "download", "--print-uris", f.aptName(name, "")))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		u, err := parseURILine(line)
		if err != nil || u == nil {
			continue
		}
		if pkgName, _, arch, ok := splitPoolFilename(u.Filename); ok && pkgName == name && (f.Architecture == "" || arch == f.Architecture || arch == "all") {
			return u, nil
		}
	}
	return nil, fmt.Errorf("`apt-get download --print-uris %s` printed no download for it: %q", name, strings.TrimSpace(string(out)))
}

// parseURILine parses "'URL' FILENAME SIZE SHA256:HEX"; nil for other lines.
func parseURILine(line string) (*aptURI, error) {
	fields := strings.Fields(line)
	if len(fields) < 3 || !strings.HasPrefix(fields[0], "'") || !strings.HasSuffix(fields[0], "'") {
		return nil, nil
	}
	u := &aptURI{URL: strings.Trim(fields[0], "'"), Filename: fields[1]}
	if strings.ContainsAny(u.Filename, "/\\") || !strings.HasSuffix(u.Filename, ".deb") || strings.HasPrefix(u.Filename, ".") {
		return nil, fmt.Errorf("apt printed an unexpected file name %q", u.Filename)
	}
	fmt.Sscan(fields[2], &u.Size)
	if len(fields) >= 4 {
		if h, ok := strings.CutPrefix(fields[3], "SHA256:"); ok && len(h) == 64 {
			if _, err := hex.DecodeString(h); err == nil {
				u.SHA256 = strings.ToLower(h)
			}
		}
	}
	return u, nil
}

// splitPoolFilename splits name_version_arch.deb; the version is unescaped
// ("%3a" is the epoch colon).
func splitPoolFilename(file string) (name, version, arch string, ok bool) {
	base, found := strings.CutSuffix(file, ".deb")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(base, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	v, err := url.PathUnescape(parts[1])
	if err != nil {
		return "", "", "", false
	}
	return parts[0], v, parts[2], true
}

func sidecarPath(deb string) string { return deb + ".sha256" }

// verifiedCached returns the cached package at deb when its content matches
// its sidecar and, when known, apt's expected hash. A mismatch means the
// entry is corrupt: it is removed so that the caller fetches it again.
func (f *Fetcher) verifiedCached(deb, wantSHA string, log *slog.Logger) *Package {
	side, err := os.ReadFile(sidecarPath(deb))
	if err != nil {
		if _, statErr := os.Stat(deb); statErr == nil {
			// Not known to be the build's: a .deb copied in by hand (the
			// offline way the errors suggest) that adoptCopied could not
			// take. Kept, out of the way.
			aside := moveAside(deb)
			log.Warn("a package file in the cache has no checksum file and is not the package apt offers (another version, or a damaged copy): moved aside, fetching the package again",
				"deb", deb, "moved_to", aside)
		}
		return nil
	}
	recorded := strings.TrimSpace(strings.SplitN(string(side), " ", 2)[0])
	p, err := ReadPackage(deb)
	switch {
	case err != nil:
		log.Warn("cached package is unreadable; fetching it again", "deb", deb, "err", err)
	case p.SHA256 != recorded:
		log.Warn("cached package is corrupted (checksum mismatch); fetching it again", "deb", deb, "sha256", p.SHA256, "recorded", recorded)
	case wantSHA != "" && p.SHA256 != wantSHA:
		log.Warn("cached package differs from what apt offers; fetching it again", "deb", deb, "sha256", p.SHA256, "apt_sha256", wantSHA)
	default:
		p.Filename = filepath.Base(deb)
		return p
	}
	removeEntry(deb)
	return nil
}

// moveAside renames a package file the build did not write to
// NAME.deb.mismatch (NAME.deb.mismatch.1, … when taken) and returns the new
// name; the file stays where it is when that fails.
func moveAside(deb string) string {
	for i := 0; i < 100; i++ {
		dst := deb + ".mismatch"
		if i > 0 {
			dst += fmt.Sprintf(".%d", i)
		}
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		if err := os.Rename(deb, dst); err != nil {
			return deb
		}
		return dst
	}
	return deb
}

func removeEntry(deb string) {
	_ = os.Remove(deb)
	_ = os.Remove(sidecarPath(deb))
}

// newestCached finds the highest cached version of name that still verifies.
func (f *Fetcher) newestCached(name string) *Package {
	matches, _ := filepath.Glob(filepath.Join(f.CacheDir, name+"_*.deb"))
	type cand struct{ path, version string }
	var cands []cand
	for _, m := range matches {
		if n, v, arch, ok := splitPoolFilename(filepath.Base(m)); ok && n == name && (f.Architecture == "" || arch == f.Architecture || arch == "all") {
			cands = append(cands, cand{m, v})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return CompareVersions(cands[i].version, cands[j].version) > 0 })
	for _, c := range cands {
		if p := f.adoptCopied(c.path, name, ""); p != nil {
			return p
		}
		if p := f.verifiedCached(c.path, "", f.log()); p != nil {
			return p
		}
	}
	return nil
}

// adoptCopied takes a .deb an operator copied into the cache by hand (no
// checksum file: the offline way the errors suggest) when it is the package
// asked for, for this architecture: its checksum is recorded from now on.
// When apt knows the package's SHA-256 (wantSHA) the file must match it.
// It returns nil for anything else, which verifiedCached then judges.
func (f *Fetcher) adoptCopied(deb, name, wantSHA string) *Package {
	if _, err := os.Stat(sidecarPath(deb)); err == nil {
		return nil
	}
	if _, err := os.Stat(deb); err != nil {
		return nil
	}
	p, err := ReadPackage(deb)
	if err != nil || p.Name != name || (f.Architecture != "" && p.Architecture != f.Architecture && p.Architecture != "all") ||
		(wantSHA != "" && p.SHA256 != wantSHA) {
		return nil
	}
	p.Filename = filepath.Base(deb)
	if err := writeFileAtomic(sidecarPath(deb), []byte(p.SHA256+"  "+p.Filename+"\n")); err != nil {
		return nil
	}
	f.log().Warn("using a package copied into the cache by hand; its checksum is recorded from now on", "package", name, "version", p.Version, "deb", deb, "sha256", p.SHA256)
	return p
}

func (f *Fetcher) download(ctx context.Context, aptPath, name string, uri *aptURI, log *slog.Logger) (*Package, error) {
	_, version, _, ok := splitPoolFilename(uri.Filename)
	if !ok {
		return nil, fmt.Errorf("apt offered file %q, which is not named package_version_arch.deb", uri.Filename)
	}
	staletmp.Remove(f.CacheDir, ".download-*") // a killed build's
	tmp, err := os.MkdirTemp(f.CacheDir, ".download-")
	if err != nil {
		return nil, fmt.Errorf("creating download folder in %s: %w", f.CacheDir, err)
	}
	defer os.RemoveAll(tmp)
	log.Info("downloading Debian package", "version", version, "size", uri.Size, "url", uri.URL)
	// Pinning the version keeps the download equal to what --print-uris named.
	if _, err := runApt(aptCmd(ctx, aptPath, tmp, "download", f.aptName(name, version))); err != nil {
		return nil, err
	}
	got := filepath.Join(tmp, uri.Filename)
	p, err := ReadPackage(got)
	if err != nil {
		return nil, fmt.Errorf("apt-get downloaded %s but it is not a readable package: %w", uri.Filename, err)
	}
	if uri.SHA256 != "" && p.SHA256 != uri.SHA256 {
		return nil, fmt.Errorf("downloaded %s has sha256 %s, but the archive index says %s: a proxy or mirror is serving a different file", uri.Filename, p.SHA256, uri.SHA256)
	}
	if p.Name != name {
		return nil, fmt.Errorf("downloaded %s declares package %q, not %q", uri.Filename, p.Name, name)
	}
	dest := filepath.Join(f.CacheDir, uri.Filename)
	if err := os.Rename(got, dest); err != nil {
		return nil, fmt.Errorf("moving %s into the cache: %w", uri.Filename, err)
	}
	// The sidecar is written last: a .deb without one is treated as unverified.
	if err := writeFileAtomic(sidecarPath(dest), []byte(p.SHA256+"  "+uri.Filename+"\n")); err != nil {
		return nil, fmt.Errorf("recording checksum of %s: %w", dest, err)
	}
	p.DebPath, p.Filename = dest, uri.Filename
	return p, nil
}

func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name)+"-")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// FileSHA256 hashes a file; the kernel cache keys extraction folders by it.
func FileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
