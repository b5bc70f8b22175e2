package kmod

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// aliasTestDep is the module index of the modprobe.d alias and softdep
// tests: igb is modules.alias's driver for the device a modprobe.d alias
// gives to e1000e, and modules.softdep gives e1000e soft dependencies that
// modprobe.d's replaces.
const aliasTestDep = "kernel/net/e1000e.ko:\nkernel/net/igb.ko:\nkernel/lib/libfoo.ko:\nkernel/lib/bar.ko:\n" +
	"kernel/crypto/crc32c_generic.ko:\nkernel/usb/my-usb-drv.ko:\nkernel/gpu/nouveau.ko: kernel/gpu/drm.ko\nkernel/gpu/drm.ko:\n" +
	"kernel/misc/cyc_a.ko:\nkernel/misc/cyc_b.ko:\n"

// aliasColdplug is a Coldplug over aliasTestDep, with a Recorder, and its
// sysfs folder (none yet: fakeSys makes it).
func aliasColdplug(t *testing.T) (*Coldplug, *Recorder, string) {
	t.Helper()
	sys, mods := testDirs(t)
	files := map[string]string{
		"modules.dep": aliasTestDep,
		"modules.alias": "alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\n" +
			"alias pci:v00008086d0000ABCDsv*sd*bc*sc*i* igb\n",
		"modules.softdep": "softdep e1000e pre: libfoo post: bar\n",
	}
	deps, err := ParseDeps(strings.NewReader(aliasTestDep))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range deps.path {
		files[p] = ""
	}
	writeTree(t, mods, files)
	rec := &Recorder{}
	c, err := NewColdplug(sys, mods, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c, rec, sys
}

// aliasTestConf is the modprobe.d of the alias and softdep tests.
func aliasTestConf(t *testing.T) ModprobeConf {
	t.Helper()
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"etc/modprobe.d/net.conf": "alias my-nic e1000e\n" +
			"alias pci:v00008086d0000ABCD* e1000e\n" +
			"softdep e1000e pre: crc32c\n" +
			"alias usb:v1234p5678* my-usb-drv\n" +
			"blacklist nouveau\n" +
			"alias my-gpu nouveau\n" +
			"alias pci:v000010DEd00001EB8* nouveau\n" +
			"softdep cyc-a pre: cyc_b\n" +
			"softdep cyc_b pre: cyc-a\n" +
			"alias ping pong\n" +
			"alias pong ping\n" +
			"remove e1000e /bin/true\n" +
			"alias lonely\n" +
			"softdep\n" +
			"alias pci:v[0-9 e1000e\n" +
			"alias igb e1000e\n",
		// Sorted after net.conf: e1000e's softdep there is the first, and
		// the only one that counts.
		"lib/modprobe.d/zz.conf": "softdep e1000e post: bar\n",
	})
	conf, err := ReadModprobeD(root)
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

// TestReadModprobeDAliasAndSoftdep: alias and softdep lines are read, not
// listed as not applied; a line missing its fields is.
func TestReadModprobeDAliasAndSoftdep(t *testing.T) {
	conf := aliasTestConf(t)
	const f = "/etc/modprobe.d/net.conf:"
	if want := []string{f + "12 remove", f + "13 alias (malformed)", f + "14 softdep (malformed)", f + "15 alias (malformed)"}; !slices.Equal(conf.Ignored, want) {
		t.Errorf("not applied %q, want %q", conf.Ignored, want)
	}
	if len(conf.Aliases) != 8 {
		t.Fatalf("aliases %+v, want 8", conf.Aliases)
	}
	if got, want := conf.Aliases[0], (AliasRule{Pattern: "my_nic", Module: "e1000e", Source: f + "1"}); got != want {
		t.Errorf("first alias %+v, want %+v", got, want)
	}
	if got := conf.Aliases[2]; got.Pattern != "usb:v1234p5678*" || got.Module != "my_usb_drv" {
		t.Errorf("usb alias %+v, want its module's name with _", got)
	}
	if len(conf.Softdeps) != 4 {
		t.Fatalf("softdeps %+v, want 4", conf.Softdeps)
	}
	if got := conf.Softdeps[0]; got.Pattern != "e1000e" || !slices.Equal(got.Pre, []string{"crc32c"}) || got.Post != nil || got.Source != f+"3" {
		t.Errorf("first softdep %+v, want e1000e pre: crc32c from %s3", got, f)
	}
	if got := conf.Softdeps[1]; got.Pattern != "cyc_a" {
		t.Errorf("softdep cyc-a read as %+v, want the pattern cyc_a", got)
	}
	// kmod's bracket rule: '-' is '_' outside [ ], kept inside.
	for in, want := range map[string]string{"pci:v*d*bc0[2-3]*": "pci:v*d*bc0[2-3]*", "fs-x[a-b]-y": "fs_x[a-b]_y"} {
		if got, ok := underscores(in); !ok || got != want {
			t.Errorf("underscores(%q) = %q, %v, want %q", in, got, ok, want)
		}
	}
	if _, ok := underscores("a]"); ok {
		t.Error("underscores accepted an unmatched ]")
	}
}

