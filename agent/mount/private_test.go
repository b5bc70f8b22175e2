package mount

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMakePrivate: the agent's folder in /run is made root's only (0700),
// an existing one given that mode; a symbolic link there is refused, not
// followed to change what it names.
func TestMakePrivate(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "run", "etoile")
	if err := MakePrivate(dir); err != nil {
		t.Fatal(err)
	}
	mode := func(p string) os.FileMode {
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	if m := mode(dir); m != 0o700 {
		t.Errorf("made with mode %o, want 700", m)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MakePrivate(dir); err != nil || mode(dir) != 0o700 {
		t.Errorf("an existing 0755 folder: %v, mode %o, want 700", err, mode(dir))
	}
	other := filepath.Join(base, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	if err := MakePrivate(link); err == nil {
		t.Error("a symbolic link was taken for the folder")
	}
	if m := mode(other); m != 0o755 {
		t.Errorf("the link's target got mode %o", m)
	}
}

// TestMountPointInThePrivateFolder: a mount point below the private folder
// (the boot medium, a config volume) makes the folder private first, even
// when something made it 0755 before; one elsewhere leaves it alone.
func TestMountPointInThePrivateFolder(t *testing.T) {
	base := t.TempDir()
	private := filepath.Join(base, "run", "etoile")
	if err := os.MkdirAll(private, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(private, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := makeMountPoint(filepath.Join(base, "mnt", "x"), private); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(private); st.Mode().Perm() != 0o755 {
		t.Errorf("a mount point elsewhere changed the private folder to %o", st.Mode().Perm())
	}
	target := filepath.Join(private, "media")
	if err := makeMountPoint(target, private); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(target); err != nil || !st.IsDir() {
		t.Fatalf("mount point not made: %v", err)
	}
	if st, _ := os.Stat(private); st.Mode().Perm() != 0o700 {
		t.Errorf("the private folder has mode %o after a mount point in it, want 700", st.Mode().Perm())
	}
}
