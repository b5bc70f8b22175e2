package kmod

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/internal/syncbuf"
)

// failIndex is a module index for the tests of failed loads: wireguard needs
// curve25519; needs_missing needs a module modules.dep lacks; no_file's
// file is missing; crc32c_generic is built in for builtin_user… and the
// alias crypto-crc32c names crc32c_intel and crc32c_generic.
const failDep = "kernel/net/wireguard.ko: kernel/lib/curve25519.ko\nkernel/lib/curve25519.ko:\n" +
	"kernel/x/needs_missing.ko: kernel/x/not_shipped.ko\nkernel/x/no_file.ko:\nkernel/x/enodev.ko:\nkernel/x/eexist.ko:\n" +
	"kernel/crypto/crc32c-intel.ko:\nkernel/crypto/crc32c_soft.ko:\nkernel/fs/vfat.ko: kernel/fs/fat.ko\nkernel/fs/fat.ko:\n" +
	"kernel/drivers/e1000e.ko:\nkernel/drivers/nouveau.ko: kernel/drivers/drm.ko\nkernel/drivers/drm.ko:\n" +
	"kernel/net/dccp.ko:\nkernel/net/dccp_ipv4.ko: kernel/net/dccp.ko\nkernel/net/sctp.ko:\nkernel/drivers/usb-storage.ko:\nkernel/x/weird.ko:\n"

const failAlias = "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_soft\nalias fs-vfat vfat\n" +
	"alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\nalias pci:v000010DEd*sv*sd*bc03sc*i* nouveau\nalias nv-alias nouveau\n" +
	"alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage\nalias net-pf-33 dccp\n"

const e1000eModalias = "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"

func failColdplug(t *testing.T, loader Loader) (*Coldplug, string, *syncbuf.Buffer) {
	t.Helper()
	sys, mods := testDirs(t)
	files := map[string]string{"modules.dep": failDep, "modules.alias": failAlias, "modules.builtin": "kernel/lib/builtin_thing.ko\n"}
	deps, err := ParseDeps(strings.NewReader(failDep))
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range deps.path {
		if name != "no_file" {
			files[p] = ""
		}
	}
	writeTree(t, mods, files)
	if err := os.MkdirAll(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	var log syncbuf.Buffer
	c, err := NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return c, sys, &log
}

// TestModprobeFailsWhenTheModuleDoesNot: Modprobe (and so the agent's
// modprobe and the boot's LoadModule) fails when init_module fails, when a
// dependency fails (the chain stops there, as with kmod), when a
// dependency is not in modules.dep and when the module's file is missing;
// ENODEV is an error too (kmod's "could not insert"). Built in and already
// loaded (EEXIST) are successes, and so is an alias one of whose modules
// loads.
func TestModprobeFailsWhenTheModuleDoesNot(t *testing.T) {
	ctx := context.Background()
	rec := &Recorder{Fail: map[string]error{"wireguard": unix.ENOEXEC, "enodev": unix.ENODEV, "eexist": unix.EEXIST, "crc32c_intel": unix.ENODEV}}
	c, _, log := failColdplug(t, rec)
	err := c.Modprobe(ctx, "wireguard")
	if err == nil || !errors.Is(err, unix.ENOEXEC) || !strings.Contains(err.Error(), "loading module wireguard") || !strings.Contains(err.Error(), "exec format error") {
		t.Errorf("Modprobe(wireguard), init_module failing: %v; want an error naming wireguard and the kernel's error", err)
	}
	err = c.Modprobe(ctx, "enodev")
	if !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "enodev") {
		t.Errorf("Modprobe(enodev), init_module ENODEV: %v; want an error (kmod: could not insert)", err)
	}
	if strings.Contains(log.String(), `level=WARN msg="module load failed" module=enodev`) {
		t.Errorf("ENODEV logged as a warning:\n%s", log)
	}
	if err := c.Modprobe(ctx, "eexist"); err != nil {
		t.Errorf("Modprobe of a module already in the kernel (EEXIST): %v", err)
	}
	if err := c.Modprobe(ctx, "builtin_thing"); err != nil {
		t.Errorf("Modprobe of a built-in module: %v", err)
	}
	if err := c.Modprobe(ctx, "crypto-crc32c"); err != nil {
		t.Errorf("Modprobe of an alias one of whose two modules loads: %v", err)
	}
	err = c.Modprobe(ctx, "needs_missing")
	if err == nil || !strings.Contains(err.Error(), "not_shipped (needed by needs_missing)") {
		t.Errorf("Modprobe of a module whose dependency is not in modules.dep: %v", err)
	}
	err = c.Modprobe(ctx, "no_file")
	if err == nil || !strings.Contains(err.Error(), "module no_file") || !strings.Contains(err.Error(), "rebuild the image") {
		t.Errorf("Modprobe of a module whose file is missing: %v", err)
	}

	// A dependency failing stops the chain.
	rec = &Recorder{Fail: map[string]error{"curve25519": unix.EINVAL}}
	c, _, _ = failColdplug(t, rec)
	err = c.Modprobe(ctx, "wireguard")
	if err == nil || !strings.Contains(err.Error(), "wireguard") || !strings.Contains(err.Error(), "curve25519") || !errors.Is(err, unix.EINVAL) {
		t.Errorf("Modprobe(wireguard), curve25519 failing: %v; want an error naming both", err)
	}
	if got := rec.Loaded(); slices.Contains(got, "wireguard") {
		t.Errorf("wireguard loaded after its dependency failed: %q", got)
	}
}

