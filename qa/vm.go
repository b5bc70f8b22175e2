package qa

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment variables that tune the harness.
const (
	EnvAccel        = "ETOILE_QA_ACCEL"         // QEMU accelerator, default tcg (KVM guests hang on some hosts)
	EnvTimeoutScale = "ETOILE_QA_TIMEOUT_SCALE" // float multiplying every wait, default 1
	EnvWorkDir      = "ETOILE_QA_WORKDIR"       // where VM work folders go, default qa/work
	EnvParallel     = "ETOILE_QA_PARALLEL"      // VMs running at once, default 2
)

// Lines that end a wait at once: the agent gave up, or the kernel did. The
// agent's fatal line is `etoile: error step=… reason=… fix=…`; its log lines at
// error level read `etoile: error: …` and need not be fatal.
var failFast = []*regexp.Regexp{
	ErrorRE,
	regexp.MustCompile(`Kernel panic - not syncing`),
}

// ErrorRE matches the agent's fatal error line.
var ErrorRE = regexp.MustCompile(`etoile: error(\s|$)`)

// ReadyRE matches the agent's ready line.
var ReadyRE = regexp.MustCompile(`^etoile: ready\b`)

// Config describes a VM. Only Devices is required.
type Config struct {
	Devices   []Device
	MemoryMiB int    // default 1024
	Machine   string // default q35: its CD drive sits on AHCI, like real servers
	// CPU model, default max: unlike QEMU's default qemu64 it has RDRAND, as
	// every server CPU does, so the guest's random pool is seeded at boot and
	// getrandom() does not block for minutes under TCG.
	CPU string
	// CPUs is the number of virtual CPUs, default 1 (tests run several VMs
	// at once on small machines). Under TCG each is a host thread.
	CPUs int
	// QMP opens QEMU's machine protocol on a socket, for VM.QMP (pressing
	// the power button).
	QMP bool
	// Extra is appended verbatim; prefer a Device.
	Extra []string
}

// VM is a running QEMU whose serial console is read line by line.
type VM struct {
	tb    testing.TB
	Dir   string // work folder: console.log, disk copies, UEFI variables
	Args  []string
	start time.Time

	cmd        *exec.Cmd
	consoleLog *os.File
	readers    sync.WaitGroup
	release    func()
	stopOnce   sync.Once
	qmpDir     string // holds qmp.sock; a short path (a socket's is at most 107 bytes)

	mu      sync.Mutex
	lines   []Line
	next    int // first line not yet consumed by a wait
	changed chan struct{}
	exited  bool
	exitErr error
	stderr  strings.Builder
}

var (
	slotsOnce sync.Once
	slots     chan struct{}
)

// acquireSlot limits how many VMs run at once: TCG is CPU bound, and more VMs
// than cores makes every boot slower than its timeout allows.
func acquireSlot(tb testing.TB) func() {
	slotsOnce.Do(func() {
		n := 2
		if v := os.Getenv(EnvParallel); v != "" {
			if p, err := strconv.Atoi(v); err == nil && p > 0 {
				n = p
			}
		}
		slots = make(chan struct{}, n)
	})
	slots <- struct{}{}
	return func() { <-slots }
}

// Accel returns the QEMU accelerator to use.
func Accel() string {
	if a := os.Getenv(EnvAccel); a != "" {
		return a
	}
	return "tcg"
}

// TimeoutScale returns ETOILE_QA_TIMEOUT_SCALE, or an error naming the bad value.
func TimeoutScale() (float64, error) {
	v := os.Getenv(EnvTimeoutScale)
	if v == "" {
		return 1, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive number such as 2.5", EnvTimeoutScale, v)
	}
	return f, nil
}

// Scale multiplies d by ETOILE_QA_TIMEOUT_SCALE; a bad value fails tb.
func Scale(tb testing.TB, d time.Duration) time.Duration {
	tb.Helper()
	f, err := TimeoutScale()
	if err != nil {
		tb.Fatal(err)
	}
	return time.Duration(float64(d) * f)
}

// workDir makes a fresh folder for one VM, named after the test.
func workDir(tb testing.TB) (string, error) {
	abs, err := workBase()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("create QA work folder %s: %w", abs, err)
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(tb.Name(), "_")
	return os.MkdirTemp(abs, name+"-*")
}

