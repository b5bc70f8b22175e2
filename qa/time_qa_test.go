//go:build qa

package qa

// Time: the agent keeps the clock with NTP. The server is a real chronyd
// (Debian's chrony, run from its unpacked package: installing the package
// would replace a developer machine's own time daemon), serving the host's
// clock on loopback without touching it (-x).

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	chronydOnce sync.Once
	chronydPath string
	chronydErr  error
)

// chronydBinary returns chronyd: the installed one, else Debian's chrony
// package that `make test-deps` (scripts/deps.sh's ensure_chronyd) unpacked
// under qa/work/tools (nothing is installed).
func chronydBinary(t *testing.T) string {
	t.Helper()
	chronydOnce.Do(func() {
		if p, err := (Tool{"chronyd", "chrony"}).Path(); err == nil {
			chronydPath = p
			return
		}
		base, err := workBase()
		if err != nil {
			chronydErr = err
			return
		}
		bin := filepath.Join(base, "tools", "chrony", "root", "usr", "sbin", "chronyd")
		if _, err := os.Stat(bin); err != nil {
			chronydErr = fmt.Errorf("no chronyd (the NTP server the time test runs): %v; make test-deps unpacks Debian's chrony there (or install chrony)", err)
			return
		}
		chronydPath = bin
	})
	if chronydErr != nil {
		t.Fatal(chronydErr)
	}
	return chronydPath
}

// startChronyd runs chronyd in the foreground on a free UDP port of
// 127.0.0.1 (10.0.2.2 from a VM on QEMU's user network), serving the
// host's clock as a stratum 8 server and leaving it alone (-x). It returns
// the port.
func startChronyd(t *testing.T) int {
	t.Helper()
	bin := chronydBinary(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\npidfile %s\n",
		port, filepath.Join(dir, "chronyd.pid"))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-x", "-d", "-u", "root", "-f", conf)
	log, err := os.Create(filepath.Join(dir, "chronyd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	// It dies with the test binary, even one killed by go test's timeout
	// (whose panic runs no cleanup).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // it may have exited
		cmd.Wait()         //nolint:errcheck // killed
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("chronyd's log:\n%s", b)
		}
		log.Close()
	})
	return port
}

// TestClockSetByNTP boots a machine whose RTC is in 2001 (a flat battery)
// with a machine config naming an NTP server: the agent sets the clock to
// the image's build time at once, then to the server's time, and only then
// starts K3s (the stand-in), whose certificates would otherwise be dated
// wrong. The time the agent shows after synchronising is the host's.
func TestClockSetByNTP(t *testing.T) {
	t.Parallel()
	out := standinOut(t)
	port := startChronyd(t)
	cfg := serverConfig + fmt.Sprintf("time:\n  servers: [\"10.0.2.2:%d\"]\n", port)
	k := netbootWithConfig(t, out, cfg, "")
	vm := Start(t, Config{Devices: []Device{SeaBIOS{}, k, UserNIC{}}, Extra: []string{"-rtc", "base=2001-01-01T00:00:00"}})
	vm.WaitFor(regexp.MustCompile(`the clock was before the image's build time: set to it .*was=2001-01-01T`), ReadyTimeout)
	m := vm.WaitFor(regexp.MustCompile(`^etoile: time synchronised server=10\.0\.2\.2:`+fmt.Sprint(port)+` offset=\S+ clock=(\S+)`), ReadyTimeout)
	clock, err := time.Parse(time.RFC3339, m.Fields["clock"])
	if err != nil {
		t.Fatalf("clock= in %q: %v", m.Line, err)
	}
	// The VM's clock right after the correction against the host's when the
	// line was read: TCG and the console add a few seconds at most.
	scale, err := TimeoutScale()
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(clock); d < -5*time.Second || d > time.Duration(30*scale)*time.Second {
		t.Errorf("the VM's clock after synchronising is %s, the host's %s: %s apart", clock, time.Now().UTC().Format(time.RFC3339), d)
	}
	// In the whole log (Find): a start before the synchronisation, which
	// the wait for it passed over, must fail the check below.
	started := vm.Find(regexp.MustCompile(`^etoile: k3s state=starting was=stopped\b`), ReadyTimeout)
	if started.At < m.At {
		t.Errorf("K3s started (%.2fs) before the clock was right (%.2fs)", started.At.Seconds(), m.At.Seconds())
	}
	vm.WaitFor(k3sReadyRE, K3sTimeout)
}