// TestFailedLoadIsTriedAgain: a module whose load failed is loaded again
// by a later request (Modprobe, LoadFixed, a device added), and the failure
// is reported, not taken for a success; a rescan of the same devices does
// not try it again (no loop).
func TestFailedLoadIsTriedAgain(t *testing.T) {
	ctx := context.Background()
	rec := &Recorder{Fail: map[string]error{"vfat": unix.ENOMEM, "curve25519": unix.ENOMEM}}
	c, _, _ := failColdplug(t, rec)
	if err := c.Modprobe(ctx, "fs-vfat"); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("first Modprobe(fs-vfat) = %v, want ENOMEM", err)
	}
	if err := c.Modprobe(ctx, "wireguard"); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("first Modprobe(wireguard) = %v, want curve25519's ENOMEM", err)
	}
	rec.mu.Lock()
	rec.Fail = nil
	rec.mu.Unlock()
	if err := c.Modprobe(ctx, "fs-vfat"); err != nil {
		t.Errorf("second Modprobe(fs-vfat) = %v", err)
	}
	c.LoadFixed(ctx, []string{"wireguard"})
	if got := rec.Loaded(); !slices.Contains(got, "vfat") || !slices.Contains(got, "curve25519") || !slices.Contains(got, "wireguard") {
		t.Errorf("loaded %q: vfat, curve25519 and wireguard not tried again", got)
	}
	if got := rec.Loaded(); countOf(got, "fat") != 1 {
		t.Errorf("fat (loaded) loaded twice: %q", got)
	}
}

// TestDeviceAddedAgainRetriesItsDriver: a device's driver that failed to
// load is not tried again by the scans that follow, but is by the device's
// next "add" event.
func TestDeviceAddedAgainRetriesItsDriver(t *testing.T) {
	ctx := context.Background()
	rec := &Recorder{Fail: map[string]error{"e1000e": unix.EIO}}
	c, sys, _ := failColdplug(t, rec)
	fakeSys(t, sys, map[string]string{"pci/0000:00:02.0": e1000eModalias})
	if _, err := c.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.Fail = nil
	rec.mu.Unlock()
	if _, err := c.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.Loaded(); slices.Contains(got, "e1000e") {
		t.Fatalf("a rescan tried e1000e again: %q", got)
	}
	var wg sync.WaitGroup
	c.startForDevices(ctx, []string{e1000eModalias}, &wg, true)
	wg.Wait()
	if got := rec.Loaded(); !slices.Contains(got, "e1000e") {
		t.Errorf("the device added again did not get e1000e: %q", got)
	}
}

