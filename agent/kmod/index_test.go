package kmod

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/internal/syncbuf"
)

// indexColdplug writes files into a modules folder (with an empty file for
// each module modules.dep names) and an empty sysfs, and reads them.
func indexColdplug(t *testing.T, loader Loader, files map[string]string) (*Coldplug, string, string, *syncbuf.Buffer) {
	t.Helper()
	sys, mods := testDirs(t)
	all := map[string]string{}
	for name, data := range files {
		all[name] = data
	}
	for _, line := range strings.Split(files["modules.dep"], "\n") {
		if p, _, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(p, ".ko") {
			all[p] = ""
		}
	}
	writeTree(t, mods, all)
	if err := os.MkdirAll(filepath.Join(sys, "bus"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log syncbuf.Buffer
	c, err := NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("NewColdplug: %v", err)
	}
	return c, sys, mods, &log
}

// TestIndexSkipsBadLines: a malformed line in modules.alias, modules.dep,
// modules.softdep or modules.builtin (a damaged file, a line far longer
// than any real one) is skipped, as modprobe does, instead of rejecting
// the whole index, which left every device without its driver. Each file
// with bad lines is named once, with the first bad line and its number.
func TestIndexSkipsBadLines(t *testing.T) {
	long := strings.Repeat("x", 2<<20) // past any scanner's line limit
	rec := &Recorder{}
	c, _, mods, log := indexColdplug(t, rec, map[string]string{
		"modules.dep":     "kernel/a.ko:\ngarbage without colon\nkernel/b.ko: kernel/a.ko\n" + long + "\n",
		"modules.alias":   "# Aliases extracted from modules themselves.\nalias fs-b b\nalias broken\nalias pci:v00001234d* a\n" + long + "\nalias also bad here\n",
		"modules.softdep": "# Soft dependencies\n" + long + "\nsoftdep b pre: c\nsoftdep\n",
		"modules.builtin": "kernel/fs/ext4.ko\nkernel/x.ko kernel/y.ko\n",
	})
	if err := c.Modprobe(context.Background(), "fs-b"); err != nil {
		t.Fatalf("Modprobe(fs-b) with bad lines around: %v", err)
	}
	if got := rec.Loaded(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("loaded %q, want a then b", got)
	}
	if got := c.Resolve("pci:v00001234d00005678"); !slices.Equal(got, []string{"a"}) {
		t.Errorf("an alias after a bad line: Resolve = %q, want a", got)
	}
	if pre, _ := c.deps.Load().Softdeps("b"); !slices.Equal(pre, []string{"c"}) {
		t.Errorf("softdep after a bad line: %q, want c", pre)
	}
	if !c.deps.Load().Builtin("ext4") {
		t.Errorf("modules.builtin: ext4 not built in after a bad line")
	}
	out := log.String()
	for _, want := range []string{
		"file=" + filepath.Join(mods, "modules.alias") + ` line=3 first="alias broken" skipped=3`,
		"file=" + filepath.Join(mods, "modules.dep") + ` line=2 first="garbage without colon" skipped=2`,
		"file=" + filepath.Join(mods, "modules.softdep") + " line=2 first=xxxx",
		"file=" + filepath.Join(mods, "modules.builtin") + ` line=2 first="kernel/x.ko kernel/y.ko" skipped=1`,
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("want one warning with %q, log:\n%.3000s", want, out)
		}
	}
	if n := strings.Count(out, "lines that could not be read were skipped"); n != 4 {
		t.Errorf("%d warnings about skipped lines, want one per file (4)", n)
	}
	if strings.Contains(out, long[:200]) {
		t.Errorf("the warning holds the whole bad line, want it shortened")
	}

	// Nothing readable at all in modules.alias: not an index.
	sys, mods2 := testDirs(t)
	writeTree(t, mods2, map[string]string{"modules.dep": "kernel/a.ko:\n", "modules.alias": "\x7fELF\x00\x00\ngarbage\n"})
	_, err := NewColdplug(sys, mods2, rec, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "modules.alias line 1") || !strings.Contains(err.Error(), "rebuild the image") {
		t.Errorf("NewColdplug with a modules.alias of garbage: %v, want an error naming its first line", err)
	}
}

