//go:build qa

package qa

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	gitTool  = Tool{"git", "git"}
	makeTool = Tool{"make", "make"}
)

// EnvReproColdCache, set to 1, gives the second build of
// TestReproducibleBinaries an empty Go build cache of its own, so every
// package is compiled again rather than taken from the first build's cache
// entries: a stronger check, and minutes slower.
const EnvReproColdCache = "ETOILE_QA_REPRO_COLD_GOCACHE"

// TestReproducibleBinaries: `make build` in two copies of the working tree
// (its tracked and unignored files, without out/ and bin/), at two paths of
// different lengths, one after the other, gives byte-identical bin/etoile and
// bin/etoile-agent (the agent is the initramfs's /init, so a difference in it
// is a difference in every image). The first copy is a bare folder, as an
// unpacked tarball; the second a git repository of its own, so VCS stamping
// would tell them apart. Both get the VERSION, COMMIT and SOURCE_DATE_EPOCH
// that the Makefile derives from git in this checkout. No QEMU.
func TestReproducibleBinaries(t *testing.T) {
	if err := RequireTools(GoTool, gitTool, makeTool); err != nil {
		t.Fatal(err)
	}
	goBin, gitBin, makeBin := tool(t, GoTool), tool(t, gitTool), tool(t, makeTool)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}

	// What the Makefile computes here, from git; the copies get these values.
	names := []string{"VERSION", "COMMIT", "SOURCE_DATE_EPOCH", "GOBUILD"}
	vars := makeVars(t, makeBin, root, names...)
	for name, bad := range map[string]string{"VERSION": "dev", "COMMIT": "unknown", "SOURCE_DATE_EPOCH": "0"} {
		if vars[name] == "" || vars[name] == bad {
			t.Fatalf("the Makefile's %s in %s is %q, its fallback without git: run the test in a git checkout with git installed", name, root, vars[name])
		}
	}
	// Without -trimpath the binaries hold the checkout's path; without
	// -buildvcs=false, the state of .git (a modified file, or none at all).
	for _, flag := range []string{"-trimpath", "-buildvcs=false"} {
		if !slices.Contains(strings.Fields(vars["GOBUILD"]), flag) {
			t.Errorf("the Makefile's GOBUILD (%q) lacks %s, which reproducible binaries need", vars["GOBUILD"], flag)
		}
	}

	files := repoFiles(t, gitBin, root)
	base := t.TempDir()
	dirs := []string{filepath.Join(base, "a"), filepath.Join(base, "second", "checkout-at-a-longer-path")}
	for i, dir := range dirs {
		copyFiles(t, root, dir, files)
		if i == 1 {
			gitInit(t, gitBin, dir)
		}
		tmp := filepath.Join(base, fmt.Sprintf("tmp%d", i+1))
		if err := os.Mkdir(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(makeBin, "-C", dir, "build")
		for _, name := range names[:3] {
			cmd.Args = append(cmd.Args, name+"="+vars[name])
		}
		cmd.Env = append(makeEnv(), "TMPDIR="+tmp)
		if i == 1 && os.Getenv(EnvReproColdCache) == "1" {
			cmd.Env = append(cmd.Env, "GOCACHE="+filepath.Join(base, "gocache"))
		}
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %d: %s: %v\n%s", i+1, ShellQuote(cmd.Args), err, out)
		}
		t.Logf("build %d: %s took %.1fs", i+1, ShellQuote(cmd.Args), time.Since(start).Seconds())
	}

	for _, name := range []string{"etoile", "etoile-agent"} {
		a, b := filepath.Join(dirs[0], "bin", name), filepath.Join(dirs[1], "bin", name)
		if err := compareBinaries(a, b); err != nil {
			t.Errorf("%v\n%s", err, goVersionMDiff(goBin, a, b))
		}
	}
	if t.Failed() {
		return
	}

	// Both builds are what `make build` makes: trimmed paths, a static
	// agent, the Makefile's version, commit and commit time linked in.
	bin := filepath.Join(dirs[0], "bin")
	info := goVersionM(goBin, filepath.Join(bin, "etoile"), filepath.Join(bin, "etoile-agent"))
	for _, want := range []string{"-trimpath=true", "CGO_ENABLED=0"} {
		if !strings.Contains(info, want) {
			t.Errorf("the binaries were not built with %s:\n%s", want, info)
		}
	}
	if strings.Contains(info, "vcs.") {
		t.Errorf("the binaries carry VCS stamps:\n%s", info)
	}
	out, err := exec.Command(filepath.Join(bin, "etoile"), "version").CombinedOutput()
	if want := fmt.Sprintf("etoile %s (commit %s)", vars["VERSION"], vars["COMMIT"]); err != nil || !strings.Contains(string(out), want) {
		t.Errorf("bin/etoile version: %v, %q; want %q", err, out, want)
	}
	if data, err := os.ReadFile(filepath.Join(bin, "etoile")); err != nil || !bytes.Contains(data, []byte(vars["SOURCE_DATE_EPOCH"])) {
		t.Errorf("bin/etoile does not hold the commit time %s (-X main.commitTime): %v", vars["SOURCE_DATE_EPOCH"], err)
	}
}

