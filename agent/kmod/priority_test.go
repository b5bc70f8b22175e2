package kmod

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestStorageModalias(t *testing.T) {
	for ma, want := range map[string]bool{
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01": true,  // ICH9 AHCI
		"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00": true,  // virtio block (PCI)
		"pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30": true,  // xHCI
		"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00": false, // virtio NIC
		"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00": false, // e1000e
		"virtio:d00000002v00001AF4":                             true,
		"virtio:d00000001v00001AF4":                             false,
		"scsi:t-0x05":                                           true,
		"scsi:t-0x01":                                           false,
		"usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00":     true,
		"usb:v046DpC52Bd1200dc00dsc00dp00ic03isc01ip01in00":     false,
		"acpi:PNP0303:":                                         false,
	} {
		if got := StorageModalias(ma); got != want {
			t.Errorf("StorageModalias(%s) = %v, want %v", ma, got, want)
		}
	}
}

// slowLoader records loads and takes a while over libata (and the modules
// in slow), as a large module does under emulation.
type slowLoader struct {
	Recorder
	slow map[string]bool
}

func (l *slowLoader) Load(name, p string) error { return l.LoadParams(name, p, "") }
func (l *slowLoader) LoadParams(name, p, params string) error {
	if name == "libata" || l.slow[name] {
		time.Sleep(50 * time.Millisecond)
	}
	return l.Recorder.LoadParams(name, p, params)
}

// gateLoader records loads; a gated module's load says it has begun (on
// entered) and waits for its gate to open. What a test asserts then depends
// on what the coldplug does, not on how fast a loaded machine runs it.
type gateLoader struct {
	Recorder
	gates   map[string]chan struct{}
	entered chan string
}

func newGateLoader(gated ...string) *gateLoader {
	l := &gateLoader{gates: map[string]chan struct{}{}, entered: make(chan string, len(gated))}
	for _, m := range gated {
		l.gates[m] = make(chan struct{})
	}
	return l
}

func (l *gateLoader) Load(name, p string) error { return l.LoadParams(name, p, "") }
func (l *gateLoader) LoadParams(name, p, params string) error {
	if g := l.gates[name]; g != nil {
		l.entered <- name
		<-g
	}
	return l.Recorder.LoadParams(name, p, params)
}

// begun waits until name's load has begun.
func (l *gateLoader) begun(t *testing.T, name string) {
	t.Helper()
	select {
	case got := <-l.entered:
		if got != name {
			t.Fatalf("%s began loading first, want %s", got, name)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never began loading (loaded: %q)", name, l.Loaded())
	}
}

// open lets name's load finish.
func (l *gateLoader) open(name string) { close(l.gates[name]) }

// loaded waits until name was loaded.
func (l *gateLoader) loaded(t *testing.T, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !slices.Contains(l.Loaded(), name); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never loaded (loaded: %q)", name, l.Loaded())
		}
	}
}

