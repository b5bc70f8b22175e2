package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestCopyTreeNeverWritesThroughSymlinks: an overlay whose symlink points
// outside the image (or anywhere) cannot have a later overlay's files
// written through it — onto the build host — and the error names the path.
func TestCopyTreeNeverWritesThroughSymlinks(t *testing.T) {
	tmp := t.TempDir()
	escape := filepath.Join(tmp, "escape")
	if err := os.MkdirAll(escape, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(escape, "pwned.txt"), []byte("ORIGINAL"), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(dir string, files map[string]string, links map[string]string) string {
		fakeroot.Write(t, dir, files)
		for p, to := range links {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(to, filepath.Join(dir, p)); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range []struct {
		name, link, want string
	}{
		{"absolute symlink out of the image", escape, "made it a symlink to " + escape},
		{"relative symlink out of the image", "../../../escape", "made it a symlink to ../../../escape"},
		{"symlink inside the image", "usr/opt", "made it a symlink to usr/opt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "rootfs")
			if err := os.MkdirAll(filepath.Join(root, "usr/opt"), 0o755); err != nil {
				t.Fatal(err)
			}
			a := mk(t.TempDir(), nil, map[string]string{"opt": tc.link})
			b := mk(t.TempDir(), map[string]string{"opt/pwned.txt": "pwned", "etc/ok": "fine"}, nil)
			if err := copyTree(os.DirFS(a), root); err != nil {
				t.Fatalf("overlay a: %v", err)
			}
			err := copyTree(os.DirFS(b), root)
			if err == nil || !strings.Contains(err.Error(), "opt is a folder here") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("overlay b: got %v, want an error naming opt and its symlink", err)
			}
			if b, _ := os.ReadFile(filepath.Join(escape, "pwned.txt")); string(b) != "ORIGINAL" {
				t.Errorf("the build host's file was overwritten: %q", b)
			}
			if _, err := os.Stat(filepath.Join(root, "usr/opt/pwned.txt")); err == nil {
				t.Error("the file went through the symlink inside the image")
			}
		})
	}

	// A symlink in an overlay whose own folder holds files goes nowhere either.
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(os.DirFS(mk(t.TempDir(), map[string]string{"etc/x": "x"}, nil)), root); err != nil {
		t.Fatal(err)
	}
	err := copyTree(os.DirFS(mk(t.TempDir(), nil, map[string]string{"etc": escape})), root)
	if err == nil || !strings.Contains(err.Error(), "etc is a symlink here, but a folder with files") {
		t.Errorf("a symlink over a folder: %v", err)
	}
	err = copyTree(os.DirFS(mk(t.TempDir(), map[string]string{"etc/x/y": "y"}, nil)), root)
	if err == nil || !strings.Contains(err.Error(), "etc/x is a folder here, but a file") {
		t.Errorf("a folder over a file: %v", err)
	}
	// Modes are the build's whatever the checkout's umask was (022 applied:
	// a group-writable checkout gives the same image), setuid and sticky
	// bits kept; a folder already there keeps its mode.
	src := mk(t.TempDir(), map[string]string{"bin/tool": "#!/bin/sh\n", "bin/ping": "x", "scratch/.keep": "", "tmp/x": ""}, nil)
	for p, m := range map[string]os.FileMode{"bin/tool": 0o775, "bin/ping": 0o755 | os.ModeSetuid, "scratch": 0o777 | os.ModeSticky, "tmp": 0o775} {
		if err := os.Chmod(filepath.Join(src, p), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(os.DirFS(src), root); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"bin/tool": 0o755, "bin/ping": 0o755 | os.ModeSetuid, "scratch": 0o755 | os.ModeSticky | os.ModeDir,
		"tmp": 0o777 | os.ModeSticky | os.ModeDir} {
		if st, err := os.Stat(filepath.Join(root, p)); err != nil || st.Mode() != want {
			t.Errorf("%s mode %v, %v; want %v", p, st.Mode(), err, want)
		}
	}
	// A symlink over an empty folder replaces it (merged /usr); over one
	// with files it is an error (above).
	if err := os.Mkdir(filepath.Join(root, "sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(os.DirFS(mk(t.TempDir(), nil, map[string]string{"sbin": "usr/sbin"})), root); err != nil {
		t.Errorf("a symlink over an empty folder: %v", err)
	}
	if to, err := os.Readlink(filepath.Join(root, "sbin")); err != nil || to != "usr/sbin" {
		t.Errorf("sbin: %q %v", to, err)
	}
}

// TestStagedFilesNeverThroughSymlinks: the files Étoile writes itself (K3s,
// the CA bundle, os-release) go nowhere an overlay's symlink points.
func TestStagedFilesNeverThroughSymlinks(t *testing.T) {
	outside := t.TempDir()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "usr/lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("ORIGINAL"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(root, "etc/os-release")); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(src, []byte("cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := stageFile(root, "usr/lib/etoile/k3s/images/airgap.tar.zst", src, 0o644)
	if err == nil || !strings.Contains(err.Error(), "usr/lib is a folder Étoile writes into, but an earlier layer (an overlay, Étoile's own files) made it a symlink to "+outside) {
		t.Errorf("writing under a symlinked folder: %v", err)
	}
	// A symlink where Étoile writes a file is replaced, its target untouched.
	if err := stageFile(root, "etc/os-release", src, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "ORIGINAL" {
		t.Errorf("the file the symlink pointed to was written: %q", b)
	}
	if st, err := os.Lstat(filepath.Join(root, "etc/os-release")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("etc/os-release: %v %v, want a regular file", st, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("files written outside the staged tree: %v", ents)
	}
}

// TestCheckAgentRefusesOtherPrograms: what becomes /init must be etoile-agent.
func TestCheckAgentRefusesOtherPrograms(t *testing.T) {
	amd64, _ := ArchInfo("amd64")
	text := filepath.Join(t.TempDir(), "agent.sh")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkAgent(text, amd64); err == nil || !strings.Contains(err.Error(), "--agent "+text+" is not a Go program") {
		t.Errorf("a shell script: %v", err)
	}
	// This test's own binary: a Go program, but not etoile-agent.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkAgent(self, amd64); err == nil || !strings.Contains(err.Error(), "not etoile-agent ("+AgentPackage+")") {
		t.Errorf("another Go program: %v", err)
	}
}

func TestCopyTreeNonUTF8Name(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "bad\xff\xfe"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := copyTree(os.DirFS(src), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "is not UTF-8") {
		t.Errorf("a non-UTF-8 file name: %v", err)
	}
}
