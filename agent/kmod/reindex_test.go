package kmod

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestReindexDrivesWhatTheNewIndexKnows: a GPU no module of the first index
// drives gets its driver (and the driver's dependency) once the index that
// the system image's extension brought replaces it; what was loaded stays
// loaded once.
func TestReindexDrivesWhatTheNewIndexKnows(t *testing.T) {
	root := t.TempDir()
	sys := filepath.Join(root, "sys")
	mods := filepath.Join(root, "lib/modules/6.1.0-56-amd64")
	fakeSys(t, sys, map[string]string{
		"pci/0000:00:03.0": "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
		"pci/0000:00:05.0": "pci:v000010DEd00002330sv000010DEsd000016C1bc03sc02i00", // an H100
	})
	fakeroot.Write(t, root, map[string]string{
		"lib/modules/6.1.0-56-amd64/modules.dep":                     "kernel/drivers/net/e1000.ko.zst:\n",
		"lib/modules/6.1.0-56-amd64/modules.alias":                   "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n",
		"lib/modules/6.1.0-56-amd64/kernel/drivers/net/e1000.ko.zst": "",
	})
	loader := &Recorder{}
	c, err := NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := loader.Loaded(); !slices.Equal(got, []string{"e1000"}) {
		t.Fatalf("first scan loaded %q, want [e1000]", got)
	}
	// The system image's folder laid over the initramfs's: its index names both.
	fakeroot.Write(t, root, map[string]string{
		"lib/modules/6.1.0-56-amd64/modules.dep": "kernel/drivers/net/e1000.ko.zst:\nextra/nvidia.ko: kernel/drivers/i2c/i2c-core.ko\n" +
			"kernel/drivers/i2c/i2c-core.ko:\n",
		"lib/modules/6.1.0-56-amd64/modules.alias": "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n" +
			"alias pci:v000010DEd*sv*sd*bc03sc02i00* nvidia\n",
		"lib/modules/6.1.0-56-amd64/extra/nvidia.ko":                "",
		"lib/modules/6.1.0-56-amd64/kernel/drivers/i2c/i2c-core.ko": "",
	})
	if n, err := c.Scan(context.Background()); err != nil || n != 0 {
		t.Fatalf("a scan before Reindex found %d new devices (%v): the devices were handled", n, err)
	}
	added, err := c.Reindex()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(added, []string{"i2c_core", "nvidia"}) {
		t.Errorf("Reindex added %q, want [i2c_core nvidia]", added)
	}
	if _, err := c.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := loader.Loaded(); !slices.Equal(got, []string{"e1000", "i2c_core", "nvidia"}) {
		t.Errorf("after Reindex loaded %q, want [e1000 i2c_core nvidia]", got)
	}
	if err := c.Modprobe(context.Background(), "nvidia"); err != nil {
		t.Errorf("modprobe nvidia after Reindex: %v", err)
	}
	// A broken index leaves the old one in place.
	if err := os.Remove(filepath.Join(mods, "modules.alias")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reindex(); err == nil {
		t.Error("Reindex without modules.alias succeeded")
	}
	if err := c.Modprobe(context.Background(), "nvidia"); err != nil {
		t.Errorf("a failed Reindex lost the index: %v", err)
	}
}

// TestReadModulesLoadD follows modules-load.d(5): files by name across the
// folders, /etc hiding /usr/lib's file of the same name, comments with '#'
// and ';', each module once, non-.conf files ignored.
func TestReadModulesLoadD(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"etc/modules-load.d/nvidia.conf":     "# NVIDIA's container toolkit\nnvidia-uvm\n\n; also\nnvidia_modeset\n",
		"usr/lib/modules-load.d/nvidia.conf": "hidden_by_etc\n",
		"usr/lib/modules-load.d/10-net.conf": "tcp_bbr\nnvidia_uvm\n",
		"usr/lib/modules-load.d/README":      "not_a_module\n",
	})
	ml, err := ReadModulesLoadD(root)
	if err != nil {
		t.Fatal(err)
	}
	names, files := ml.Names, ml.Files
	if want := []string{"tcp_bbr", "nvidia_uvm", "nvidia_modeset"}; !slices.Equal(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
	if want := []string{"/usr/lib/modules-load.d/10-net.conf", "/etc/modules-load.d/nvidia.conf"}; !slices.Equal(files, want) {
		t.Errorf("files = %q, want %q", files, want)
	}
	if ml.From["tcp_bbr"] != "/usr/lib/modules-load.d/10-net.conf" || ml.From["nvidia_uvm"] != "/usr/lib/modules-load.d/10-net.conf" {
		t.Errorf("From = %v", ml.From)
	}
	if ml, err := ReadModulesLoadD(t.TempDir()); err != nil || ml.Names != nil || ml.Files != nil {
		t.Errorf("no folders: %+v %v", ml, err)
	}
}

// TestLoadFixedAcceptsAliases: a modules-load.d name may be an alias
// (fs-iso9660), as modprobe and systemd-modules-load take it.
func TestLoadFixedAcceptsAliases(t *testing.T) {
	root := t.TempDir()
	mods := filepath.Join(root, "lib/modules/6.1.0-50-amd64")
	files := map[string]string{}
	for _, f := range []string{"modules.alias", "modules.dep"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		files["lib/modules/6.1.0-50-amd64/"+f] = string(b)
	}
	fakeroot.Write(t, root, files)
	for _, p := range readDeps(t).path {
		fakeroot.Write(t, mods, map[string]string{p: ""})
	}
	loader := &Recorder{}
	c, err := NewColdplug(filepath.Join(root, "sys"), mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.LoadFixed(context.Background(), []string{"fs-iso9660"})
	if got := loader.Loaded(); !slices.Contains(got, "isofs") {
		t.Errorf("LoadFixed(fs-iso9660) loaded %q, want isofs", got)
	}
}
