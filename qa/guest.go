package qa

// Guest tests: a package's tests built with the build tag guest, run as
// /init of a VM that boots the image's own kernel with its own initramfs,
// and so its modules. They reach what only that kernel has — the bonding
// driver, NICs with permanent MACs — with the package's real code, where
// the machine running the tests has neither (see
// agent/network/guest_linux_test.go for the guest's side).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// EnvGuestRun narrows the guest tests run (their -test.run), e.g.
// TestGuestBondOptionsChanged; default every TestGuest* test.
const EnvGuestRun = "ETOILE_QA_GUEST_RUN"

// GuestDoneRE matches the guest's last line: its PID 1's verdict.
var GuestDoneRE = regexp.MustCompile(`^etoile-guest: (PASS|FAIL)$`)

// GuestAppendBase is the guest's kernel command line before its
// etoile_guest.* arguments. quiet keeps the kernel's info lines (a bond's
// "Enslaving…") from breaking into the tests' lines; its warnings still
// show.
const GuestAppendBase = "console=ttyS0,115200 quiet cryptomgr.notests"

// BuildGuestTest builds the tests of pkg (such as ./agent/network) with the
// build tag guest as a static amd64 binary in dir, and returns its path.
func BuildGuestTest(pkg, dir string) (string, error) {
	bin := filepath.Join(dir, "guest.test")
	if err := goStatic("test", "-c", "-tags", "guest", "-ldflags", "-s -w", "-o", bin, pkg); err != nil {
		return "", err
	}
	return bin, nil
}

// goStatic runs the go tool with args in the repository's root, for a
// static linux/amd64 binary (the guest's /init, the floor's).
func goStatic(args ...string) error {
	goBin, err := GoTool.Path()
	if err != nil {
		return err
	}
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", ShellQuote(cmd.Args), err, out)
	}
	return nil
}

// GuestInitramfs writes dir/guest-initramfs.img: the image's initramfs
// (image, as the build wrote it) followed by an uncompressed archive that
// holds only bin as /init. The kernel unpacks the archives in turn, so the
// later /init replaces the agent, and the image's modules and their index
// (lib/modules/<release>) are there for it. The second archive starts on a
// 4-byte boundary, as the kernel wants: zeros before it are skipped.
func GuestInitramfs(image, bin, dir string) (string, error) {
	base, err := os.ReadFile(image)
	if err != nil {
		return "", fmt.Errorf("reading the image's initramfs: %w (run `make image`, or point %s at a build's output folder)", err, EnvOut)
	}
	initData, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	buf.Grow(len(base) + 4 + len(initData) + 512)
	buf.Write(base)
	buf.Write(make([]byte, (4-len(base)%4)%4))
	if err := WriteCPIO(&buf, []CPIOEntry{{Name: "init", Mode: CPIOFile | 0o755, Data: initData}}); err != nil {
		return "", fmt.Errorf("packing %s as /init: %w", bin, err)
	}
	out := filepath.Join(dir, "guest-initramfs.img")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return out, nil
}

// GuestAppend is the guest's kernel command line: the NICs' MACs (in the
// order its tests use them), the tests to run (every one when run is
// empty), the whole run's time limit, and the factor its own waits are
// scaled by.
func GuestAppend(macs []string, run string, timeout time.Duration, scale float64) (string, error) {
	if strings.ContainsAny(run, " \t\n\"") {
		return "", fmt.Errorf("%s=%q: the tests to run go on the kernel command line, which cannot hold spaces or quotes: use a regular expression without them, such as TestGuestBond.*Dropped", EnvGuestRun, run)
	}
	s := fmt.Sprintf("%s etoile_guest.macs=%s etoile_guest.timeout=%s etoile_guest.scale=%s",
		GuestAppendBase, strings.Join(macs, ","), timeout, strconv.FormatFloat(scale, 'g', -1, 64))
	if run != "" {
		s += " etoile_guest.run=" + run
	}
	return s, nil
}

// GuestTest is one test of a guest run, as its -test.v output tells it.
type GuestTest struct {
	Name   string
	Result string // PASS, FAIL or SKIP; "" if it never ended (a panic, the time limit)
	// Output holds the test's own lines: its log and errors (and its
	// subtests'), without the agent's log lines or the console's others.
	Output []string
}

// GuestRun is what a guest run's console said.
type GuestRun struct {
	Done   bool        // the verdict line came
	Passed bool        // it said PASS
	Tests  []GuestTest // top-level tests, in the order they started
	Panic  string      // the first line of a Go panic or fatal error, if any
	// Why are the guest's own lines (etoile-guest: …) before the verdict:
	// what went wrong when no test did.
	Why []string
}

var (
	guestRunRE   = regexp.MustCompile(`^=== RUN\s+(\S+)$`)
	guestEndRE   = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(`)
	guestPanicRE = regexp.MustCompile(`^(panic: |fatal error: )`)
	guestOwnRE   = regexp.MustCompile(`^etoile-guest: `)
)

// ParseGuestRun reads a guest run's console lines, up to its verdict.
func ParseGuestRun(lines []string) GuestRun {
	var r GuestRun
	at := map[string]int{} // top-level test → index in r.Tests
	current := ""          // the top-level test running
	for _, l := range lines {
		if m := GuestDoneRE.FindStringSubmatch(l); m != nil {
			r.Done, r.Passed = true, m[1] == "PASS"
			break
		}
		if r.Panic == "" && guestPanicRE.MatchString(l) {
			r.Panic = l
		}
		if guestOwnRE.MatchString(l) {
			r.Why = append(r.Why, l)
		}
		if m := guestRunRE.FindStringSubmatch(l); m != nil {
			top, _, _ := strings.Cut(m[1], "/")
			if _, ok := at[top]; !ok {
				at[top] = len(r.Tests)
				r.Tests = append(r.Tests, GuestTest{Name: top})
			}
			current = top
			continue
		}
		if m := guestEndRE.FindStringSubmatch(l); m != nil {
			if i, ok := at[m[2]]; ok { // a top-level test's end
				r.Tests[i].Result = m[1]
				current = ""
				continue
			}
		}
		if i, ok := at[current]; ok && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			r.Tests[i].Output = append(r.Tests[i].Output, l)
		}
	}
	return r
}

// Failed lists the tests that failed or never ended.
func (r GuestRun) Failed() []string {
	var out []string
	for _, t := range r.Tests {
		if t.Result != "PASS" && t.Result != "SKIP" {
			out = append(out, t.Name)
		}
	}
	return out
}

// Err says why the run failed (nil when it passed): the tests that failed,
// a panic, or the guest's own lines when no test ran.
func (r GuestRun) Err() error {
	var errs []error
	if r.Panic != "" {
		errs = append(errs, fmt.Errorf("the guest's tests panicked: %s (its stack is in the console above)", r.Panic))
	}
	if f := r.Failed(); len(f) > 0 {
		errs = append(errs, fmt.Errorf("tests failed in the guest: %s", strings.Join(f, ", ")))
	}
	switch {
	case !r.Done:
		errs = append(errs, errors.New("the guest printed no verdict (etoile-guest: PASS or FAIL)"))
	case !r.Passed && len(errs) == 0:
		errs = append(errs, fmt.Errorf("the guest failed: %s", strings.Join(r.Why, "; ")))
	case r.Passed && len(r.Tests) == 0:
		errs = append(errs, errors.New("the guest passed without running a test: check "+EnvGuestRun))
	}
	return errors.Join(errs...)
}
