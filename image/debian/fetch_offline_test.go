package debian

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeApt writes an apt-get that prints print (for --print-uris) and
// fails every download as an offline machine does.
func fakeApt(t *testing.T, print string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "apt-get")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$*\" in *--print-uris*) if [ -n %[1]q ]; then echo %[1]q; exit 0; fi;; esac\n"+
		"echo 'E: Unable to locate package' >&2\nexit 100\n", print)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFetchErrorNamesForeignArchitecture: an image for another
// architecture than the build machine's needs it enabled in apt: the error
// says how.
func TestFetchErrorNamesForeignArchitecture(t *testing.T) {
	defer func(f func() string) { hostArch = f }(hostArch)
	apt := fakeApt(t, "")
	for _, tc := range []struct {
		host, arch string
		hint       bool
	}{{"arm64", "amd64", true}, {"amd64", "arm64", true}, {"amd64", "amd64", false}, {"amd64", "", false}} {
		hostArch = func() string { return tc.host }
		f := &Fetcher{CacheDir: t.TempDir(), AptGet: apt, Architecture: tc.arch}
		_, err := f.Fetch(context.Background(), "linux-image-amd64")
		if err == nil {
			t.Fatalf("host %s, image %s: Fetch succeeded", tc.host, tc.arch)
		}
		want := "dpkg --add-architecture " + tc.arch + " && apt-get update"
		if got := strings.Contains(err.Error(), want); got != tc.hint {
			t.Errorf("host %s, image %s: error mentions %q: %v, want %v:\n%v", tc.host, tc.arch, want, got, tc.hint, err)
		}
		if !strings.Contains(err.Error(), "kernel.dir") {
			t.Errorf("the local alternative is gone: %v", err)
		}
	}
	// A failure of another kind (the mirror unreachable) is not blamed on
	// the architecture.
	hostArch = func() string { return "arm64" }
	offline := filepath.Join(t.TempDir(), "apt-get")
	if err := os.WriteFile(offline, []byte("#!/bin/sh\necho 'E: Failed to fetch http://deb.debian.org/…  Temporary failure resolving' >&2\nexit 100\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{CacheDir: t.TempDir(), AptGet: offline, Architecture: "amd64"}
	if _, err := f.Fetch(context.Background(), "linux-image-amd64"); err == nil || strings.Contains(err.Error(), "--add-architecture") {
		t.Errorf("an unreachable mirror on a foreign host: %v, want no --add-architecture hint", err)
	}
}

// TestFetchKeepsACopiedDebThatDiffers: a .deb copied into the cache by hand
// whose SHA-256 is not the one apt offers is not used, and not deleted
// either: it is moved aside, named in a warning, and still there when the
// download then fails.
func TestFetchKeepsACopiedDebThatDiffers(t *testing.T) {
	control := "Package: etoile-test\nVersion: 1.0\nArchitecture: amd64\nDescription: a test\n"
	deb := buildDeb(t, t.TempDir(), control, "gz", testData)
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	const file = "etoile-test_1.0_amd64.deb"
	apt := fakeApt(t, fmt.Sprintf("'http://deb.debian.org/debian/pool/main/e/etoile-test/%s' %s %d SHA256:%s", file, file, len(data), strings.Repeat("ab", 32)))
	log, logs := testLogger(t)
	f := &Fetcher{CacheDir: t.TempDir(), Log: log, AptGet: apt, Architecture: "amd64"}
	copied := filepath.Join(f.CacheDir, file)
	if err := os.WriteFile(copied, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background(), "etoile-test"); err == nil {
		t.Fatal("Fetch succeeded with a copy apt does not name and no download")
	}
	aside := copied + ".mismatch"
	got, err := os.ReadFile(aside)
	if err != nil || string(got) != string(data) {
		t.Fatalf("the copied .deb is not kept as %s: %v", aside, err)
	}
	if !strings.Contains(logs.String(), aside) {
		t.Errorf("no warning naming %s:\n%s", aside, logs.String())
	}
	// A second copy that differs goes beside the first, not over it.
	if err := os.WriteFile(copied, append(data, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	f.Fetch(context.Background(), "etoile-test")
	if _, err := os.Stat(aside + ".1"); err != nil {
		t.Errorf("the second copy was not moved aside beside the first: %v", err)
	}
	if got, _ := os.ReadFile(aside); string(got) != string(data) {
		t.Errorf("the first copy moved aside was overwritten")
	}
}
