//go:build qa

package qa

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBoot boots every scenario and checks its ready line. VMs run two at a
// time (ETOILE_QA_PARALLEL).
func TestBoot(t *testing.T) {
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			out := Artifacts(t, s.Needs...)
			vm := Start(t, Config{Devices: s.Devices(t, out)})
			m := vm.Ready(ReadyTimeout)
			s.CheckReady(t, m)
			if s.BootPCI != "" {
				// Read from the firmware's BootCurrent, before the drivers load.
				re := regexp.MustCompile(`^etoile: booted from option=Boot[0-9A-F]{4} path=PciRoot\(0x0\)/Pci\(\S+\) pci=` + regexp.QuoteMeta(s.BootPCI) + `$`)
				if !slices.ContainsFunc(vm.Lines(), func(l Line) bool { return re.MatchString(l.Text) }) {
					t.Errorf("the agent did not tell the boot controller %s from the UEFI variables: no console line matches /%s/", s.BootPCI, re)
				}
			}
		})
	}
}

// TestNetbootWrongChecksum hands the agent a wrong etoile.system.sha256: it must
// refuse the image, show both hashes, and stay up.
func TestNetbootWrongChecksum(t *testing.T) {
	t.Parallel()
	out := Artifacts(t, KernelName, InitramfsName, SystemName)
	actual, err := FileSHA256(out + "/" + SystemName)
	if err != nil {
		t.Fatal(err)
	}
	// Flip the first hex digit: a well-formed hash that cannot match.
	wrong := map[byte]string{'0': "1"}[actual[0]]
	if wrong == "" {
		wrong = "0"
	}
	wrong += actual[1:]
	vm := Start(t, Config{Devices: []Device{SeaBIOS{}, NetbootKernel(t, out, wrong), UserNIC{}}})
	m := vm.WaitFor(ErrorRE, ReadyTimeout)
	t.Logf("error line: %s", m.Line)
	// PID 1 must neither exit (the kernel would panic) nor carry on to ready.
	vm.Absent(regexp.MustCompile(`Kernel panic|Attempted to kill init|^etoile: ready\b`), 10*time.Second)

	var console strings.Builder
	for _, l := range vm.Lines() {
		if l.At >= m.At-time.Second {
			console.WriteString(l.Text + "\n")
		}
	}
	for what, h := range map[string]string{"expected": wrong, "actual": actual} {
		if !strings.Contains(m.Line, h) {
			if strings.Contains(console.String(), h) {
				t.Logf("the %s hash is on the console but not on the error line", what)
				continue
			}
			t.Errorf("console does not show the %s hash %s; error line: %s", what, h, m.Line)
		}
	}
}
