package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFailedBuildLeavesNoFolder: a build into a folder that did not exist
// (-o a/b/out) that fails — here at the kernel step, after the output
// folder had to be made for its lock and work folder — leaves none of the
// folders it made, as "out is unchanged" says; a folder that was there
// before, and anything in it, stays.
func TestFailedBuildLeavesNoFolder(t *testing.T) {
	tmp := t.TempDir()
	agent := filepath.Join(tmp, "etoile-agent")
	cmd := exec.Command("go", "build", "-o", agent, "github.com/etoile-os/etoile/cmd/etoile-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	kernelDir := filepath.Join(tmp, "kernel") // no vmlinuz, no lib/modules
	if err := os.Mkdir(kernelDir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec, err := ParseSpec([]byte(strings.Replace(string(DefaultSpecYAML()), "kernel:\n", "kernel:\n  dir: "+kernelDir+"\n", 1)), tmp)
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(tmp, "kept")
	if err := os.MkdirAll(kept, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{filepath.Join(tmp, "a", "b", "out"), filepath.Join(kept, "out")} {
		b := &Builder{Spec: spec, OutDir: out, CacheDir: filepath.Join(tmp, "cache"), AgentPath: agent, Epoch: 1}
		if _, err := b.Build(context.Background()); err == nil || !strings.Contains(err.Error(), "kernel") {
			t.Fatalf("a build with an empty kernel folder: %v", err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("the failed build left %s", out)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "a")); err == nil {
		t.Errorf("the failed build left %s", filepath.Join(tmp, "a"))
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the folder that was there before went: %v", err)
	}
}
