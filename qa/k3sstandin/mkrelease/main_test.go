package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image/k3s"
)

// tool returns the path of an independent checker, failing (not skipping)
// when it is missing.
func tool(t *testing.T, name, debPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %q", name, debPackage)
	}
	return p
}

func runIn(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// TestStandinMkrelease: the folder is laid out like a K3s release and
// verifies with the same independent tools a person would use.
func TestStandinMkrelease(t *testing.T) {
	sha := tool(t, "sha256sum", "coreutils")
	zstd := tool(t, "zstd", "zstd")
	dir := filepath.Join(t.TempDir(), "k3s-standin")
	env := func(k string) string {
		if k == "SOURCE_DATE_EPOCH" {
			return "1700000000"
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-out", dir}, &out, env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "STAND-IN") {
		t.Errorf("output %q does not say it wrote the stand-in", out.String())
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{k3s.BinaryName, k3s.AirgapName, k3s.ChecksumName}; !slices.Equal(names, want) {
		t.Errorf("folder holds %q, want exactly %q", names, want)
	}
	res := runIn(t, dir, sha, "-c", k3s.ChecksumName)
	for _, n := range []string{k3s.BinaryName, k3s.AirgapName} {
		if !strings.Contains(res, n+": OK") {
			t.Errorf("sha256sum -c does not report %s OK:\n%s", n, res)
		}
	}
	runIn(t, dir, zstd, "-q", "-t", k3s.AirgapName)
	tarList := runIn(t, dir, "sh", "-c", zstd+" -dc "+k3s.AirgapName+" | tar -t")
	if !strings.Contains(tarList, "manifest.json") {
		t.Errorf("airgap archive is not in docker save format (no manifest.json):\n%s", tarList)
	}
	ver := runIn(t, dir, filepath.Join(dir, k3s.BinaryName), "--version")
	if !strings.HasPrefix(ver, "k3s version "+k3s.DefaultVersion+" (standin)\n") {
		t.Errorf("k3s --version = %q", ver)
	}
	if info := runIn(t, dir, tool(t, "file", "file"), k3s.BinaryName); !strings.Contains(info, "statically linked") {
		t.Errorf("the stand-in is not static (CGO off): %s", info)
	}

	// The same inputs give the same bytes.
	again := filepath.Join(t.TempDir(), "again")
	if err := run(context.Background(), []string{"-out", again}, &out, env); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, k3s.ChecksumName))
	b, _ := os.ReadFile(filepath.Join(again, k3s.ChecksumName))
	if !bytes.Equal(a, b) {
		t.Errorf("two runs differ:\n%s\n%s", a, b)
	}

	// The build's dir source accepts it, as ETOILE_K3S_DIR=out/k3s-standin does.
	art, err := k3s.Fetch(context.Background(), k3s.Source{Kind: k3s.KindDir, Dir: dir, Version: k3s.DefaultVersion}, "", nil)
	if err != nil {
		t.Fatalf("k3s.Fetch on the stand-in release: %v", err)
	}
	if art.Version != k3s.DefaultVersion {
		t.Errorf("Fetch version %q", art.Version)
	}
}

func TestStandinMkreleaseRejectsBadVersion(t *testing.T) {
	err := run(context.Background(), []string{"-out", t.TempDir(), "-version", "1.34"}, &bytes.Buffer{}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "not a K3s version") {
		t.Errorf("error %v", err)
	}
}
