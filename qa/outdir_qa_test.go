//go:build qa

package qa

import (
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
	stale := map[string]string{ISOName: "an earlier build's ISO", RawName: "an earlier build's disk", "SHA256SUMS": "0000  " + ISOName + "\n"}
	for n, data := range stale {
		if err := os.WriteFile(filepath.Join(out, n), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
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
	for _, n := range []string{ISOName, RawName} {
		if _, err := os.Stat(filepath.Join(out, n)); !os.IsNotExist(err) {
			t.Errorf("the earlier build's %s is still in %s (%v)", n, out, err)
		}
		if !strings.Contains(string(b), "removed an earlier build's artifact") {
			t.Errorf("the build does not say it removed %s:\n%s", n, b)
		}
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("the build left %s in %s", e.Name(), out)
		}
	}
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sums), ISOName) || !strings.Contains(string(sums), "etoile-amd64-system.sqfs") {
		t.Errorf("SHA256SUMS:\n%s\nwant the netboot set and no ISO", sums)
	}
}