// TestBuiltinAliasIsSatisfied: an alias that only a module built into the
// kernel has (modules.builtin.alias) is satisfied: modprobe fs-ext4 with
// ext4 built in succeeds and loads nothing, as with kmod, instead of
// failing with "not found". A loadable module's alias still comes first.
func TestBuiltinAliasIsSatisfied(t *testing.T) {
	rec := &Recorder{}
	c, _, _, log := indexColdplug(t, rec, map[string]string{
		"modules.dep":           "kernel/crypto/crc32c-intel.ko:\n",
		"modules.alias":         "alias crypto-crc32c crc32c_intel\n",
		"modules.builtin":       "kernel/fs/ext4/ext4.ko\n",
		"modules.builtin.alias": "alias fs-ext4 ext4\nalias crypto-crc32c crc32c_generic\nalias fs-vfat vfat\n",
	})
	ctx := context.Background()
	if err := c.Modprobe(ctx, "fs-ext4"); err != nil {
		t.Errorf("Modprobe(fs-ext4), ext4 built in: %v", err)
	}
	// vfat is in modules.builtin.alias only: built in all the same.
	if err := c.Modprobe(ctx, "fs-vfat"); err != nil {
		t.Errorf("Modprobe(fs-vfat), vfat in modules.builtin.alias only: %v", err)
	}
	if got := c.Resolve("fs-ext4"); !slices.Equal(got, []string{"ext4"}) {
		t.Errorf("Resolve(fs-ext4) = %q, want ext4", got)
	}
	if got := c.Resolve("crypto-crc32c"); !slices.Equal(got, []string{"crc32c_intel"}) {
		t.Errorf("Resolve(crypto-crc32c) = %q, want the loadable module (modules.alias first)", got)
	}
	c.LoadFixed(ctx, []string{"fs-ext4"})
	if got := rec.Loaded(); len(got) != 0 {
		t.Errorf("loaded %q for built-in modules, want nothing", got)
	}
	if strings.Contains(log.String(), "not in image") {
		t.Errorf("a built-in module's alias warned about:\n%s", log)
	}
	var nf *NotFoundError
	if err := c.Modprobe(ctx, "fs-nothing"); !errors.As(err, &nf) {
		t.Errorf("Modprobe of an unknown alias: %v, want NotFoundError", err)
	}
}

