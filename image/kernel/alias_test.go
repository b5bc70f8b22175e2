package kernel

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirWithoutModulesAlias: a kernel folder with modules.dep but no
// modules.alias would give media whose agent matches no device to its
// driver: refused, naming the missing file and the depmod run that writes
// it. Without modules.dep (the other fix offered) the folder is indexed
// from the modules themselves, aliases included.
func TestDirWithoutModulesAlias(t *testing.T) {
	root := t.TempDir()
	modDir := writeFakeKernel(t, root, fakeTree)
	entries, err := scanModules(modDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeDepmodFiles(modDir, entries); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(modDir, "modules.alias")); err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(context.Background(), Source{Dir: root}, "", nil)
	if err == nil {
		t.Fatal("a kernel folder without modules.alias was accepted")
	}
	for _, w := range []string{"kernel.dir", "no modules.alias", "depmod -b " + root + " " + fakeVer} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if err := os.Remove(filepath.Join(modDir, "modules.dep")); err != nil {
		t.Fatal(err)
	}
	k, err := Resolve(context.Background(), Source{Dir: root}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := k.Select([]string{"virtio_blk"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		if m.Name == "virtio_blk" && (len(m.Aliases) == 0 || !m.DeviceDriver()) {
			t.Errorf("virtio_blk has no device alias: %v", m.Aliases)
		}
	}
	if modulesRoot(filepath.Join("/k", "usr", "lib", "modules", fakeVer)) != "/k" {
		t.Errorf("modulesRoot of a merged-/usr layout: %s", modulesRoot(filepath.Join("/k", "usr", "lib", "modules", fakeVer)))
	}
}