// settle runs c.Settle in the background (it may wait on a gate): the
// returned function waits for it.
func settle(t *testing.T, c *Coldplug) func() {
	done := make(chan error, 1)
	go func() { done <- c.Settle(context.Background(), 0, time.Minute) }()
	return func() {
		t.Helper()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestStorageFirst: with a SATA controller and a NIC found in the same scan,
// the SATA chain loads before the NIC driver even starts; every module
// gets async_probe, with the command line's parameters.
func TestStorageFirst(t *testing.T) {
	sys, mods := testDirs(t)
	files := map[string]string{
		"modules.dep": "kernel/ata/ahci.ko: kernel/ata/libahci.ko kernel/ata/libata.ko\nkernel/ata/libahci.ko: kernel/ata/libata.ko\n" +
			"kernel/ata/libata.ko:\nkernel/net/e1000e.ko:\nkernel/net/virtio_net.ko:\n",
		"modules.alias":      "alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n",
		"kernel/ata/ahci.ko": "", "kernel/ata/libahci.ko": "", "kernel/ata/libata.ko": "", "kernel/net/e1000e.ko": "",
	}
	writeTree(t, mods, files)
	fakeSys(t, sys, map[string]string{
		"pci/0000:00:02.0": "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00", // NIC, sorts first
		"pci/0000:00:1f.2": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // AHCI
	})
	loader := &slowLoader{}
	c, err := NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.Params = ModuleParams(map[string]string{"ahci.mobile_lpm_policy": "1", "libahci.ignore_sss": "1"})
	c.AsyncProbe = true
	if err := c.Settle(context.Background(), 0, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	got := loader.Loaded()
	if want := []string{"libata", "libahci", "ahci", "e1000e"}; !slices.Equal(got, want) {
		t.Errorf("load order %q, want %q (storage first)", got, want)
	}
	if p := loader.Params["ahci"]; p != "mobile_lpm_policy=1 async_probe" {
		t.Errorf("ahci loaded with parameters %q, want the command line's and async_probe", p)
	}
	if p := loader.Params["libahci"]; p != "ignore_sss=1 async_probe" {
		t.Errorf("libahci (a dependency) loaded with parameters %q, want the command line's and async_probe", p)
	}
	if p := loader.Params["e1000e"]; p != "async_probe" {
		t.Errorf("e1000e loaded with parameters %q, want async_probe", p)
	}
	if l := c.Loaded(0); !slices.Equal(l, got) {
		t.Errorf("Loaded(0) = %q, the loader saw %q", l, got)
	}
	if l := c.Loaded(3); !slices.Equal(l, []string{"e1000e"}) {
		t.Errorf("Loaded(3) = %q", l)
	}

	// Netboot: the NIC comes first.
	loader = &slowLoader{}
	c, err = NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.NetworkFirst = true
	if err := c.Settle(context.Background(), 0, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := loader.Loaded(), []string{"e1000e", "libata", "libahci", "ahci"}; !slices.Equal(got, want) {
		t.Errorf("NetworkFirst: load order %q, want %q", got, want)
	}
}

func TestModuleParams(t *testing.T) {
	got := ModuleParams(map[string]string{
		"usb-storage.delay_use": "0", "usb_storage.quirks": "0781:5581:u", "libata.force": "1:noncq",
		"ahci.mobile_lpm_policy": "3 4", "etoile.debug": "", "quiet": "", "console": "ttyS0", ".x": "1", "y.": "2",
	})
	want := map[string]string{
		"usb_storage": "delay_use=0 quirks=0781:5581:u",
		"libata":      "force=1:noncq",
		"ahci":        `mobile_lpm_policy="3 4"`,
		"etoile":      "debug",
	}
	if len(got) != len(want) {
		t.Errorf("ModuleParams = %q, want %q", got, want)
	}
	for m, p := range want {
		if got[m] != p {
			t.Errorf("%s: %q, want %q", m, got[m], p)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	defaults := map[string]string{"usb_storage": "delay_use=0", "ahci": "mobile_lpm_policy=1"}
	got := WithDefaults(map[string]string{"usb_storage": "delay_use=1 quirks=0781:5581:u", "libata": "force=1:noncq"}, defaults)
	want := map[string]string{"usb_storage": "delay_use=1 quirks=0781:5581:u", "libata": "force=1:noncq", "ahci": "mobile_lpm_policy=1"}
	if !maps.Equal(got, want) {
		t.Errorf("WithDefaults = %q, want %q (the command line's delay_use wins)", got, want)
	}
	if got := WithDefaults(nil, DefaultParams); got["usb_storage"] != "delay_use=0" {
		t.Errorf("no command line: usb_storage gets %q, want delay_use=0", got["usb_storage"])
	}
	if got := WithDefaults(map[string]string{"usb_storage": "quirks=x"}, DefaultParams); got["usb_storage"] != "quirks=x delay_use=0" {
		t.Errorf("another parameter on the command line: usb_storage gets %q", got["usb_storage"])
	}
}

func TestAliasesForBus(t *testing.T) {
	a := readAliases(t)
	for bus, want := range map[string]bool{"pci": true, "virtio": true, "usb": true, "acpi": false, "memory": false, "workqueue": false} {
		if got := a.ForBus(bus); got != want {
			t.Errorf("ForBus(%s) = %v, want %v", bus, got, want)
		}
	}
}

func TestNetworkModalias(t *testing.T) {
	for ma, want := range map[string]bool{
		"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00": true, // e1000e
		"virtio:d00000001v00001AF4":                             true,
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01": false,
		"virtio:d00000002v00001AF4":                             false,
	} {
		if got := NetworkModalias(ma); got != want {
			t.Errorf("NetworkModalias(%s) = %v, want %v", ma, got, want)
		}
	}
}

// TestChainYieldsOnceMediumFound: once the boot medium is found, another
// controller's chain of modules (ahci's, on a machine booted from a virtio
// disk) lets what mounting the medium takes go first.
func TestChainYieldsOnceMediumFound(t *testing.T) {
	sys, mods := testDirs(t)
	files := map[string]string{
		"modules.dep": "kernel/ata/ahci.ko: kernel/ata/libahci.ko kernel/ata/libata.ko\nkernel/ata/libahci.ko: kernel/ata/libata.ko\n" +
			"kernel/ata/libata.ko:\nkernel/fs/squashfs.ko:\n",
		"modules.alias":      "alias pci:v*d*sv*sd*bc01sc06i01* ahci\n",
		"kernel/ata/ahci.ko": "", "kernel/ata/libahci.ko": "", "kernel/ata/libata.ko": "", "kernel/fs/squashfs.ko": "",
	}
	writeTree(t, mods, files)
	fakeSys(t, sys, map[string]string{"pci/0000:00:1f.2": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"})
	// libata is loading when the medium is found and squashfs is asked for:
	// the rest of ahci's chain waits until squashfs is in.
	loader := newGateLoader("libata", "squashfs")
	c, err := NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartScan(context.Background()); err != nil {
		t.Fatal(err)
	}
	loader.begun(t, "libata")
	c.MediumFound()
	boot := make(chan struct{})
	go func() { c.LoadBoot(context.Background(), []string{"squashfs"}); close(boot) }()
	loader.begun(t, "squashfs")
	loader.open("libata")
	loader.loaded(t, "libata")
	// A chain that did not yield would load libahci and ahci now, before
	// squashfs (still held): give it the time to show it.
	time.Sleep(50 * time.Millisecond)
	loader.open("squashfs")
	select {
	case <-boot:
	case <-time.After(30 * time.Second):
		t.Fatalf("LoadBoot(squashfs) never returned (loaded: %q)", loader.Loaded())
	}
	settle(t, c)()
	if got, want := loader.Loaded(), []string{"libata", "squashfs", "libahci", "ahci"}; !slices.Equal(got, want) {
		t.Errorf("load order %q, want %q", got, want)
	}
}

// writeTree writes files (path → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBootModulesFor(t *testing.T) {
	if got := BootModulesFor(true, false); !slices.Equal(got, []string{"squashfs", "overlay"}) {
		t.Errorf("slot: %q", got)
	}
	if got := BootModulesFor(false, true); slices.Contains(got, "isofs") || !slices.Contains(got, "loop") {
		t.Errorf("netboot: %q", got)
	}
	if got := BootModulesFor(false, false); !slices.Equal(got, BootModules) {
		t.Errorf("ISO: %q", got)
	}
}

// TestSCSIClassDriversFollowTheController: a SATA controller's chain is
// followed by sr_mod and sd_mod, before the NIC's driver, so that the CD
// the controller finds binds at once; a NIC alone brings neither.
func TestSCSIClassDriversFollowTheController(t *testing.T) {
	sys, mods := testDirs(t)
	files := map[string]string{
		"modules.dep": "kernel/ata/ahci.ko: kernel/ata/libahci.ko kernel/ata/libata.ko kernel/scsi/scsi_mod.ko\n" +
			"kernel/ata/libahci.ko: kernel/ata/libata.ko kernel/scsi/scsi_mod.ko\nkernel/ata/libata.ko: kernel/scsi/scsi_mod.ko\n" +
			"kernel/scsi/scsi_mod.ko:\nkernel/scsi/sd_mod.ko: kernel/scsi/scsi_mod.ko\nkernel/scsi/sr_mod.ko: kernel/cdrom/cdrom.ko kernel/scsi/scsi_mod.ko\n" +
			"kernel/cdrom/cdrom.ko:\nkernel/net/e1000e.ko:\n",
		"modules.alias": "alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n",
	}
	for _, m := range []string{"ata/ahci", "ata/libahci", "ata/libata", "scsi/scsi_mod", "scsi/sd_mod", "scsi/sr_mod", "cdrom/cdrom", "net/e1000e"} {
		files["kernel/"+m+".ko"] = ""
	}
	writeTree(t, mods, files)
	for _, tc := range []struct {
		name string
		devs map[string]string
		want []string
	}{
		{"SATA and NIC", map[string]string{
			"pci/0000:00:02.0": "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
			"pci/0000:00:1f.2": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
		}, []string{"scsi_mod", "libata", "libahci", "ahci", "cdrom", "sr_mod", "sd_mod", "e1000e"}},
		{"NIC only", map[string]string{
			"pci/0000:00:02.0": "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
		}, []string{"e1000e"}},
	} {
		sysDir := filepath.Join(sys, tc.name)
		fakeSys(t, sysDir, tc.devs)
		loader := &slowLoader{}
		c, err := NewColdplug(sysDir, mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Settle(context.Background(), 0, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := loader.Loaded(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: load order %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestModprobeWaitsForNothing: a module the kernel or a mount asks for
// (modprobe) loads at once, not after the storage chains loading meanwhile.
func TestModprobeWaitsForNothing(t *testing.T) {
	sys, mods := testDirs(t)
	writeTree(t, mods, map[string]string{
		"modules.dep": "kernel/ata/ahci.ko: kernel/ata/libahci.ko kernel/ata/libata.ko\nkernel/ata/libahci.ko: kernel/ata/libata.ko\n" +
			"kernel/ata/libata.ko:\nkernel/fs/fat.ko:\nkernel/fs/vfat.ko: kernel/fs/fat.ko\n",
		"modules.alias":      "alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias fs-vfat vfat\n",
		"kernel/ata/ahci.ko": "", "kernel/ata/libahci.ko": "", "kernel/ata/libata.ko": "", "kernel/fs/fat.ko": "", "kernel/fs/vfat.ko": "",
	})
	fakeSys(t, sys, map[string]string{"pci/0000:00:1f.2": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"})
	loader := newGateLoader("libata")
	c, err := NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartScan(context.Background()); err != nil {
		t.Fatal(err)
	}
	loader.begun(t, "libata") // and held there until modprobe is done
	probed := make(chan error, 1)
	go func() { probed <- c.Modprobe(context.Background(), "fs-vfat") }()
	select {
	case err := <-probed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("modprobe fs-vfat waited for libata's load (loaded: %q)", loader.Loaded())
	}
	loader.open("libata")
	settle(t, c)()
	if got, want := loader.Loaded(), []string{"fat", "vfat", "libata", "libahci", "ahci"}; !slices.Equal(got, want) {
		t.Errorf("load order %q, want %q (modprobe's first)", got, want)
	}
}

// TestBootControllerFirst: with the firmware's boot controller known, the
// other storage controller's chain waits: here the VM booted from its
// virtio disk, and q35's AHCI controller is not what the boot waits for.
func TestBootControllerFirst(t *testing.T) {
	sys, mods := testDirs(t)
	const virtioBlk = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"
	writeTree(t, mods, map[string]string{
		"modules.dep": "kernel/ata/ahci.ko: kernel/ata/libahci.ko kernel/ata/libata.ko\nkernel/ata/libahci.ko: kernel/ata/libata.ko\n" +
			"kernel/ata/libata.ko:\nkernel/virtio/virtio_pci.ko:\n",
		"modules.alias":      "alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n",
		"kernel/ata/ahci.ko": "", "kernel/ata/libahci.ko": "", "kernel/ata/libata.ko": "", "kernel/virtio/virtio_pci.ko": "",
	})
	fakeSys(t, sys, map[string]string{
		"pci/0000:00:02.0": virtioBlk,
		"pci/0000:00:1f.2": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // AHCI, sorts first
	})
	for _, tc := range []struct {
		boot string
		want []string
	}{
		// Both urgent: the AHCI chain loads while virtio_pci's load is held.
		{"", []string{"libata", "libahci", "ahci", "virtio_pci"}},
		// virtio's is the boot controller: AHCI's chain waits for it.
		{virtioBlk, []string{"virtio_pci", "libata", "libahci", "ahci"}},
	} {
		loader := newGateLoader("virtio_pci")
		c, err := NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if tc.boot != "" {
			c.SetBootController(tc.boot)
		}
		wait := settle(t, c)
		loader.begun(t, "virtio_pci")
		if tc.boot == "" {
			loader.loaded(t, "ahci")
		} else {
			// A chain that did not wait would load now: give it the time
			// to show it.
			time.Sleep(50 * time.Millisecond)
		}
		loader.open("virtio_pci")
		wait()
		if got := loader.Loaded(); !slices.Equal(got, tc.want) {
			t.Errorf("boot controller %q: load order %q, want %q", tc.boot, got, tc.want)
		}
	}
}

// testDirs returns a sysfs folder and a modules folder under a new temporary root.
func testDirs(t *testing.T) (sys, mods string) {
	root := t.TempDir()
	return filepath.Join(root, "sys"), filepath.Join(root, "lib/modules/6.1.0-test")
}