// TestColdplugReadsDMIModalias: the firmware's DMI modalias
// (/sys/class/dmi/id/modalias), which is on no bus, gets its drivers
// (hardware monitoring, IPMI, a board's platform drivers) as udev would.
func TestColdplugReadsDMIModalias(t *testing.T) {
	rec := &Recorder{}
	c, sys, _, _ := indexColdplug(t, rec, map[string]string{
		"modules.dep":   "kernel/hwmon/dell-smm-hwmon.ko:\nkernel/hwmon/applesmc.ko:\n",
		"modules.alias": "alias dmi*:svn*DellInc.*:pn*PowerEdge*: dell_smm_hwmon\nalias dmi*:pn*MacBook*:rvn*Apple*: applesmc\n",
	})
	writeTree(t, sys, map[string]string{
		"class/dmi/id/modalias": "dmi:bvnDellInc.:bvr2.1.5:bd01/01/2024:svnDellInc.:pnPowerEdgeR650:pvr:rvnDellInc.:rn0XYZ:rvrA01:cvnDellInc.:ct23:cvr:\n",
	})
	if err := c.Settle(context.Background(), 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := rec.Loaded(); !slices.Equal(got, []string{"dell_smm_hwmon"}) {
		t.Errorf("loaded %q, want dell_smm_hwmon for the DMI modalias", got)
	}
}

// TestStuckLoadReleasesItsSlot: a module whose init does not return (a
// driver stuck probing broken hardware) is named in a warning once
// StuckAfter has passed, and frees its slot: the other loads, of its class
// and of lower ones, go on (they queued behind it for ever before). What
// depends on it still waits for it, and loads once it returns.
func TestStuckLoadReleasesItsSlot(t *testing.T) {
	for _, how := range []string{"modprobe", "fixed"} {
		t.Run(how, func(t *testing.T) {
			loader := newGateLoader("hung")
			c, _, _, log := indexColdplug(t, loader, map[string]string{
				"modules.dep":   "kernel/hung.ko:\nkernel/other.ko:\nkernel/needs_hung.ko: kernel/hung.ko\n",
				"modules.alias": "alias pci:v00001234d* hung\n",
			})
			c.Parallel = 1
			c.StuckAfter = 10 * time.Millisecond
			ctx := context.Background()
			first := make(chan error, 1)
			go func() {
				if how == "modprobe" {
					first <- c.Modprobe(ctx, "hung") // a class that every other waits for
				} else {
					c.LoadFixed(ctx, []string{"hung"}) // the same class as the others
					first <- nil
				}
			}()
			loader.begun(t, "hung")
			rest := make(chan struct{})
			go func() {
				defer close(rest)
				c.LoadFixed(ctx, []string{"needs_hung", "other"})
			}()
			loader.loaded(t, "other")
			for deadline := time.Now().Add(30 * time.Second); !strings.Contains(log.String(), "still loading after 10ms"); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no warning about the stuck module:\n%s", log)
				}
			}
			if out := log.String(); !strings.Contains(out, `level=WARN msg="module still loading after 10ms: its probe may be stuck; read dmesg" module=hung`) {
				t.Errorf("the warning does not name the stuck module:\n%s", out)
			}
			if got := loader.Loaded(); slices.Contains(got, "needs_hung") {
				t.Fatalf("needs_hung loaded before hung returned: %q", got)
			}
			loader.open("hung")
			if err := <-first; err != nil {
				t.Errorf("the stuck load, once returned: %v", err)
			}
			<-rest
			got := loader.Loaded()
			if i, j := slices.Index(got, "hung"), slices.Index(got, "needs_hung"); i < 0 || j < i {
				t.Errorf("loaded %q, want needs_hung after hung", got)
			}
			if !strings.Contains(log.String(), `msg="module load reported stuck has returned" module=hung`) {
				t.Errorf("the stuck module's return is not logged:\n%s", log)
			}
			// Its bookkeeping is undone once, not twice.
			c.mu.Lock()
			defer c.mu.Unlock()
			for p := range numPrio {
				if c.inFlight[p] != 0 || len(c.sem[p]) != 0 {
					t.Errorf("priority %d: %d loads in flight, %d slots held, want none", p, c.inFlight[p], len(c.sem[p]))
				}
			}
			if n := c.pending.Load(); n != 0 {
				t.Errorf("%d loads pending, want none", n)
			}
		})
	}
}

// TestSettleNamesLoadsStillInProgress: when Settle stops waiting, it says
// which modules are still loading (a stuck driver among them).
func TestSettleNamesLoadsStillInProgress(t *testing.T) {
	loader := newGateLoader("hung")
	c, _, _, log := indexColdplug(t, loader, map[string]string{"modules.dep": "kernel/hung.ko:\n", "modules.alias": "alias x hung\n"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.LoadFixed(context.Background(), []string{"hung"})
	}()
	loader.begun(t, "hung")
	if err := c.Settle(context.Background(), 0, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if out := log.String(); !strings.Contains(out, `msg="drivers still loading; the boot goes on without waiting for them"`) || !strings.Contains(out, "modules=hung") {
		t.Errorf("Settle gave up without naming the load in progress:\n%s", out)
	}
	loader.open("hung")
	<-done
}
