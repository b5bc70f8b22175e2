//go:build qa

package qa

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/image"
)

// TestBuildReplacesStaleOutputs: a build into a folder holding an earlier
// build's artifacts removes those it does not make (with their
// SHA256SUMS), so that no stale image is left to flash; a second build
// into a folder another build is writing to stops at once, saying so.
func TestBuildReplacesStaleOutputs(t *testing.T) {
	t.Parallel()
	bin := binDir(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := string(image.DefaultSpecYAML())
	for _, drop := range []string{"  - iso\n", "  - raw\n"} {
		if !strings.Contains(spec, drop) {
			t.Fatalf("the default spec no longer has %q", drop)
		}
		spec = strings.Replace(spec, drop, "", 1)
	}
	specPath := filepath.Join(dir, "netboot.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// The earlier build's ISO, as its SHA256SUMS names it; a raw disk
	// changed since (a config put in with mcopy); and the work folder of a
	// build that was killed.
	isoData, rawData := "an earlier build's ISO", "an earlier build's disk, edited since"
	stale := map[string]string{ISOName: isoData, RawName: rawData,
		"SHA256SUMS": fmt.Sprintf("%x  %s\n%x  %s\n", sha256.Sum256([]byte(isoData)), ISOName, sha256.Sum256([]byte("the disk as built")), RawName)}
	for n, data := range stale {
		if err := os.WriteFile(filepath.Join(out, n), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The killed build's work folder carries the marker every build writes
	// first; a folder named the same way without it (someone else's) stays.
	if err := os.MkdirAll(filepath.Join(out, ".build-123456", "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, ".build-123456", ".etoile-build-work"), []byte("the work folder of an etoile build\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale[".build-123456"] = ""
	if err := os.MkdirAll(filepath.Join(out, ".build-cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, ".build-cache", "keep"), []byte("someone's"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale[".build-cache"] = ""
	build := func() ([]byte, error) {
		// -o relative to the working folder, as `make image` gives it.
		rel, err := filepath.Rel(root, out)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(bin, "etoile"), append([]string{"build", "-f", specPath, "-o", rel, "--agent", filepath.Join(bin, "etoile-agent")}, buildFlags()...)...)
		cmd.Dir = root
		// The build's temporary files go in its work folder, not $TMPDIR
		// (a /tmp on tmpfs would hold the whole system tree in RAM).
		cmd.Env = append(os.Environ(), "TMPDIR="+filepath.Join(dir, "no-such-folder"))
		return cmd.CombinedOutput()
	}

	// Another build holds the folder.
	lock, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	b, err := build()
	if err == nil || !strings.Contains(string(b), "another etoile build is writing to ") {
		t.Errorf("a build into a locked folder: %v\n%s", err, b)
	}
	lock.Close()
	if entries, _ := os.ReadDir(out); len(entries) != len(stale) {
		t.Errorf("the refused build left files in %s: %v", out, entries)
	}

	b, err = build()
	if err != nil {
		t.Fatalf("etoile build (netboot only): %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(out, ISOName)); !os.IsNotExist(err) {
		t.Errorf("the earlier build's %s is still in %s (%v)", ISOName, out, err)
	}
	if !strings.Contains(string(b), "removed an earlier build's artifact") {
		t.Errorf("the build does not say it removed %s:\n%s", ISOName, b)
	}
	// The edited disk is someone's work: kept, with a warning.
	if got, err := os.ReadFile(filepath.Join(out, RawName)); err != nil || string(got) != rawData {
		t.Errorf("the edited %s was not left in place: %q %v", RawName, got, err)
	}
	if !strings.Contains(string(b), "left in place") || !strings.Contains(string(b), RawName) {
		t.Errorf("the build does not warn about the %s it left:\n%s", RawName, b)
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && e.Name() != ".build-cache" {
			t.Errorf("the build left %s in %s (the killed build's work folder included)", e.Name(), out)
		}
	}
	if st, err := os.Stat(filepath.Join(out, ".build-cache")); err != nil || !st.IsDir() {
		t.Errorf("the build removed .build-cache, a folder it did not make: %v", err)
	}
	if !strings.Contains(string(b), "left in place: a folder named like a build's work folder") {
		t.Errorf("the build does not warn about the .build-cache it left:\n%s", b)
	}
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sums), ISOName) || !strings.Contains(string(sums), "etoile-amd64-system.sqfs") {
		t.Errorf("SHA256SUMS:\n%s\nwant the netboot set and no ISO", sums)
	}
}
