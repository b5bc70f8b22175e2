package image

import (
	"context"
	"errors"
	"github.com/etoile-os/etoile/internal/countdown"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// treeOf maps every path under dir (relative) to its content, "/" for a
// folder.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel] = "/"
			return nil
		}
		data, err := os.ReadFile(p)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// earlierBuild fills out with what an earlier build left there.
func earlierBuild(t *testing.T, out string) {
	t.Helper()
	for name, body := range map[string]string{
		"etoile-amd64.iso": "earlier iso", "etoile-amd64.raw": "earlier raw",
		"etoile-amd64-system.sqfs": "earlier system", "SHA256SUMS": "earlier sums",
		"notes.txt": "someone's",
	} {
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCancelledBuildLeavesOutDir: a build interrupted (its context
// cancelled, the first Ctrl-C) returns context.Canceled and leaves the
// output folder as it was: the earlier build's artifacts and SHA256SUMS,
// and no work folder; a folder it had to make for -o is gone.
func TestCancelledBuildLeavesOutDir(t *testing.T) {
	tmp := t.TempDir()
	agent := buildAgent(t, "")
	if err := os.Mkdir(filepath.Join(tmp, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec, err := ParseSpec([]byte(strings.Replace(string(DefaultSpecYAML()), "kernel:\n", "kernel:\n  dir: "+filepath.Join(tmp, "kernel")+"\n", 1)), tmp)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	earlierBuild(t, out)
	before := treeOf(t, out)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, dir := range []string{out, filepath.Join(tmp, "new", "out")} {
		b := &Builder{Spec: spec, OutDir: dir, CacheDir: filepath.Join(tmp, "cache"), AgentPath: agent, Epoch: 1}
		if _, err := b.Build(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("an interrupted build into %s: %v, want context.Canceled", dir, err)
		}
	}
	if after := treeOf(t, out); !maps.Equal(before, after) {
		t.Errorf("the interrupted build changed %s:\nbefore %v\nafter  %v", out, before, after)
	}
	if _, err := os.Stat(filepath.Join(tmp, "new")); err == nil {
		t.Errorf("the interrupted build left the folder it made for -o")
	}
}

// TestCancelledMediaStepsLeaveNothing: the ISO and raw disk steps, the
// longest with the squashfs, stop in the middle of their writes when the
// build is interrupted (here at a quarter, half and nine tenths of their
// looks at the context) with context.Canceled, leaving in the work folder
// neither their output nor a .tmp of it (the ISO's El Torito image, made
// first, may be there whole), nothing in the work folder's tmp (go-diskfs's workspaces), and the
// output folder as it was. The work folder itself goes with the build
// (Build removes it; one killed outright is removed by the next build).
func TestCancelledMediaStepsLeaveNothing(t *testing.T) {
	_, arch, k, initrd, system, boot := isoInputs(t)
	big := make([]byte, 12<<20)
	for i := range big {
		big[i] = byte(i * 7 / 5)
	}
	if err := os.WriteFile(system, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, big[:5<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	earlierBuild(t, out)
	b := &Builder{Spec: &ImageSpec{Arch: "amd64"}, OutDir: out, Epoch: 1, MachineConfig: []byte("kind: MachineConfig\n")}
	steps := []struct {
		name  string
		write func(ctx context.Context, work string) error
	}{
		{"iso", func(ctx context.Context, work string) error {
			return b.writeISOContext(ctx, filepath.Join(work, "etoile.iso"), work, arch, k, initrd, system, boot, "1", "quiet")
		}},
		{"raw disk", func(ctx context.Context, work string) error {
			return b.writeRawContext(ctx, filepath.Join(work, "etoile.raw"), arch, k, initrd, system, boot, "1", "quiet")
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			// The work folder as build makes it: in out, with its tmp as TMPDIR.
			work, err := os.MkdirTemp(out, workPrefix)
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(work)
			if err := os.WriteFile(filepath.Join(work, workMarker), []byte(workMarkerText), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(work, "tmp"), 0o700); err != nil {
				t.Fatal(err)
			}
			t.Setenv("TMPDIR", filepath.Join(work, "tmp"))
			rel, _ := filepath.Rel(out, work)
			outside := func() map[string]string { // out, less the work folder
				m := treeOf(t, out)
				maps.DeleteFunc(m, func(p, _ string) bool { return p == rel || strings.HasPrefix(p, rel+"/") })
				return m
			}
			outBefore := outside()
			workBefore := treeOf(t, work)

			full := countdown.New(1 << 62)
			if err := s.write(full, work); err != nil {
				t.Fatal(err)
			}
			total := full.Calls()
			for _, e := range []string{"etoile.iso", "etoile.raw", "efiboot.img"} {
				os.Remove(filepath.Join(work, e))
			}
			for _, at := range []int64{total / 4, total / 2, total * 9 / 10} {
				ctx := countdown.New(at)
				err := s.write(ctx, work)
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("interrupted after %d of %d looks: %v, want context.Canceled", at, total, err)
				}
				if after := ctx.Calls() - at; after > 16 {
					t.Errorf("interrupted after %d of %d looks: it went on for %d more", at, total, after)
				}
				got := treeOf(t, work)
				delete(got, "efiboot.img")
				if !maps.Equal(got, workBefore) {
					var extra []string
					for p := range got {
						if _, ok := workBefore[p]; !ok {
							extra = append(extra, p)
						}
					}
					t.Errorf("interrupted after %d of %d looks (%v): the work folder holds %v besides what it held", at, total, err, extra)
				}
			}
			if got := outside(); !maps.Equal(got, outBefore) {
				t.Errorf("the output folder changed:\nbefore %v\nafter  %v", outBefore, got)
			}
		})
	}
}
