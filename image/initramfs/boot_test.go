package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/image/kernel"
)

// timeoutScale follows the QA harness's ETOILE_QA_TIMEOUT_SCALE.
func timeoutScale() float64 {
	if f, err := strconv.ParseFloat(os.Getenv("ETOILE_QA_TIMEOUT_SCALE"), 64); err == nil && f > 0 {
		return f
	}
	return 1
}

// TestBootRealKernel boots Debian's kernel in QEMU (TCG) with an initramfs
// from Write whose /init loads every selected module, dependencies first,
// from the regenerated modules.dep. It proves that the kernel unpacks the
// archive, that /dev/console works before devtmpfs, and that every module
// and dependency list fits the kernel: a module may only fail with ENODEV
// (no such hardware or CPU feature), never with a missing symbol.
func TestBootRealKernel(t *testing.T) {
	qemu := tool(t, "qemu-system-x86_64", "qemu-system-x86")
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Fatalf("apt-get not found: this test needs the Debian package \"apt\" with a configured sources list")
	}
	dir := t.TempDir()
	initBin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-o", initBin, "./testdata/bootinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test init: %v\n%s", err, out)
	}
	k, mods := realKernel(t)
	agent, err := os.ReadFile(initBin)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "initramfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(f, Options{Init: agent, KernelVersion: k.Version, Modules: mods, Epoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	timeout := time.Duration(float64(240*time.Second) * timeoutScale())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{"-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1",
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot", "-net", "none",
		"-kernel", k.Vmlinuz, "-initrd", img, "-append", "console=ttyS0 panic=-1 loglevel=3"}
	cmd := exec.CommandContext(ctx, qemu, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	console := out.String()
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf(format, a...)
		t.Logf("QEMU command: %s %s", qemu, strings.Join(args, " "))
		t.Logf("console:\n%s", console)
	}
	if err != nil {
		fail("QEMU: %v (after %s)", err, time.Since(start).Round(time.Second))
		return
	}
	t.Logf("QEMU ran %s", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(console, "bootinit: started as pid 1") {
		fail("the test init did not start as PID 1")
		return
	}
	re := regexp.MustCompile(`bootinit: module (\S+) (loaded|error \S+)`)
	results := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(console, -1) {
		results[m[1]] = m[2]
	}
	var enodev, unmet []string
	// A module whose dependency found no hardware (hv_netvsc, on hv_vmbus,
	// outside Hyper-V) fails to link: ENOENT, "unknown symbol".
	depNoDevice := func(m kernel.Module) bool {
		for _, d := range m.Deps {
			if results[d+ModuleSuffix] == "error ENODEV" {
				return true
			}
		}
		return false
	}
	for _, m := range mods {
		r, ok := results[m.RelPath+ModuleSuffix]
		switch {
		case !ok:
			fail("module %s was not tried", m.RelPath)
		case r == "loaded":
		case r == "error ENODEV":
			enodev = append(enodev, m.Name)
		case r == "error ENOENT" && depNoDevice(m):
			unmet = append(unmet, m.Name)
		default:
			fail("module %s: %s", m.Name, r)
		}
	}
	for _, must := range []string{"virtio_pci", "virtio_blk", "virtio_net", "squashfs", "overlay", "ext4", "isofs", "loop", "nf_tables", "br_netfilter"} {
		for _, m := range mods {
			if m.Name == must && results[m.RelPath+ModuleSuffix] != "loaded" {
				fail("module %s did not load: %s", must, results[m.RelPath+ModuleSuffix])
			}
		}
	}
	t.Logf("%d modules: %d loaded, failing only with ENODEV (no such hardware/CPU feature): %s; not linked because such a dependency did not load: %s",
		len(mods), len(mods)-len(enodev)-len(unmet), fmt.Sprint(enodev), fmt.Sprint(unmet))
}
