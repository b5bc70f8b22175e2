package debian

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFetchInterruptedDuringDownload: Ctrl-C while apt downloads a package
// is an interruption (context.Canceled, which the CLI reports as "build
// interrupted"), not a network failure with advice to run apt-get update,
// and no older cached copy is used in its place.
func TestFetchInterruptedDuringDownload(t *testing.T) {
	cache := t.TempDir()
	// An older verified copy in the cache, which an offline machine's
	// build would fall back on.
	older := buildDeb(t, t.TempDir(), "Package: etoile-test\nVersion: 0.9\nArchitecture: amd64\nDescription: a test\n", "gz", testData)
	p, err := ReadPackage(older)
	if err != nil {
		t.Fatal(err)
	}
	cached := filepath.Join(cache, "etoile-test_0.9_amd64.deb")
	if err := os.Rename(older, cached); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sidecarPath(cached), []byte(p.SHA256+"  etoile-test_0.9_amd64.deb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// apt names version 1.0 and, asked to download it, says it has started
	// and waits: the download is under way when the build is interrupted.
	started := filepath.Join(t.TempDir(), "started")
	apt := filepath.Join(t.TempDir(), "apt-get")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$*\" in *--print-uris*) echo %q; exit 0;; esac\ntouch %q\nexec sleep 600\n",
		"'http://deb.debian.org/debian/pool/main/e/etoile-test/etoile-test_1.0_amd64.deb' etoile-test_1.0_amd64.deb 100 SHA256:"+strings.Repeat("ab", 32), started)
	if err := os.WriteFile(apt, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	log, logs := testLogger(t)
	f := &Fetcher{CacheDir: cache, Log: log, AptGet: apt, Architecture: "amd64"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			if _, err := os.Stat(started); err == nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	got, err := f.Fetch(ctx, "etoile-test")
	if err == nil {
		t.Fatalf("Fetch interrupted during the download gave %s %s", got.Name, got.Version)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch interrupted during the download: %v, want context.Canceled", err)
	}
	if strings.Contains(err.Error(), "apt-get update") {
		t.Errorf("an interruption is blamed on the package lists: %v", err)
	}
	if strings.Contains(logs.String(), "using the cached copy") {
		t.Errorf("an interruption is logged as a failed download:\n%s", logs.String())
	}
}

// TestFetchInterruptedStopsAptsChildren: apt's download methods are its
// children and hold its output open; interrupted, the whole group is asked
// to stop, so none is left downloading after the build has ended.
func TestFetchInterruptedStopsAptsChildren(t *testing.T) {
	started := filepath.Join(t.TempDir(), "child")
	apt := filepath.Join(t.TempDir(), "apt-get")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$*\" in *--print-uris*) echo %q; exit 0;; esac\nsleep 600 &\necho $! > %q.tmp && mv %q.tmp %q\nwait\n",
		"'http://deb.debian.org/debian/pool/main/e/etoile-test/etoile-test_1.0_amd64.deb' etoile-test_1.0_amd64.deb 100 SHA256:"+strings.Repeat("ab", 32),
		started, started, started)
	if err := os.WriteFile(apt, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	f := &Fetcher{CacheDir: t.TempDir(), Log: log, AptGet: apt, Architecture: "amd64"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var child int
	go func() {
		for ctx.Err() == nil {
			if b, err := os.ReadFile(started); err == nil {
				fmt.Sscan(string(b), &child)
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if _, err := f.Fetch(ctx, "etoile-test"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch interrupted during the download: %v, want context.Canceled", err)
	}
	if child == 0 {
		t.Fatal("the stand-in apt's child never started")
	}
	// Gone, or a zombie waiting for whoever adopted it.
	for range 100 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("apt's child %d still runs after the interrupted build", child)
}