// TestModprobeDAliasAndSoftdep: modprobe.d's aliases resolve names and
// devices' modaliases (before modules.alias, as with kmod), its softdeps
// replace modules.softdep's, its blacklist applies through its aliases, and
// alias and softdep loops end.
func TestModprobeDAliasAndSoftdep(t *testing.T) {
	ctx := context.Background()
	conf := aliasTestConf(t)

	// Without modprobe.d, modules.softdep's soft dependencies load.
	c0, rec0, _ := aliasColdplug(t)
	if err := c0.Modprobe(ctx, "e1000e"); err != nil {
		t.Fatal(err)
	}
	if got, want := rec0.Loaded(), []string{"libfoo", "e1000e", "bar"}; !slices.Equal(got, want) {
		t.Fatalf("without modprobe.d: loaded %q, want %q", got, want)
	}
	if got := c0.Resolve("my-nic"); got != nil {
		t.Fatalf("without modprobe.d my-nic resolves to %q", got)
	}

	c, rec, _ := aliasColdplug(t)
	c.AddModprobeConf(conf)
	const nic = "pci:v00008086d0000ABCDsv00008086sd00000000bc02sc00i00"
	// A modprobe.d alias comes before even a module of its name (kmod's
	// order: `alias ipv6 off` stops modprobe ipv6).
	for _, name := range []string{"my-nic", "my_nic", nic, "igb"} {
		if got := c.Resolve(name); !slices.Equal(got, []string{"e1000e"}) {
			t.Errorf("Resolve(%s) = %q, want e1000e (modprobe.d's alias, before modules.alias's igb)", name, got)
		}
	}
	if err := c.Modprobe(ctx, "my-nic"); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.Loaded(), []string{"crc32c_generic", "e1000e"}; !slices.Equal(got, want) {
		t.Errorf("modprobe my-nic loaded %q, want %q (modprobe.d's softdep, through modules.alias's crc32c, instead of modules.softdep's)", got, want)
	}

	// A module blacklisted is not loaded through a modprobe.d alias.
	if got := c.Resolve("my-gpu"); !slices.Equal(got, []string{"nouveau"}) {
		t.Errorf("Resolve(my-gpu) = %q, want nouveau", got)
	}
	if err := c.Modprobe(ctx, "my-gpu"); err != nil {
		t.Errorf("Modprobe of a modprobe.d alias of a blacklisted module: %v, want nil (kmod: nothing to do)", err)
	}
	c.LoadFixed(ctx, []string{"my-gpu"})
	if got := rec.Loaded(); slices.Contains(got, "nouveau") || slices.Contains(got, "drm") {
		t.Errorf("loaded %q: the blacklist did not stop nouveau through its alias", got)
	}

	// Loops end: a softdep cycle loads both, an alias is not looked up
	// again (pong is no module: an error, not a loop).
	done := make(chan error, 2)
	go func() {
		done <- c.Modprobe(ctx, "cyc_a")
		done <- c.Modprobe(ctx, "ping")
	}()
	for i, want := range []bool{false, true} {
		select {
		case err := <-done:
			if (err != nil) != want {
				t.Errorf("modprobe %d of the loops: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("modprobe of a softdep or alias loop hangs")
		}
	}
	if got := c.Resolve("ping"); !slices.Equal(got, []string{"pong"}) {
		t.Errorf("Resolve(ping) = %q, want pong (not looked up again)", got)
	}
	if got := rec.Loaded(); !slices.Equal(got[len(got)-2:], []string{"cyc_b", "cyc_a"}) {
		t.Errorf("modprobe cyc_a loaded %q, want cyc_b then cyc_a at the end", got)
	}
}

// TestModprobeDAliasColdplug: a device's modalias that a modprobe.d alias
// matches gets that alias's module, not modules.alias's, on a bus only
// modprobe.d has aliases for too; the blacklist holds for it.
func TestModprobeDAliasColdplug(t *testing.T) {
	c, rec, sys := aliasColdplug(t)
	c.AddModprobeConf(aliasTestConf(t))
	const usb = "usb:v1234p5678d0100dc00dsc00dp00icFFisc00ip00in00"
	fakeSys(t, sys, map[string]string{
		"pci/0000:00:03.0": "pci:v00008086d0000ABCDsv00008086sd00000000bc02sc00i00",
		"usb/1-1:1.0":      usb,
		"pci/0000:00:04.0": "pci:v000010DEd00001EB8sv000010DEsd000012A2bc03sc02i00",
	})
	if !c.HasDriver(usb) {
		t.Errorf("HasDriver(%s) = false, want true (a modprobe.d alias)", usb)
	}
	ctx := context.Background()
	if _, err := c.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	got := rec.Loaded()
	slices.Sort(got)
	if want := []string{"crc32c_generic", "e1000e", "my_usb_drv"}; !slices.Equal(got, want) {
		t.Errorf("coldplug loaded %q, want %q (not igb, nor modules.softdep's, nor blacklisted nouveau)", got, want)
	}
	// A new index that changes modules.alias's drivers for the device
	// changes nothing for it: modprobe.d's alias still decides, so it is not
	// looked at again.
	writeTree(t, c.ModDir, map[string]string{"modules.alias": "alias crc32c crc32c_generic\nalias pci:v00008086d0000ABCD* libfoo\n"})
	if _, err := c.Reindex(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Scan(ctx); err != nil || n != 0 {
		t.Errorf("scan after the new index: %d new devices, %v; want none (modprobe.d's alias decides their driver)", n, err)
	}
	if got := rec.Loaded(); len(got) != 3 {
		t.Errorf("loaded %q after the new index", got)
	}
}

// TestModprobeDAliasForADeviceSeenBefore: the initramfs's scan saw a
// device no driver was known for; the system image's modprobe.d (read
// after the switch) names one with an alias: the next scan loads it.
func TestModprobeDAliasForADeviceSeenBefore(t *testing.T) {
	c, rec, sys := aliasColdplug(t)
	const usb = "usb:v1234p5678d0100dc00dsc00dp00icFFisc00ip00in00"
	// A modalias with a hyphen, as platform and of: devices have.
	fakeSys(t, sys, map[string]string{"usb/1-1:1.0": usb, "platform/my-dev": "platform:my-dev"})
	ctx := context.Background()
	if _, err := c.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.Loaded(); len(got) != 0 {
		t.Fatalf("loaded %q before modprobe.d", got)
	}
	conf := aliasTestConf(t)
	conf.Aliases = append(conf.Aliases, AliasRule{Pattern: "platform:my_dev", Module: "my_usb_drv", Source: "test.conf:9"}) // written platform:my-dev
	c.AddModprobeConf(conf)
	if n, err := c.Scan(ctx); err != nil || n != 2 {
		t.Errorf("scan after modprobe.d: %d new devices, %v; want the two devices its aliases name a driver for", n, err)
	}
	if got := rec.Loaded(); !slices.Contains(got, "my_usb_drv") {
		t.Errorf("loaded %q, want my_usb_drv (modprobe.d's alias for the device seen before)", got)
	}
}
