//go:build qa

package qa

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Link flags of the binaries, as the Makefile passes them in (its
// ETOILE_LDFLAGS and AGENT_LDFLAGS), so the test builds what `make build` does.
const (
	EnvEtoileLDFlags = "ETOILE_QA_ETOILE_LDFLAGS"
	EnvAgentLDFlags  = "ETOILE_QA_AGENT_LDFLAGS"
	// EnvBuildFlags holds extra `etoile build` flags, as the Makefile's
	// BUILD_FLAGS (default --k3s-optional, so an offline machine still builds).
	EnvBuildFlags = "ETOILE_QA_BUILD_FLAGS"
)

func buildFlags() []string {
	if v, ok := os.LookupEnv(EnvBuildFlags); ok {
		return strings.Fields(v)
	}
	return []string{"--k3s-optional"}
}

func ldflags(env string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return "-s -w"
}

// TestReproducibleBuild builds the tree's binaries, then runs `etoile build`
// twice, into two temporary folders, at two different times and with different
// temporary folders, and compares every output byte for byte.
func TestReproducibleBuild(t *testing.T) {
	goBin := tool(t, GoTool)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	builds := []struct {
		pkg, out, ldflags string
		env               []string
	}{
		{"./cmd/etoile", "etoile", ldflags(EnvEtoileLDFlags), nil},
		{"./cmd/etoile-agent", "etoile-agent", ldflags(EnvAgentLDFlags), []string{"CGO_ENABLED=0"}},
	}
	for _, b := range builds {
		cmd := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags", b.ldflags, "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", ShellQuote(cmd.Args), err, out)
		}
	}

	var outs []string
	for i := range 2 {
		if i > 0 {
			// Timestamps taken from the clock would now differ by whole seconds.
			time.Sleep(2 * time.Second)
		}
		dir := t.TempDir()
		tmp := filepath.Join(dir, "tmp")
		if err := os.Mkdir(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		cmd := exec.Command(filepath.Join(bin, "etoile"), append([]string{"build", "-o", out}, buildFlags()...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "ETOILE_AGENT="+filepath.Join(bin, "etoile-agent"))
		start := time.Now()
		res, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("build %d: %s: %v\n%s", i+1, ShellQuote(cmd.Args), err, res)
		}
		t.Logf("build %d into %s took %.1fs", i+1, out, time.Since(start).Seconds())
		outs = append(outs, out)
	}
	// Both builds made every artifact: two equal trees of nothing prove
	// nothing.
	for _, out := range outs {
		for _, name := range AllArtifacts {
			if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Size() == 0 {
				t.Errorf("the build into %s lacks %s (or it is empty): %v", out, name, err)
			}
		}
	}
	if err := CompareTrees(outs[0], outs[1]); err != nil {
		t.Error(err)
	}
}
