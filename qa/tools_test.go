package qa

import (
	"os"
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
		MkfsFatTool, MdirTool, UnsquashfsTool, CpioTool, IsohdpfxTool} {
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