// TestModprobeDBlacklist: a module modprobe.d blacklists is not loaded for
// a device's modalias (scan or hotplug), nor for an alias (modprobe,
// modules-load.d), nor by its name with -b; by its own name it is, as with
// kmod.
func TestModprobeDBlacklist(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{"etc/modprobe.d/gpu.conf": "blacklist nouveau\n"})
	conf, err := ReadModprobeD(root)
	if err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{}
	c, sys, log := failColdplug(t, rec)
	c.AddModprobeConf(conf)
	fakeSys(t, sys, map[string]string{"pci/0000:00:03.0": "pci:v000010DEd00001EB8sv000010DEsd000012A2bc03sc02i00"})
	if _, err := c.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	c.startForDevices(ctx, []string{"pci:v000010DEd00002204sv000010DEsd00001454bc03sc00i00"}, &wg, true)
	wg.Wait()
	if err := c.Modprobe(ctx, "nv-alias"); err != nil {
		t.Errorf("Modprobe of an alias of a blacklisted module: %v, want nil (kmod: nothing to do)", err)
	}
	c.LoadFixed(ctx, []string{"nv-alias"})
	if err := c.ModprobeWith(ctx, "nouveau", ProbeOptions{UseBlacklist: true}); err != nil {
		t.Errorf("Modprobe -b of a blacklisted module: %v", err)
	}
	if got := rec.Loaded(); len(got) != 0 {
		t.Errorf("loaded %q: the blacklist did not stop nouveau", got)
	}
	if !strings.Contains(log.String(), "module blacklisted by modprobe.d") || !strings.Contains(log.String(), "/etc/modprobe.d/gpu.conf:1") {
		t.Errorf("the blacklist's effect is not logged with its line:\n%s", log)
	}
	if err := c.Modprobe(ctx, "nouveau"); err != nil {
		t.Fatal(err)
	}
	if got := rec.Loaded(); !slices.Equal(got, []string{"drm", "nouveau"}) {
		t.Errorf("Modprobe(nouveau) by its name loaded %q, want drm, nouveau", got)
	}
}

// TestModprobeDInstallFalseAndTrue: `install NAME /bin/false` (the
// hardening idiom) makes loading NAME fail by any path, as a dependency
// too; `install NAME /bin/true` makes it do nothing; another install
// command is not followed (listed as not applied); -i ignores them.
func TestModprobeDInstallFalseAndTrue(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{"etc/modprobe.d/cis.conf": "install dccp /bin/false\ninstall sctp /usr/bin/false\n" +
		"install usb-storage /bin/true\ninstall weird /sbin/modprobe --ignore-install weird && echo hi\ninstall dccp /bin/true\n"})
	conf, err := ReadModprobeD(root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := conf.InstallSummary(), "dccp=false,sctp=false,usb_storage=true"; got != want {
		t.Errorf("install rules %q, want %q (the first of a module's counts)", got, want)
	}
	if want := []string{"/etc/modprobe.d/cis.conf:4 install"}; !slices.Equal(conf.Ignored, want) {
		t.Errorf("not applied %q, want %q", conf.Ignored, want)
	}
	rec := &Recorder{}
	c, sys, _ := failColdplug(t, rec)
	c.AddModprobeConf(conf)
	err = c.Modprobe(ctx, "dccp")
	var de *DisabledError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "/etc/modprobe.d/cis.conf:1") || !strings.Contains(err.Error(), "remove that line") {
		t.Errorf("Modprobe(dccp) = %v, want dccp disabled by cis.conf:1", err)
	}
	if err := c.Modprobe(ctx, "net-pf-33"); !errors.As(err, &de) {
		t.Errorf("Modprobe of dccp's alias = %v, want disabled", err)
	}
	if err := c.Modprobe(ctx, "dccp_ipv4"); !errors.As(err, &de) || !strings.Contains(err.Error(), "dccp_ipv4") {
		t.Errorf("Modprobe(dccp_ipv4) = %v, want its dependency dccp disabled", err)
	}
	if err := c.Modprobe(ctx, "sctp"); !errors.As(err, &de) {
		t.Errorf("Modprobe(sctp) (/usr/bin/false) = %v, want disabled", err)
	}
	c.LoadFixed(ctx, []string{"dccp"})
	if err := c.Modprobe(ctx, "usb-storage"); err != nil {
		t.Errorf("Modprobe(usb-storage) (/bin/true) = %v, want nil", err)
	}
	fakeSys(t, sys, map[string]string{"usb/1-1:1.0": "usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00"})
	if _, err := c.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.Loaded(); len(got) != 0 {
		t.Errorf("loaded %q despite install false/true", got)
	}
	if err := c.Modprobe(ctx, "weird"); err != nil {
		t.Errorf("Modprobe(weird), an install command not followed: %v", err)
	}
	if err := c.ModprobeWith(ctx, "sctp", ProbeOptions{IgnoreInstall: true}); err != nil {
		t.Errorf("Modprobe -i sctp: %v", err)
	}
	if got := rec.Loaded(); !slices.Equal(got, []string{"weird", "sctp"}) {
		t.Errorf("loaded %q, want weird then sctp", got)
	}
}