// workBase is $ETOILE_QA_WORKDIR, else qa/work in the repository (ignored by git).
func workBase() (string, error) {
	if base := os.Getenv(EnvWorkDir); base != "" {
		return filepath.Abs(base)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "qa", "work"), nil
}

// Start composes the QEMU command line from cfg, starts QEMU and streams its
// serial console into tb's log and Dir/console.log. The VM is stopped when the
// test ends; the work folder is kept (and the command line printed) only if the
// test failed. Any problem starting it fails tb.
func Start(tb testing.TB, cfg Config) *VM {
	tb.Helper()
	if err := RequireTools(QEMUTool); err != nil {
		tb.Fatal(err)
	}
	dir, err := workDir(tb)
	if err != nil {
		tb.Fatalf("create VM work folder: %v", err)
	}
	vm := &VM{tb: tb, Dir: dir, changed: make(chan struct{})}
	// Registered before anything can fail, so a half-built VM still keeps its folder.
	tb.Cleanup(vm.stop)

	args, err := vm.compose(cfg)
	if err != nil {
		tb.Fatalf("compose QEMU command: %v", err)
	}
	vm.Args = args
	if err := os.WriteFile(filepath.Join(dir, "qemu-cmdline.sh"), []byte(ShellQuote(args)+"\n"), 0o644); err != nil {
		tb.Fatalf("write command line: %v", err)
	}
	vm.consoleLog, err = os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		tb.Fatalf("create console log: %v", err)
	}

	vm.release = acquireSlot(tb)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	// If the test binary dies (a -timeout panic, ^C), QEMU must not live on
	// as an orphan burning a core.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("QEMU stdout pipe: %v", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatalf("QEMU stderr pipe: %v", err)
	}
	vm.cmd = cmd
	vm.start = time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", args[0], err)
	}
	vm.readers.Add(2)
	go vm.readConsole(stdout)
	go vm.readStderr(stderr)
	go func() {
		vm.readers.Wait()
		err := cmd.Wait()
		vm.mu.Lock()
		vm.exited, vm.exitErr = true, err
		vm.notifyLocked()
		vm.mu.Unlock()
	}()
	return vm
}

func (vm *VM) compose(cfg Config) ([]string, error) {
	mem := cfg.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	machine := cfg.Machine
	if machine == "" {
		machine = "q35"
	}
	cpu := cfg.CPU
	if cpu == "" {
		cpu = "max"
	}
	cpus := max(cfg.CPUs, 1)
	args := []string{
		QEMUTool.Name,
		"-machine", machine,
		"-cpu", cpu,
		"-accel", Accel(),
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		// No default NIC, VGA, CD or serial: every device is named by a Device.
		"-nodefaults",
		"-display", "none",
		"-monitor", "none",
		"-no-reboot",
		"-chardev", "stdio,id=serial0,signal=off",
		"-serial", "chardev:serial0",
	}
	if cfg.QMP {
		dir, err := os.MkdirTemp("", "etoile-qmp-")
		if err != nil {
			return nil, err
		}
		vm.qmpDir = dir
		args = append(args, "-qmp", "unix:"+filepath.Join(dir, "qmp.sock")+",server=on,wait=off")
	}
	for _, d := range cfg.Devices {
		a, err := d.QEMUArgs(vm.Dir)
		if err != nil {
			return nil, fmt.Errorf("device %T: %w", d, err)
		}
		args = append(args, a...)
	}
	return append(args, cfg.Extra...), nil
}

func (vm *VM) readConsole(r io.Reader) {
	defer vm.readers.Done()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		raw, err := br.ReadString('\n')
		if raw != "" {
			vm.consoleLog.WriteString(raw) //nolint:errcheck // the log is a debugging aid
			at := time.Since(vm.start)
			vm.addLine(cleanLine(raw), at)
		}
		if err != nil {
			return
		}
	}
}

func (vm *VM) addLine(text string, at time.Duration) {
	vm.tb.Logf("[%7.3fs] %s", at.Seconds(), text)
	vm.mu.Lock()
	vm.lines = append(vm.lines, Line{Text: text, At: at})
	vm.notifyLocked()
	vm.mu.Unlock()
}

