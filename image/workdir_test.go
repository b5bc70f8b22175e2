package image

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStaleWorkFolders: a build removes only the work folders etoile made
// (they carry a marker), in the -o folder itself even when its name is a
// glob pattern; someone's .build-cache stays, and the earlier artifacts a
// build interrupted while placing its own had moved aside come back where
// no newer file is.
func TestStaleWorkFolders(t *testing.T) {
	tmp := t.TempDir()
	agent := buildAgent(t, "")
	kernelDir := filepath.Join(tmp, "kernel") // empty: the build stops at the kernel step
	if err := os.Mkdir(kernelDir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec, err := ParseSpec([]byte(strings.Replace(string(DefaultSpecYAML()), "kernel:\n", "kernel:\n  dir: "+kernelDir+"\n", 1)), tmp)
	if err != nil {
		t.Fatal(err)
	}
	write := func(p, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(tmp, "out[1]") // a glob pattern matching out1
	other := filepath.Join(tmp, "out1")
	write(filepath.Join(out, ".build-cache", "keep.txt"), "mine")                         // not etoile's
	write(filepath.Join(out, ".build-1234", workMarker), workMarkerText)                  // a killed build's
	write(filepath.Join(out, ".build-1234", "system.sqfs"), "half")                       // its half-made file
	write(filepath.Join(out, ".build-5678", workMarker), workMarkerText)                  // killed while placing:
	write(filepath.Join(out, ".build-5678", "old", "etoile-amd64.iso"), "old iso")        // moved aside, nothing newer
	write(filepath.Join(out, ".build-5678", "old", "etoile-amd64-vmlinuz"), "old kernel") // moved aside, a newer one placed
	write(filepath.Join(out, ".build-5678", "old", "SHA256SUMS"), "old sums")             // moved aside, its own not placed yet
	write(filepath.Join(out, "etoile-amd64-vmlinuz"), "new kernel")
	write(filepath.Join(other, ".build-9999", workMarker), workMarkerText)        // another folder's
	if err := os.MkdirAll(filepath.Join(out, ".build-0000"), 0o755); err != nil { // killed before its marker: empty
		t.Fatal(err)
	}

	var logs bytes.Buffer
	b := &Builder{Spec: spec, OutDir: out, CacheDir: filepath.Join(tmp, "cache"), AgentPath: agent, Epoch: 1,
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	if _, err := b.Build(context.Background()); err == nil || !strings.Contains(err.Error(), "kernel") {
		t.Fatalf("the build with an empty kernel folder: %v", err)
	}
	read := func(p string) string {
		data, err := os.ReadFile(p)
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return string(data)
	}
	if got := read(filepath.Join(out, ".build-cache", "keep.txt")); got != "mine" {
		t.Errorf(".build-cache/keep.txt, not etoile's: %s", got)
	}
	if _, err := os.Stat(filepath.Join(out, ".build-1234")); err == nil {
		t.Errorf("the interrupted build's work folder is still there")
	}
	if _, err := os.Stat(filepath.Join(out, ".build-0000")); err == nil {
		t.Errorf("an empty work folder (a build killed before its marker) is still there")
	}
	if got := read(filepath.Join(out, "etoile-amd64.iso")); got != "old iso" {
		t.Errorf("the earlier ISO an interrupted build had moved aside: %s, want it back in %s", got, out)
	}
	if got := read(filepath.Join(out, "SHA256SUMS")); got != "old sums" {
		t.Errorf("SHA256SUMS: %s, want the earlier one back (the interrupted build had not placed its own)", got)
	}
	if got := read(filepath.Join(out, "etoile-amd64-vmlinuz")); got != "new kernel" {
		t.Errorf("etoile-amd64-vmlinuz: %s, want the newer one kept", got)
	}
	if _, err := os.Stat(filepath.Join(other, ".build-9999", workMarker)); err != nil {
		t.Errorf("a work folder in %s, not the output folder, was touched: %v", other, err)
	}
	if !strings.Contains(logs.String(), "put back an earlier artifact") || !strings.Contains(logs.String(), "etoile-amd64.iso") {
		t.Errorf("no log line about the artifact put back:\n%s", logs.String())
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".build-") && e.Name() != ".build-cache" {
			t.Errorf("left %s in the output folder", e.Name())
		}
	}
}

// TestHashingStopsWhenCancelled: the build's hashing of its artifacts
// (gigabytes for an ISO) ends as soon as the build is interrupted.
func TestHashingStopsWhenCancelled(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(p, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := fileSHA256Ctx(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("hashing after the build was interrupted: %v, want context.Canceled", err)
	}
	if _, n, err := fileSHA256Ctx(context.Background(), p); err != nil || n != 1<<20 {
		t.Errorf("hashing: %d bytes, %v", n, err)
	}
}

// TestKilledAfterPlacing: a build killed after it had placed all its
// artifacts (a netboot-only build after one that made an ISO) leaves the
// next build nothing to put back: the ISO it removed on purpose, which its
// SHA256SUMS does not name, does not come back.
func TestKilledAfterPlacing(t *testing.T) {
	out := t.TempDir()
	write := func(p, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(out, "etoile-amd64.iso"), "old iso")
	write(filepath.Join(out, "SHA256SUMS"), "1  etoile-amd64.iso\n")
	work := filepath.Join(out, ".build-1")
	write(filepath.Join(work, workMarker), workMarkerText)
	write(filepath.Join(work, "vmlinuz"), "new kernel")
	write(filepath.Join(work, "sums"), "2  etoile-amd64-vmlinuz\n")
	staged := map[string]string{"etoile-amd64-vmlinuz": filepath.Join(work, "vmlinuz"), "SHA256SUMS": filepath.Join(work, "sums")}
	if err := placeAll(out, filepath.Join(work, "old"), staged, []string{"etoile-amd64-vmlinuz", "SHA256SUMS"}, []string{"etoile-amd64.iso"}); err != nil {
		t.Fatal(err)
	}
	// Killed now, its work folder left; the next build starts.
	var logs bytes.Buffer
	cleanStaleWork(out, slog.New(slog.NewTextHandler(&logs, nil)))
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "SHA256SUMS etoile-amd64-vmlinuz" {
		t.Errorf("the output folder holds %v, want what the killed build placed: SHA256SUMS etoile-amd64-vmlinuz", names)
	}
	if data, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS")); string(data) != "2  etoile-amd64-vmlinuz\n" {
		t.Errorf("SHA256SUMS: %q, want the killed build's", data)
	}
	if strings.Contains(logs.String(), "put back") || strings.Contains(logs.String(), "keeping the new one") {
		t.Errorf("the next build put back, or warned about, the earlier artifacts:\n%s", logs.String())
	}
}