// TestModprobeParamsAndFirstTime: parameters given to modprobe go to the
// module named, after modprobe.d's, not to its dependencies; --first-time
// fails for a module already in the kernel (loaded here, by someone else,
// or built in).
func TestModprobeParamsAndFirstTime(t *testing.T) {
	ctx := context.Background()
	rec := &Recorder{}
	c, sys, _ := failColdplug(t, rec)
	c.AddConfigParams(map[string]string{"wireguard": "a=b"})
	if err := c.ModprobeWith(ctx, "wireguard", ProbeOptions{Params: "foo=1 bar", FirstTime: true}); err != nil {
		t.Fatal(err)
	}
	if got := rec.Params["wireguard"]; got != "a=b foo=1 bar" {
		t.Errorf("wireguard's parameters %q, want modprobe.d's then the command line's", got)
	}
	if got := rec.Params["curve25519"]; got != "" {
		t.Errorf("the dependency got parameters %q", got)
	}
	writeTree(t, sys, map[string]string{"module/vfat/initstate": "live\n"})
	for _, name := range []string{"wireguard", "builtin_thing", "fs-vfat"} {
		err := c.ModprobeWith(ctx, name, ProbeOptions{FirstTime: true})
		if err == nil || !strings.Contains(err.Error(), "already in the kernel") {
			t.Errorf("Modprobe --first-time %s = %v, want already in the kernel", name, err)
		}
	}
	if got := rec.Loaded(); slices.Contains(got, "vfat") {
		t.Errorf("--first-time loaded vfat: %q", got)
	}
}

// TestSeenIsBounded: a flood of distinct modaliases does not grow the
// coldplug's memory of them without end; it is said once.
func TestSeenIsBounded(t *testing.T) {
	rec := &Recorder{}
	c, _, log := failColdplug(t, rec)
	var flood []string
	for i := range maxSeen + 1000 {
		flood = append(flood, "flood:"+strconv.Itoa(i))
	}
	var wg sync.WaitGroup
	c.startForDevices(context.Background(), flood, &wg, true)
	c.startForDevices(context.Background(), []string{e1000eModalias}, &wg, true)
	wg.Wait()
	c.mu.Lock()
	n := len(c.seen)
	c.mu.Unlock()
	if n > maxSeen {
		t.Errorf("%d modaliases remembered, want at most %d", n, maxSeen)
	}
	if got := strings.Count(log.String(), "too many distinct device modaliases"); got != 1 {
		t.Errorf("the flood said %d times, want once:\n%.2000s", got, log)
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// TestDeviceAddedAgainRetriesADriverWhoseDependencyFailed: as above, with the
// driver (nouveau) stopped by its dependency (drm) failing: the device added
// again gets both tried again.
func TestDeviceAddedAgainRetriesADriverWhoseDependencyFailed(t *testing.T) {
	ctx := context.Background()
	const nvidia = "pci:v000010DEd00001EB8sv000010DEsd000012A2bc03sc02i00"
	rec := &Recorder{Fail: map[string]error{"drm": unix.EIO}}
	c, sys, _ := failColdplug(t, rec)
	fakeSys(t, sys, map[string]string{"pci/0000:00:03.0": nvidia})
	if _, err := c.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.Fail = nil
	rec.mu.Unlock()
	var wg sync.WaitGroup
	c.startForDevices(ctx, []string{nvidia}, &wg, true)
	wg.Wait()
	if got := rec.Loaded(); !slices.Contains(got, "drm") || !slices.Contains(got, "nouveau") {
		t.Errorf("the device added again did not get drm and nouveau: %q", got)
	}
}