func (vm *VM) readStderr(r io.Reader) {
	defer vm.readers.Done()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		vm.tb.Logf("qemu stderr: %s", sc.Text())
		vm.mu.Lock()
		vm.stderr.WriteString(sc.Text() + "\n")
		vm.mu.Unlock()
	}
}

func (vm *VM) notifyLocked() {
	close(vm.changed)
	vm.changed = make(chan struct{})
}

// Lines returns a copy of every console line so far.
func (vm *VM) Lines() []Line {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Line(nil), vm.lines...)
}

// errNotSeen is returned by Expect when the timeout passes without a match.
var errNotSeen = errors.New("not seen")

// Expect waits up to timeout (scaled by ETOILE_QA_TIMEOUT_SCALE) for a console
// line, after the last line an earlier wait consumed, that matches re. It
// returns early with an error if a line shows `etoile: error` or a kernel panic
// (unless re matches that line itself) or if QEMU exits.
func (vm *VM) Expect(re *regexp.Regexp, timeout time.Duration) (Match, error) {
	return vm.expect(re, timeout, failFast)
}

func (vm *VM) expect(re *regexp.Regexp, timeout time.Duration, failOn []*regexp.Regexp) (Match, error) {
	f, err := TimeoutScale()
	if err != nil {
		return Match{}, err
	}
	deadline := time.NewTimer(time.Duration(float64(timeout) * f))
	defer deadline.Stop()
	for {
		vm.mu.Lock()
		for vm.next < len(vm.lines) {
			l := vm.lines[vm.next]
			vm.next++
			if re.MatchString(l.Text) {
				vm.mu.Unlock()
				return Match{Line: l.Text, Fields: ParseFields(l.Text), At: l.At}, nil
			}
			for _, ff := range failOn {
				if ff.MatchString(l.Text) {
					vm.mu.Unlock()
					return Match{Line: l.Text, Fields: ParseFields(l.Text), At: l.At},
						fmt.Errorf("console showed %q at %.2fs while waiting for /%s/", l.Text, l.At.Seconds(), re)
				}
			}
		}
		if vm.exited {
			err := vm.exitErr
			stderr := vm.stderr.String()
			vm.mu.Unlock()
			return Match{}, fmt.Errorf("QEMU exited (%v) while waiting for /%s/; stderr: %s", err, re, strings.TrimSpace(stderr))
		}
		changed := vm.changed
		vm.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			return Match{}, fmt.Errorf("%w: no console line matching /%s/ within %s (scaled by %s=%g) after %.1fs of QEMU",
				errNotSeen, re, timeout, EnvTimeoutScale, f, time.Since(vm.start).Seconds())
		}
	}
}

// WaitFor is Expect that fails the test on error, and logs the wall time.
func (vm *VM) WaitFor(re *regexp.Regexp, timeout time.Duration) Match {
	vm.tb.Helper()
	m, err := vm.Expect(re, timeout)
	if err != nil {
		vm.tb.Fatal(err)
	}
	vm.tb.Logf("matched /%s/ %.2fs after QEMU start", re, m.At.Seconds())
	return m
}

// Find returns the first console line so far that matches re, before or
// after the lines earlier waits consumed; when there is none yet, it waits
// for one (WaitFor). It is for lines whose order against the ones waited
// for is not fixed (a second NIC's lease and the ready line).
func (vm *VM) Find(re *regexp.Regexp, timeout time.Duration) Match {
	vm.tb.Helper()
	for _, l := range vm.Lines() {
		if re.MatchString(l.Text) {
			return Match{Line: l.Text, Fields: ParseFields(l.Text), At: l.At}
		}
	}
	return vm.WaitFor(re, timeout)
}

// Ready waits for the agent's ready line and returns it.
func (vm *VM) Ready(timeout time.Duration) Match {
	vm.tb.Helper()
	return vm.WaitFor(ReadyRE, timeout)
}

// Absent fails the test if a console line matching re appears, or QEMU exits,
// within d (scaled). It is how a test shows the VM stays up.
func (vm *VM) Absent(re *regexp.Regexp, d time.Duration) {
	vm.tb.Helper()
	m, err := vm.expectOnly(re, d)
	switch {
	case errors.Is(err, errNotSeen):
		return
	case err != nil:
		vm.tb.Fatal(err)
	default:
		vm.tb.Fatalf("console showed %q at %.2fs; it must not appear", m.Line, m.At.Seconds())
	}
}

