package image

import (
	"context"
	"maps"
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
	agent := buildAgent(t, "")
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

// buildAgent builds the static etoile-agent with ldflags into a temporary
// folder and returns its path.
func buildAgent(t *testing.T, ldflags string) string {
	t.Helper()
	agent := filepath.Join(t.TempDir(), "etoile-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", agent, AgentPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	return agent
}

// TestPlaceAllIsAllOrNothing: the artifacts land together. Placed, the
// new files replace the old, and an earlier build's artifact this one does
// not make is gone; when one rename fails, the folder is put back as it
// was: nothing new in it, the old files and SHA256SUMS back.
func TestPlaceAllIsAllOrNothing(t *testing.T) {
	setup := func(t *testing.T) (out, work string, staged map[string]string) {
		out, work = t.TempDir(), t.TempDir()
		for name, body := range map[string]string{"a.iso": "old a", "b.raw": "old b", "SHA256SUMS": "old sums", "notes.txt": "mine"} {
			if err := os.WriteFile(filepath.Join(out, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		staged = map[string]string{}
		for _, name := range []string{"a.iso", "c.img", "SHA256SUMS"} {
			staged[name] = filepath.Join(work, "land-"+name)
			if err := os.WriteFile(staged[name], []byte("new "+name), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return out, work, staged
	}
	contents := func(t *testing.T, dir string) map[string]string {
		got := map[string]string{}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			got[e.Name()] = string(b)
		}
		return got
	}
	names := []string{"a.iso", "c.img", "SHA256SUMS"}

	out, work, staged := setup(t)
	if err := placeAll(out, filepath.Join(work, "old"), staged, names, []string{"b.raw"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.iso": "new a.iso", "c.img": "new c.img", "SHA256SUMS": "new SHA256SUMS", "notes.txt": "mine"}
	if got := contents(t, out); !maps.Equal(got, want) {
		t.Errorf("placed: %v, want %v", got, want)
	}

	out, work, staged = setup(t)
	staged["c.img"] = filepath.Join(work, "gone") // its rename fails
	err := placeAll(out, filepath.Join(work, "old"), staged, names, []string{"b.raw"})
	if err == nil || !strings.Contains(err.Error(), "placing c.img") {
		t.Fatalf("placeAll with a failing rename: %v", err)
	}
	want = map[string]string{"a.iso": "old a", "b.raw": "old b", "SHA256SUMS": "old sums", "notes.txt": "mine"}
	if got := contents(t, out); !maps.Equal(got, want) {
		t.Errorf("after a failed placing: %v, want the folder as it was, %v", got, want)
	}
}
