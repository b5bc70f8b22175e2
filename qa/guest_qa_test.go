//go:build qa

package qa

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// guestMACs are the guest's NICs, in the order its tests use them.
var guestMACs = []string{"52:54:00:47:00:01", "52:54:00:47:00:02", "52:54:00:47:00:03"}

// TestGuestNetwork runs agent/network's guest tests (build tag guest:
// agent/network/guest_linux_test.go) as /init of a VM booting the image's
// kernel and initramfs: bonds made, changed and applied again by the
// package's real Apply, against the image's bonding driver, on virtio NICs
// (permanent MACs) each cabled to a wire of its own whose DHCP server gives
// 10.77.0.50/24 (lateDHCPWire). The machine running the tests has no
// bonding driver, so this is where that code runs. Each guest test is a
// subtest here, failed with its own lines; the whole console is in the log
// above them.
func TestGuestNetwork(t *testing.T) {
	t.Parallel()
	out := Artifacts(t, KernelName, InitramfsName)
	dir := t.TempDir()
	bin, err := BuildGuestTest("./agent/network", dir)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := GuestInitramfs(filepath.Join(out, InitramfsName), bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	scale, err := TimeoutScale()
	if err != nil {
		t.Fatal(err)
	}
	// The guest's own limit, under the wait for its verdict below: a test
	// that hangs panics there with every goroutine's stack, and the verdict
	// still comes.
	appendLine, err := GuestAppend(guestMACs, os.Getenv(EnvGuestRun), Scale(t, 2*time.Minute), scale)
	if err != nil {
		t.Fatal(err)
	}
	devs := []Device{SeaBIOS{}, DirectKernel{Kernel: filepath.Join(out, KernelName), Initrd: initrd, Append: appendLine}}
	for i, mac := range guestMACs {
		w := newLateDHCPWire(t)
		w.answer.Store(true)
		devs = append(devs, SilentNIC{Sink: w.port(), MAC: mac, ID: fmt.Sprintf("guest%d", i)})
	}
	vm := Start(t, Config{Devices: devs})
	// Only a kernel panic ends the wait early: the guest's lines are its
	// tests', whatever they say.
	done, err := vm.expect(GuestDoneRE, 3*time.Minute, []*regexp.Regexp{regexp.MustCompile(`Kernel panic - not syncing`)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest verdict %q %.1fs after QEMU started", done.Line, done.At.Seconds())
	var lines []string
	for _, l := range vm.Lines() {
		lines = append(lines, l.Text)
	}
	run := ParseGuestRun(lines)
	for _, gt := range run.Tests {
		t.Run(gt.Name, func(t *testing.T) {
			switch gt.Result {
			case "PASS":
			case "SKIP":
				// The guest has every module and device its tests need:
				// a skip there hides a missing piece, as a missing tool would.
				t.Errorf("skipped in the guest (under make test a test does not skip):\n%s", strings.Join(gt.Output, "\n"))
			case "FAIL":
				t.Errorf("failed in the guest:\n%s", strings.Join(gt.Output, "\n"))
			default:
				t.Errorf("never ended in the guest (a panic, or the guest's time limit):\n%s", strings.Join(gt.Output, "\n"))
			}
		})
	}
	if err := run.Err(); err != nil {
		t.Error(err)
	}
	// The guest powers off after its verdict; the cleanup stops QEMU anyway.
	if err := vm.WaitExit(10 * time.Second); err != nil {
		t.Logf("the guest did not power off by itself: %v", err)
	}
}