// expectOnly is Expect without the fail-fast lines: after an expected error
// line, further ones are not themselves failures.
func (vm *VM) expectOnly(re *regexp.Regexp, timeout time.Duration) (Match, error) {
	return vm.expect(re, timeout, nil)
}

// QMP runs one command of QEMU's machine protocol ("system_powerdown":
// the ACPI power button; "device_add" with its arguments: a device plugged
// in) on a VM started with Config.QMP.
func (vm *VM) QMP(command string, args ...map[string]any) error {
	if vm.qmpDir == "" {
		return errors.New("the VM was started without Config.QMP")
	}
	conn, err := net.DialTimeout("unix", filepath.Join(vm.qmpDir, "qmp.sock"), 10*time.Second)
	if err != nil {
		return fmt.Errorf("QMP: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	dec := json.NewDecoder(conn)
	var greeting map[string]json.RawMessage
	if err := dec.Decode(&greeting); err != nil || greeting["QMP"] == nil {
		return fmt.Errorf("QMP: no greeting (%v)", err)
	}
	type request struct {
		Execute   string         `json:"execute"`
		Arguments map[string]any `json:"arguments,omitempty"`
	}
	cmd := request{Execute: command}
	if len(args) > 0 {
		cmd.Arguments = args[0]
	}
	for _, req := range []request{{Execute: "qmp_capabilities"}, cmd} {
		c := req.Execute
		line, err := json.Marshal(req)
		if err != nil {
			return err
		}
		if _, err := conn.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("QMP %s: %w", c, err)
		}
		for {
			var r map[string]json.RawMessage
			if err := dec.Decode(&r); err != nil {
				return fmt.Errorf("QMP %s: %w", c, err)
			}
			if e, ok := r["error"]; ok {
				return fmt.Errorf("QMP %s: %s", c, e)
			}
			if _, ok := r["return"]; ok {
				break
			}
			// an event: read on
		}
	}
	return nil
}

// WaitExit waits up to timeout (scaled) for QEMU to exit by itself (the
// guest powered off) and returns how it exited: nil for status 0.
func (vm *VM) WaitExit(timeout time.Duration) error {
	f, err := TimeoutScale()
	if err != nil {
		return err
	}
	deadline := time.NewTimer(time.Duration(float64(timeout) * f))
	defer deadline.Stop()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for !vm.exited {
		changed := vm.changed
		vm.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			vm.mu.Lock()
			return fmt.Errorf("QEMU still running %s (scaled by %s=%g) later", timeout, EnvTimeoutScale, f)
		}
		vm.mu.Lock()
	}
	return vm.exitErr
}

// Elapsed is the wall time since QEMU started.
func (vm *VM) Elapsed() time.Duration { return time.Since(vm.start) }

// Stop ends QEMU now and waits until its console has been read to the end.
// The test's cleanup calls it too; calling it twice is harmless.
func (vm *VM) Stop() {
	vm.stopOnce.Do(func() {
		if vm.release != nil {
			defer vm.release()
		}
		if vm.cmd == nil || vm.cmd.Process == nil {
			return
		}
		vm.cmd.Process.Kill() //nolint:errcheck // it may have exited already
		vm.mu.Lock()
		for !vm.exited {
			ch := vm.changed
			vm.mu.Unlock()
			<-ch
			vm.mu.Lock()
		}
		vm.mu.Unlock()
	})
}

// stop ends QEMU and either removes the work folder or, after a failure, keeps it
// and prints how to rerun the VM by hand.
func (vm *VM) stop() {
	vm.Stop()
	if vm.qmpDir != "" {
		os.RemoveAll(vm.qmpDir)
	}
	if vm.consoleLog != nil {
		vm.consoleLog.Close()
	}
	if vm.tb.Failed() {
		vm.tb.Logf("QEMU command line:\n%s", ShellQuote(vm.Args))
		vm.tb.Logf("work folder kept (console.log, disk copies, UEFI variables): %s", vm.Dir)
		return
	}
	os.RemoveAll(vm.Dir)
}

// ShellQuote renders args as one line a shell would split back into args.
func ShellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:+@%") == "" {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