// makeEnv is the environment without an enclosing make's flags (under
// `make test-qa`), so the copies build with the Makefile's own defaults.
func makeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKEFILES":
		default:
			env = append(env, kv)
		}
	}
	return env
}

// makeVars returns the Makefile's variables as make expands them in dir.
func makeVars(t *testing.T, makeBin, dir string, names ...string) map[string]string {
	t.Helper()
	args := []string{"-s", "--no-print-directory", "-C", dir, "--eval", "etoile-qa-print-%: ; @printf '%s\\n' '$($*)'"}
	for _, n := range names {
		args = append(args, "etoile-qa-print-"+n)
	}
	cmd := exec.Command(makeBin, args...)
	cmd.Env = makeEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", ShellQuote(cmd.Args), err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(names) {
		t.Fatalf("%s printed %q, want one line for each of %v", ShellQuote(cmd.Args), out, names)
	}
	vars := map[string]string{}
	for i, n := range names {
		vars[n] = lines[i]
	}
	return vars
}

// repoFiles lists the working tree's files that git tracks or would track
// (untracked but not ignored), without out/ and bin/.
func repoFiles(t *testing.T, gitBin, root string) []string {
	t.Helper()
	cmd := exec.Command(gitBin, "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v (the test copies the files git lists: run it in a git checkout)", ShellQuote(cmd.Args), err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" || strings.HasPrefix(f, "out/") || strings.HasPrefix(f, "bin/") {
			continue
		}
		files = append(files, f)
	}
	slices.Sort(files)
	files = slices.Compact(files)
	if !slices.Contains(files, "Makefile") || !slices.Contains(files, "go.mod") {
		t.Fatalf("git ls-files in %s lists neither Makefile nor go.mod (%d files)", root, len(files))
	}
	return files
}

// copyFiles copies the listed files from root into dir, with their modes;
// a file deleted from the working tree, or a submodule, is left out.
func copyFiles(t *testing.T, root, dir string, files []string) {
	t.Helper()
	for _, f := range files {
		src, dst := filepath.Join(root, f), filepath.Join(dir, f)
		st, err := os.Lstat(src)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(target, dst)
			}
			if err != nil {
				t.Fatal(err)
			}
		case st.Mode().IsRegular():
			data, err := os.ReadFile(src)
			if err == nil {
				err = os.WriteFile(dst, data, st.Mode().Perm())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// gitInit makes dir a git repository holding its files in one commit.
func gitInit(t *testing.T, gitBin, dir string) {
	t.Helper()
	for _, args := range [][]string{
		{"init", "-q"},
		{"add", "-A"},
		{"-c", "user.name=etoile qa", "-c", "user.email=qa@etoile.invalid", "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null",
			"commit", "-q", "--no-verify", "-m", "copy of the working tree"},
	} {
		cmd := exec.Command(gitBin, append([]string{"-C", dir}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", ShellQuote(cmd.Args), err, out)
		}
	}
}

// compareBinaries says where two files first differ.
func compareBinaries(a, b string) error {
	da, err := os.ReadFile(a)
	if err != nil {
		return err
	}
	db, err := os.ReadFile(b)
	if err != nil {
		return err
	}
	if bytes.Equal(da, db) {
		return nil
	}
	off := 0
	for off < len(da) && off < len(db) && da[off] == db[off] {
		off++
	}
	around := func(d []byte) []byte { return d[max(0, off-16):min(len(d), off+48)] }
	return fmt.Errorf("%s (%d bytes) and %s (%d bytes) differ, first at offset %d (0x%x):\n  %q\n  %q\n"+
		"(look for a path, a time or a VCS stamp: the Makefile's -trimpath, -buildvcs=false and fixed -ldflags should leave none)",
		a, len(da), b, len(db), off, off, around(da), around(db))
}

// goVersionM is `go version -m` of the files, or why it failed.
func goVersionM(goBin string, files ...string) string {
	out, err := exec.Command(goBin, append([]string{"version", "-m"}, files...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go version -m: %v\n%s", err, out)
	}
	return string(out)
}

// goVersionMDiff is `go version -m` of both files, without the dep lines
// they share.
func goVersionMDiff(goBin, a, b string) string {
	ma, mb := goVersionM(goBin, a), goVersionM(goBin, b)
	common := map[string]bool{}
	for _, l := range strings.Split(ma, "\n") {
		if strings.HasPrefix(l, "\tdep\t") && slices.Contains(strings.Split(mb, "\n"), l) {
			common[l] = true
		}
	}
	var out strings.Builder
	for _, m := range []string{ma, mb} {
		for _, l := range strings.Split(strings.TrimSuffix(m, "\n"), "\n") {
			if !common[l] {
				out.WriteString(l + "\n")
			}
		}
	}
	fmt.Fprintf(&out, "(%d dep lines the same in both left out)", len(common))
	return out.String()
}
