package qa

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuestInitramfs: the image's initramfs comes first, byte for byte;
// the archive holding /init starts on a 4-byte boundary after it (the
// kernel looks for a header only there), with zeros between.
func TestGuestInitramfs(t *testing.T) {
	dir := t.TempDir()
	image, bin := filepath.Join(dir, "image.img"), filepath.Join(dir, "guest.test")
	base := []byte("0707010000000\x28\xb5\x2f\xfd") // any length: a compressed archive ends anywhere
	if err := os.WriteFile(image, base, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("\x7fELF test binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := GuestInitramfs(image, bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, base) {
		t.Fatalf("the image's initramfs is not first, unchanged")
	}
	at := (len(base) + 3) / 4 * 4
	if !bytes.Equal(got[len(base):at], make([]byte, at-len(base))) || !bytes.HasPrefix(got[at:], []byte("070701")) {
		t.Fatalf("the archive does not start at offset %d after zeros: % x", at, got[len(base):at+6])
	}
	var want bytes.Buffer
	if err := WriteCPIO(&want, []CPIOEntry{{Name: "init", Mode: CPIOFile | 0o755, Data: []byte("\x7fELF test binary")}}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[at:], want.Bytes()) {
		t.Errorf("the second archive is not /init alone, 0755")
	}
	if _, err := GuestInitramfs(filepath.Join(dir, "missing.img"), bin, dir); err == nil || !strings.Contains(err.Error(), "make image") {
		t.Errorf("a missing initramfs: %v, want the command that builds it", err)
	}
}

func TestGuestAppend(t *testing.T) {
	s, err := GuestAppend([]string{"52:54:00:47:00:01", "52:54:00:47:00:02"}, "^TestGuestBond", 90*time.Second, 2.5)
	if err != nil {
		t.Fatal(err)
	}
	want := GuestAppendBase + " etoile_guest.macs=52:54:00:47:00:01,52:54:00:47:00:02 etoile_guest.timeout=1m30s etoile_guest.scale=2.5 etoile_guest.run=^TestGuestBond"
	if s != want {
		t.Errorf("GuestAppend = %q, want %q", s, want)
	}
	if s, _ := GuestAppend([]string{"52:54:00:47:00:01"}, "", time.Minute, 1); strings.Contains(s, "etoile_guest.run") {
		t.Errorf("no tests named, yet %q", s)
	}
	if _, err := GuestAppend(nil, "TestA TestB", time.Minute, 1); err == nil || !strings.Contains(err.Error(), EnvGuestRun) {
		t.Errorf("a run pattern with a space: %v, want an error naming %s", err, EnvGuestRun)
	}
}

// TestParseGuestRun reads -test.v output as the console shows it: the
// agent's log lines between the tests', subtests, a verdict.
func TestParseGuestRun(t *testing.T) {
	console := `etoile-guest: modules loaded kernel=6.1.0 modules=bonding
=== RUN   TestGuestA
time=2026-01-01T00:00:00Z level=INFO msg="bond member added" iface=eth0
    guest_linux_test.go:10: Apply: err=<nil>
--- PASS: TestGuestA (0.95s)
=== RUN   TestGuestB
=== RUN   TestGuestB/member1
    guest_linux_test.go:20: the entry names eth0
        a second line of the message
=== RUN   TestGuestB/member2
    guest_linux_test.go:21: error does not name eth1
--- FAIL: TestGuestB (1.75s)
    --- PASS: TestGuestB/member1 (0.90s)
    --- FAIL: TestGuestB/member2 (0.84s)
=== RUN   TestGuestC
--- SKIP: TestGuestC (0.00s)
FAIL
etoile-guest: the tests failed: exit status 1
etoile-guest: FAIL
[    9.894963] reboot: Power down`
	r := ParseGuestRun(strings.Split(console, "\n"))
	if !r.Done || r.Passed || r.Panic != "" {
		t.Errorf("Done=%t Passed=%t Panic=%q", r.Done, r.Passed, r.Panic)
	}
	if len(r.Tests) != 3 {
		t.Fatalf("tests %+v", r.Tests)
	}
	for i, want := range []struct{ name, result string }{{"TestGuestA", "PASS"}, {"TestGuestB", "FAIL"}, {"TestGuestC", "SKIP"}} {
		if r.Tests[i].Name != want.name || r.Tests[i].Result != want.result {
			t.Errorf("test %d: %s %s, want %s %s", i, r.Tests[i].Name, r.Tests[i].Result, want.name, want.result)
		}
	}
	if got := strings.Join(r.Tests[1].Output, "\n"); !strings.Contains(got, "a second line of the message") ||
		!strings.Contains(got, "error does not name eth1") || strings.Contains(got, "level=INFO") {
		t.Errorf("TestGuestB's output:\n%s", got)
	}
	if got := strings.Join(r.Tests[0].Output, "\n"); strings.Contains(got, "level=INFO") || !strings.Contains(got, "Apply: err=<nil>") {
		t.Errorf("TestGuestA's output (its own lines, not the agent's log):\n%s", got)
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "TestGuestB") || strings.Contains(err.Error(), "TestGuestA") {
		t.Errorf("Err() = %v, want TestGuestB named, alone", err)
	}

	// A test that panicked: it never ended; the verdict still came.
	r = ParseGuestRun([]string{"=== RUN   TestGuestA", "panic: test timed out after 2m0s", "goroutine 1 [running]:", "etoile-guest: FAIL"})
	if r.Panic != "panic: test timed out after 2m0s" || len(r.Failed()) != 1 {
		t.Errorf("Panic=%q Failed=%v", r.Panic, r.Failed())
	}
	// The guest failed before any test: its own lines say why.
	r = ParseGuestRun([]string{"etoile-guest: setup failed: loading bonding: module bonding not found", "etoile-guest: FAIL"})
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "module bonding not found") {
		t.Errorf("Err() = %v, want the setup's failure", err)
	}
	// No verdict (the VM hung, or QEMU died): never a pass.
	if err := ParseGuestRun([]string{"=== RUN   TestGuestA", "--- PASS: TestGuestA (1.00s)"}).Err(); err == nil {
		t.Error("a run without a verdict reads as passed")
	}
	// A pass that ran nothing (a run pattern that matches no test).
	if err := ParseGuestRun([]string{"testing: warning: no tests to run", "PASS", "etoile-guest: PASS"}).Err(); err == nil {
		t.Error("a run without a test reads as passed")
	}
	if err := ParseGuestRun([]string{"=== RUN   TestGuestA", "--- PASS: TestGuestA (1.00s)", "PASS", "etoile-guest: PASS"}).Err(); err != nil {
		t.Errorf("a passing run: %v", err)
	}
}
