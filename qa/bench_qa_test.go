//go:build qa

package qa

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docPath is docs/benchmarks.md at the repository root.
func docPath(b *testing.B) string {
	root, err := RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	return filepath.Join(root, "docs", "benchmarks.md")
}

// BenchmarkBoot measures every scenario from QEMU start to the ready line, each
// boot right after a boot of its floor: the same firmware and kernel booting
// qa/floor, a trivial init that only prints a line. VMs run one at a time. It asserts no
// times; it prints the table and writes it into docs/benchmarks.md.
func BenchmarkBoot(b *testing.B) {
	out := Artifacts(b, KernelName)
	floors := Floors(b, out)
	// `make bench` writes the images (hundreds of MB) just before: their
	// write-back would land on the first scenario's boots.
	syscall.Sync()
	machine := MachineDescription()
	var rows []BootFigure
	// Every scenario boots with one virtual CPU and with two: appliances
	// have several cores (a K3s server needs two), and with one every
	// module load competes with the agent for it.
	for _, s := range Scenarios() {
		for _, cpus := range []int{1, 2} {
			row := BootFigure{Scenario: s.Name, CPUs: cpus}
			var errs []string
			ran := false // -bench may filter sub-benchmarks out
			// Each iteration boots the floor and then the scenario, so both figures
			// of a pair meet the same load on a shared machine.
			b.Run(fmt.Sprintf("%s-%dcpu", s.Name, cpus), func(b *testing.B) {
				ran = true
				for range b.N {
					devs, kind := s.FloorDevices(b, out, floors)
					row.FloorKind = kind
					vm := Start(b, Config{Devices: devs, CPUs: cpus})
					m, err := vm.Expect(FloorRE, ReadyTimeout)
					if err == nil {
						// Printed right after, from the kernel's log.
						_, _ = vm.Expect(FloorClockRE, 10*time.Second)
					}
					vm.Stop()
					if err != nil {
						errs = append(errs, "floor: "+err.Error())
						b.Fatal(err)
					}
					row.Floor = minPositive(row.Floor, m.At.Seconds())
					if t, err := m.Seconds("t"); err == nil && (row.FloorInit <= 0 || t < row.FloorInit) {
						row.FloorInit = t
						row.FloorClockLate, _ = ClockLate(vm.Lines())
					}

					media := Artifacts(b, s.Needs...)
					vm = Start(b, Config{Devices: s.Devices(b, media), CPUs: cpus})
					m, err = vm.Expect(ReadyRE, ReadyTimeout)
					if err == nil {
						// Printed right after the ready line, from the kernel's log.
						_, _ = vm.Expect(InitRanRE, 10*time.Second)
					}
					vm.Stop()
					if err != nil {
						errs = append(errs, err.Error())
						b.Fatal(err)
					}
					row.Wall = minPositive(row.Wall, m.At.Seconds())
					k, err := KernelToReady(m, vm.Lines())
					if err != nil {
						errs = append(errs, err.Error())
					}
					if k > 0 && (row.Kernel <= 0 || k < row.Kernel) {
						row.Kernel = k
						row.KernelClockLate, _ = ClockLate(vm.Lines())
					}
					if a, err := AgentStart(vm.Lines()); err == nil {
						row.Init = minPositive(row.Init, a)
					}
				}
				b.ReportMetric(row.Floor, "s-floor")
				b.ReportMetric(row.Wall, "s-to-ready")
				b.ReportMetric(row.Kernel, "s-kernel-to-ready")
			})
			row.Err = shorten(strings.Join(errs, "; "), 160)
			if ran {
				rows = append(rows, row)
			}
		}
	}
	table := FormatBootTable(rows)
	b.Logf("boot times:\n%s", table)
	fmt.Println(table)
	section := fmt.Sprintf(`## Boot time

Measured %s on %s.

Each scenario boots the build's media from %s (QEMU start → the %s line on the serial console) right
after its floor: the same firmware and the same kernel (%s) booting qa/floor, a static
init that only prints a line. Where it can, the floor boots the same media: the build's ISO or raw
image with the initramfs bytes replaced in place by the floor's (padded to the same length with an
archive entry the kernel steps over, so firmware and boot loader read as much and the kernel does not
scan the padding), or the netboot set with the floor's initramfs; otherwise
the kernel and the floor initramfs are handed over directly by QEMU (-kernel/-initrd). The floor
column says which. "kernel → ready" is the
agent's own t= on the console (seconds since kernel start); the floor's is its t= when it runs as /init.
"kernel → agent start" is when the kernel ran /init (the agent's agent_start=, from the kernel's log): the kernel and initramfs unpacking
before the agent runs. Each scenario and its floor boot with one virtual CPU and again with two (-smp;
under TCG each is a host thread). With -benchtime Nx each figure is the fastest of N boots.
The kernel's clock (its log's timestamps and CLOCK_BOOTTIME, which t= reads) starts at the early TSC
calibration; under TCG that calibration fails in some boots, and the clock then starts about 0.3 s
later, after the early boot: the note says where the boot that gave a t= figure was such a boot
(kernel_clock=late, which the agent and the floor read from the kernel's log).
Targets: QEMU start → ready ≤ floor + %.0f s; kernel → ready ≤ %.0f s under TCG. ✗ marks a missed target.

%s`, Today(), machine, out, "`etoile: ready`", KernelName, TargetOverFloor, TargetKernel, table)
	if err := WriteDocSection(docPath(b), "boot", section); err != nil {
		b.Error(err)
	}
}

// BenchmarkArtifactSizes reports the size of every artifact beside its budget.
func BenchmarkArtifactSizes(b *testing.B) {
	// The testing package calls a benchmark again with a larger b.N; sizes do
	// not change, so they are measured and written once.
	if b.N > 1 {
		return
	}
	out := Artifacts(b, AllArtifacts...)
	var t strings.Builder
	t.WriteString("| artifact | size | budget |\n| --- | ---: | ---: |\n")
	for _, n := range AllArtifacts {
		st, err := os.Stat(filepath.Join(out, n))
		if err != nil {
			b.Fatal(err)
		}
		budget := "—"
		if n == InitramfsName {
			budget = "30 MB"
			if st.Size() > 30_000_000 {
				budget += " ✗"
			}
		}
		fmt.Fprintf(&t, "| %s | %.1f MB | %s |\n", n, float64(st.Size())/1e6, budget)
		b.ReportMetric(float64(st.Size())/1e6, strings.NewReplacer(".", "_", "-", "_").Replace(n)+"_MB")
	}
	fmt.Println(t.String())
	section := fmt.Sprintf("## Artifact sizes\n\nMeasured %s from %s.\n\n%s", Today(), out, t.String())
	if err := WriteDocSection(docPath(b), "sizes", section); err != nil {
		b.Error(err)
	}
}

// minPositive keeps the fastest of several runs (-benchtime Nx): on a shared
// machine the minimum is the figure least disturbed by other work.
func minPositive(cur, v float64) float64 {
	if cur <= 0 || v < cur {
		return v
	}
	return cur
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
