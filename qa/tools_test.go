package qa

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestToolsAreInstalledByMakeTest: every package a test tool comes from is
// one `make test` installs (scripts/deps.sh), so that a fresh machine gets
// them; essential ones (coreutils) and Go are the exceptions.
func TestToolsAreInstalledByMakeTest(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "scripts", "deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var installed []string
	for _, m := range regexp.MustCompile(`(?s)(?:BUILD|TEST)_PACKAGES=\(([^)]*)\)`).FindAllStringSubmatch(string(data), -1) {
		installed = append(installed, strings.Fields(m[1])...)
	}
	if len(installed) < 10 {
		t.Fatalf("found only %q in scripts/deps.sh's package lists", installed)
	}
	for _, tool := range []Tool{QEMUTool, OVMFCodeTool, OVMFVarsTool, XorrisoTool, SgdiskTool, FsckVfatTool, MtoolsTool,
		MkfsFatTool, Mkfsext4Tool, MdirTool, UnsquashfsTool, CpioTool, IsohdpfxTool} {
		if !slices.Contains(installed, tool.Package) {
			t.Errorf("%s comes from the package %s, which scripts/deps.sh does not install", tool.Name, tool.Package)
		}
	}
	// Tools the unit tests outside qa/ look for.
	for _, pkg := range []string{"kmod", "squashfs-tools", "iproute2", "e2fsprogs", "chromium", "file"} {
		if !slices.Contains(installed, pkg) {
			t.Errorf("scripts/deps.sh does not install %s", pkg)
		}
	}
}

// TestEnsureGoRefusesAnOldGo: a Go too old to fetch the toolchain go.mod
// names (Debian 12's 1.19) is refused by name, with what to do.
func TestEnsureGoRefusesAnOldGo(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, "go"), []byte("#!/bin/sh\n[ \"$1 $2\" = \"env GOVERSION\" ] && echo go1.19.8\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", ". scripts/deps.sh && ensure_go")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "go1.19.8; Étoile needs Go 1.26 or newer") {
		t.Errorf("ensure_go with Go 1.19: %v\n%s", err, out)
	}
	// The Go running this test passes.
	cmd = exec.Command("bash", "-c", ". scripts/deps.sh && ensure_go")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("ensure_go with this Go: %v\n%s", err, out)
	}
}
