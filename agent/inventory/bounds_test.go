package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// collectWithin is Collect that fails the test when it does not return within wait (a read
// that blocks for ever: the test must not hang with it).
func collectWithin(t *testing.T, ctx context.Context, opts Options, wait time.Duration) (*Inventory, error) {
	t.Helper()
	type result struct {
		inv *Inventory
		err error
	}
	done := make(chan result, 1)
	go func() {
		inv, err := Collect(ctx, opts)
		done <- result{inv, err}
	}()
	select {
	case r := <-done:
		return r.inv, r.err
	case <-time.After(wait):
		t.Fatalf("Collect did not return within %s", wait)
		return nil, nil
	}
}

func hasWarning(inv *Inventory, parts ...string) bool {
	return slices.ContainsFunc(inv.Warnings, func(w string) bool {
		for _, p := range parts {
			if !strings.Contains(w, p) {
				return false
			}
		}
		return true
	})
}

// mkfifo makes a FIFO at p, and, at the test's end, opens it for writing so that a reader
// still blocked in its open (the code before this test) is let go.
func mkfifo(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	t.Cleanup(func() {
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
}

// TestFIFOInACopiedTreeDoesNotBlock: t1's shape. A FIFO where an attribute (a PCI device's
// vendor), a DMI string, the kernel command line or the NVIDIA driver's information file
// belongs would block a plain open for ever; each is skipped with a warning naming it, and
// the rest of the inventory is read.
func TestFIFOInACopiedTreeDoesNotBlock(t *testing.T) {
	root := writeServerTree(t)
	const dev = "sys/bus/pci/devices/0000:00:01.0"
	fakeroot.Write(t, root, map[string]string{dev + "/class": "0x020000", dev + "/device": "0x1521"})
	for _, p := range []string{dev + "/vendor", "sys/class/dmi/id/board_name", "proc/cmdline",
		"proc/driver/nvidia/gpus/0000:65:00.0/information", "sys/class/block/sdz"} {
		if err := os.Remove(filepath.Join(root, p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		mkfifo(t, filepath.Join(root, p))
	}
	inv, err := collectWithin(t, context.Background(), Options{Root: root,
		Run: func(context.Context, string, ...string) ([]byte, error) { return []byte(smiTwoA100), nil }}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dev + "/vendor", "sys/class/dmi/id/board_name", "proc/cmdline", "proc/driver/nvidia/gpus/0000:65:00.0/information"} {
		if !hasWarning(inv, filepath.Join(root, p)+" is not a regular file (a named pipe (FIFO)): skipped") {
			t.Errorf("no warning names the FIFO %s: %q", p, inv.Warnings)
		}
	}
	i := slices.IndexFunc(inv.PCIDevices, func(d PCIDevice) bool { return d.Address == "0000:00:01.0" })
	if i < 0 || inv.PCIDevices[i].VendorID != "" || inv.PCIDevices[i].DeviceID != "1521" {
		t.Errorf("the device whose vendor is a FIFO: %+v, want it listed, its vendor unknown", inv.PCIDevices)
	}
	if len(inv.GPUs) != 2 || len(inv.Disks) != 5 || len(inv.NICs) != 2 {
		t.Errorf("%d GPUs, %d disks, %d NICs: want the rest read (2, 5, 2)", len(inv.GPUs), len(inv.Disks), len(inv.NICs))
	}
	if !hasWarning(inv, filepath.Join(root, "sys/class/block/sdz")+" is a named pipe (FIFO)", "skipped") {
		t.Errorf("no warning names sys/class/block/sdz: %q", inv.Warnings)
	}
	if l := lineOf(table(t, inv), "0000:00:01.0 "); !strings.Contains(l, "unknown") {
		t.Errorf("the table's row of the device = %q, want its vendor unknown", l)
	}
}

// TestCollectEndsWithItsContext: a context that has ended gets no inventory, and an error
// saying so (the command's Ctrl-C, the agent's shutdown).
func TestCollectEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	inv, err := Collect(ctx, Options{Root: writeServerTree(t)})
	if !errors.Is(err, context.Canceled) || inv != nil {
		t.Errorf("Collect after its context ended = %v, %v; want no inventory and context.Canceled", inv, err)
	}
}

// TestMalformedAndHugeFiles: t2's shapes. A PCI id file that holds no 16-bit id (a file
// of 7s over 64 KiB, a 28-bit number, words) is a warning and an unknown id, never
// ffffffffffffffff; a /sys/class/block entry whose link cannot be followed (a loop) is
// skipped with a warning, not a disk of 0 bytes.
func TestMalformedAndHugeFiles(t *testing.T) {
	const pci = "sys/bus/pci/devices/"
	root := tree(t, map[string]string{
		pci + "0000:00:01.0/class": "0x030000", pci + "0000:00:01.0/vendor": "0x10de",
		pci + "0000:00:01.0/device": strings.Repeat("7", 100<<10),
		pci + "0000:00:02.0/class":  "0x020000", pci + "0000:00:02.0/vendor": "0x1234567", pci + "0000:00:02.0/device": "0x1521",
		pci + "0000:00:03.0/class": "0x020000", pci + "0000:00:03.0/vendor": "Intel", pci + "0000:00:03.0/device": "0x1521",
		pci + "0000:00:03.0/subsystem_vendor": "0x8086", pci + "0000:00:03.0/subsystem_device": "0x0001",
	}, map[string]string{"sys/class/block/a": "b", "sys/class/block/b": "a"})
	inv := collect(t, root)
	ids := map[string][2]string{}
	for _, d := range inv.PCIDevices {
		ids[d.Address] = [2]string{d.VendorID, d.DeviceID}
	}
	want := map[string][2]string{"0000:00:01.0": {"10de", ""}, "0000:00:02.0": {"", "1521"}, "0000:00:03.0": {"", "1521"}}
	if len(ids) != 3 || ids["0000:00:01.0"] != want["0000:00:01.0"] || ids["0000:00:02.0"] != want["0000:00:02.0"] ||
		ids["0000:00:03.0"] != want["0000:00:03.0"] {
		t.Errorf("ids = %v, want %v", ids, want)
	}
	if !hasWarning(inv, filepath.Join(root, pci+"0000:00:01.0/device"), "larger than 64 KiB") ||
		!hasWarning(inv, filepath.Join(root, pci+"0000:00:02.0/vendor"), `"0x1234567", not a 16-bit PCI id`) ||
		!hasWarning(inv, filepath.Join(root, pci+"0000:00:03.0/vendor"), `"Intel", not a 16-bit PCI id`) {
		t.Errorf("warnings = %q, want each bad id file named", inv.Warnings)
	}
	if len(inv.GPUs) != 1 || inv.GPUs[0].Model != "10de:unknown" || inv.GPUs[0].DeviceID != "" {
		t.Errorf("GPUs = %+v, want the NVIDIA one, its device unknown", inv.GPUs)
	}
	if len(inv.Disks) != 0 {
		t.Errorf("disks = %+v, want none (a link loop is no disk)", inv.Disks)
	}
	for _, name := range []string{"a", "b"} {
		if !hasWarning(inv, filepath.Join(root, "sys/class/block", name)+" cannot be followed", "skipped") {
			t.Errorf("no warning names sys/class/block/%s: %q", name, inv.Warnings)
		}
	}
	b, err := json.Marshal(inv.PCIDevices)
	if err != nil || strings.Contains(string(b), "ffff") {
		t.Errorf("PCI devices = %s, %v", b, err)
	}
}

// TestSectionsNotCaptured: a copied tree without sys/class/net, or with neither
// sys/class/block nor lsblk.json (the H100 host's capture has no NICs), says that those
// sections were not captured, rather than list no NIC or disk without a word.
func TestSectionsNotCaptured(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{"proc/cpuinfo": "processor\t: 0\n", "proc/meminfo": "MemTotal: 1000 kB\n"})
	inv := collect(t, root)
	if !hasWarning(inv, "nics: not captured", "sys/class/net") || !hasWarning(inv, "disks: not captured", "sys/class/block", "lsblk.json") {
		t.Errorf("warnings = %q, want the NICs and disks not captured", inv.Warnings)
	}
	fakeroot.Write(t, root, map[string]string{"lsblk.json": `{"blockdevices": [{"name": "vda", "size": 512, "type": "disk"}]}`})
	if err := os.MkdirAll(filepath.Join(root, "sys/class/net"), 0o755); err != nil {
		t.Fatal(err)
	}
	inv = collect(t, root)
	if hasWarning(inv, "not captured") || len(inv.Disks) != 1 {
		t.Errorf("with lsblk.json and sys/class/net: disks %+v, warnings %q; want vda and no word of a section", inv.Disks, inv.Warnings)
	}
}

// TestPanicInASectionIsKept: a panic while the inventory is collected (here
// in the run of nvidia-smi, a stand-in for a parser meeting what it did not
// expect) does not end the process, which is PID 1 on a node: Collect
// returns what was read before, with a warning.
func TestPanicInASectionIsKept(t *testing.T) {
	root := writeServerTree(t)
	inv, err := collectWithin(t, context.Background(), Options{Root: root,
		Run: func(context.Context, string, ...string) ([]byte, error) { panic("stand-in parser bug") }}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(inv, "the inventory stopped early: internal error (panic: stand-in parser bug)") {
		t.Errorf("no warning tells the panic: %q", inv.Warnings)
	}
	if len(inv.Disks) == 0 || len(inv.NICs) == 0 {
		t.Errorf("%d disks, %d NICs: want the sections before the GPUs kept", len(inv.Disks), len(inv.NICs))
	}
}
