package debian

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// metaPackage is small (about 1.5 KB) and always present in Debian's archive,
// so tests against the real apt stay fast.
const metaPackage = "linux-image-amd64"

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func testLogger(t *testing.T) (*slog.Logger, *logBuf) {
	buf := &logBuf{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func requireApt(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Fatalf("apt-get not found: these tests need the Debian package \"apt\" (and a configured sources list + `apt-get update`)")
	}
}

func TestFetchRealAptCachesAndVerifies(t *testing.T) {
	requireApt(t)
	ctx := context.Background()
	log, logs := testLogger(t)
	f := &Fetcher{CacheDir: t.TempDir(), Log: log}

	p, err := f.Fetch(ctx, metaPackage)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	t.Logf("fetched %s %s %s sha256=%s depends=%q", p.Name, p.Version, p.Architecture, p.SHA256, p.Depends)
	if p.Name != metaPackage || p.Version == "" || p.Architecture == "" {
		t.Fatalf("metadata = %+v", p)
	}
	if len(p.Depends) == 0 || !strings.HasPrefix(p.Depends[0], "linux-image-") {
		t.Errorf("Depends = %q, want the versioned linux-image package first", p.Depends)
	}
	if filepath.Dir(p.DebPath) != f.CacheDir || filepath.Base(p.DebPath) != p.Filename {
		t.Errorf("DebPath = %s, Filename = %s, want a file in %s", p.DebPath, p.Filename, f.CacheDir)
	}
	side, err := os.ReadFile(p.DebPath + ".sha256")
	if err != nil || !strings.HasPrefix(string(side), p.SHA256) {
		t.Errorf("sidecar = %q (%v), want it to start with %s", side, err, p.SHA256)
	}
	if !strings.Contains(logs.String(), "downloading Debian package") {
		t.Errorf("first fetch did not log a download:\n%s", logs)
	}

	// second fetch: a cache hit, no download
	mark := len(logs.String())
	p2, err := f.Fetch(ctx, metaPackage)
	if err != nil || p2.SHA256 != p.SHA256 {
		t.Fatalf("second Fetch = %+v, %v", p2, err)
	}
	if strings.Contains(logs.String()[mark:], "downloading") {
		t.Errorf("second fetch downloaded again:\n%s", logs.String()[mark:])
	}

	// a corrupted entry is detected, logged and fetched again
	data, _ := os.ReadFile(p.DebPath)
	data[len(data)-10] ^= 0xff
	if err := os.WriteFile(p.DebPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mark = len(logs.String())
	p3, err := f.Fetch(ctx, metaPackage)
	if err != nil {
		t.Fatalf("Fetch after corruption: %v", err)
	}
	after := logs.String()[mark:]
	if !strings.Contains(after, "corrupted") || !strings.Contains(after, "downloading") {
		t.Errorf("corruption not logged and refetched:\n%s", after)
	}
	if sum, _ := FileSHA256(p3.DebPath); sum != p.SHA256 {
		t.Errorf("refetched file hashes to %s, want %s", sum, p.SHA256)
	}

	// offline: apt fails, the verified cache entry is used with a warning
	fake := filepath.Join(t.TempDir(), "apt-get")
	os.WriteFile(fake, []byte("#!/bin/sh\necho 'E: Failed to fetch http://deb.debian.org/ Temporary failure resolving' >&2\nexit 100\n"), 0o755)
	offline := &Fetcher{CacheDir: f.CacheDir, Log: log, AptGet: fake}
	mark = len(logs.String())
	p4, err := offline.Fetch(ctx, metaPackage)
	if err != nil || p4.SHA256 != p.SHA256 {
		t.Fatalf("offline Fetch = %+v, %v; want the cached package", p4, err)
	}
	if after := logs.String()[mark:]; !strings.Contains(after, "level=WARN") || !strings.Contains(after, "cached") {
		t.Errorf("offline reuse did not warn:\n%s", after)
	}
}

func TestFetchErrors(t *testing.T) {
	requireApt(t)
	ctx := context.Background()
	fake := filepath.Join(t.TempDir(), "apt-get")
	os.WriteFile(fake, []byte("#!/bin/sh\necho 'E: Failed to fetch http://deb.debian.org/ Temporary failure resolving' >&2\nexit 100\n"), 0o755)
	for _, tc := range []struct {
		name, pkg string
		fetcher   Fetcher
		want      []string
	}{
		{"unknown package", "etoile-no-such-package", Fetcher{},
			[]string{`"etoile-no-such-package"`, "Unable to locate package", "apt-get update", "kernel.dir", "--kernel-dir"}},
		{"apt missing", metaPackage, Fetcher{AptGet: "/nonexistent/apt-get"},
			[]string{"apt-get not found", `Debian package "apt"`, "kernel.dir"}},
		{"apt fails, empty cache", metaPackage, Fetcher{AptGet: fake},
			[]string{"Temporary failure resolving", "apt-get update", "--kernel-dir"}},
		{"custom hint", "etoile-no-such-package", Fetcher{LocalHint: "set bootloader.dir"},
			[]string{"set bootloader.dir"}},
		{"bad name", "Bad Name", Fetcher{}, []string{`"Bad Name"`, "not a valid Debian package name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fetcher
			f.CacheDir = t.TempDir()
			_, err := f.Fetch(ctx, tc.pkg)
			if err == nil {
				t.Fatalf("Fetch succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseURILine(t *testing.T) {
	line := "'http://deb.debian.org/debian/pool/main/l/linux-signed-amd64/linux-image-amd64_6.1.192-2_amd64.deb' linux-image-amd64_6.1.192-2_amd64.deb 1480 SHA256:45457bcfc86c87585800b5656bdf2773b063a3bb95486b0e820d51e870491f8d"
	u, err := parseURILine(line)
	if err != nil || u == nil || u.Filename != "linux-image-amd64_6.1.192-2_amd64.deb" || u.Size != 1480 || !strings.HasPrefix(u.SHA256, "45457b") {
		t.Fatalf("parseURILine = %+v, %v", u, err)
	}
	for _, bad := range []string{"'u' ../../etc/passwd.deb 1 SHA256:x", "'u' a/b.deb 1"} {
		if _, err := parseURILine(bad); err == nil {
			t.Errorf("parseURILine(%q) accepted a path", bad)
		}
	}
}

// TestFetchAdoptsACopiedDeb follows the offline advice of the errors: a .deb
// copied by hand into the cache (no checksum file) is used when apt cannot
// help, and its checksum recorded; a file named like the package that is
// another package is not.
func TestFetchAdoptsACopiedDeb(t *testing.T) {
	requireApt(t)
	ctx := context.Background()
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	online := &Fetcher{CacheDir: t.TempDir(), Log: log, Architecture: "amd64"}
	p, err := online.Fetch(ctx, "ca-certificates")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p.DebPath)
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "apt-get")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'E: Temporary failure resolving deb.debian.org' >&2\nexit 100\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	offline := &Fetcher{CacheDir: t.TempDir(), Log: log, Architecture: "amd64", AptGet: fake}
	copied := filepath.Join(offline.CacheDir, filepath.Base(p.DebPath))
	if err := os.WriteFile(copied, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := offline.Fetch(ctx, "ca-certificates")
	if err != nil {
		t.Fatalf("the copied .deb was not used: %v\n%s", err, logs.String())
	}
	if got.SHA256 != p.SHA256 || got.Version != p.Version {
		t.Errorf("got %s %s, want %s %s", got.Version, got.SHA256, p.Version, p.SHA256)
	}
	if side, err := os.ReadFile(copied + ".sha256"); err != nil || !strings.HasPrefix(string(side), p.SHA256) {
		t.Errorf("checksum not recorded: %q %v", side, err)
	}
	// apt still resolves the package from its lists (offline, the usual
	// case) but cannot download it: the copy is taken when it is what apt
	// names, by its SHA-256, and refused when it is not.
	printer := filepath.Join(t.TempDir(), "apt-get")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$*\" in *--print-uris*) echo \"'http://deb.debian.org/debian/pool/main/c/ca-certificates/%[1]s' %[1]s %[2]d SHA256:%[3]s\";; *) echo 'E: Temporary failure resolving deb.debian.org' >&2; exit 100;; esac\n",
		filepath.Base(p.DebPath), len(data), p.SHA256)
	if err := os.WriteFile(printer, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	resolving := &Fetcher{CacheDir: t.TempDir(), Log: log, Architecture: "amd64", AptGet: printer}
	if err := os.WriteFile(filepath.Join(resolving.CacheDir, filepath.Base(p.DebPath)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := resolving.Fetch(ctx, "ca-certificates"); err != nil || got.SHA256 != p.SHA256 {
		t.Errorf("copied .deb with apt's lists present: %v, %v\n%s", got, err, logs.String())
	}
	wrong := &Fetcher{CacheDir: t.TempDir(), Log: log, Architecture: "amd64", AptGet: printer}
	if err := os.WriteFile(filepath.Join(wrong.CacheDir, filepath.Base(p.DebPath)), append(slices.Clone(data), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Fetch(ctx, "ca-certificates"); err == nil {
		t.Error("a copy whose SHA-256 differs from apt's was used")
	}
	// Another package under the name of the one asked for is not taken.
	other := &Fetcher{CacheDir: t.TempDir(), Log: log, Architecture: "amd64", AptGet: fake}
	if err := os.WriteFile(filepath.Join(other.CacheDir, "systemd-boot-efi_1.0_amd64.deb"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Fetch(ctx, "systemd-boot-efi"); err == nil {
		t.Error("a ca-certificates .deb named systemd-boot-efi_1.0_amd64.deb was used for systemd-boot-efi")
	}
}
