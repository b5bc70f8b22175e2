package qa

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// BootFigure is one row of the boot-time table: a scenario and its floor,
// measured in the same run.
type BootFigure struct {
	Scenario  string
	CPUs      int     // virtual CPUs of both boots
	FloorKind string  // how the floor booted, e.g. "direct kernel, SeaBIOS"
	Wall      float64 // seconds, QEMU start → ready line (0 = not reached)
	Floor     float64 // seconds, QEMU start → floor line
	Kernel    float64 // seconds, kernel start → ready (console t=)
	Init      float64 // seconds, kernel start → the agent started (/init)
	FloorInit float64 // seconds, kernel start → floor line (its t=)
	// The kernel's clock started late (kmsg.ClockStartedLate) in the boot
	// that gave Kernel, and in the floor boot that gave FloorInit: their
	// t= leave out the early boot (about 0.3 s under TCG).
	KernelClockLate, FloorClockLate bool
	Err                             string // why a figure is missing
}

// FloorClockRE is the floor's line after its ready line, saying how the
// kernel's clock started (kernel_clock=).
var FloorClockRE = regexp.MustCompile(`^etoile-floor: kernel_clock=`)

// ClockLate reads kernel_clock= from the agent's "init ran" line or the
// floor's clock line: late is true for "late", known false where no line
// says.
func ClockLate(lines []Line) (late, known bool) {
	for _, l := range lines {
		if !strings.HasPrefix(l.Text, "etoile: ") && !strings.HasPrefix(l.Text, "etoile-floor: ") {
			continue
		}
		switch ParseFields(l.Text)["kernel_clock"] {
		case "late":
			return true, true
		case "early":
			return false, true
		}
	}
	return false, false
}

// ClockNote is the table's note for boots whose kernel clock started late.
func ClockNote(kernelLate, floorLate bool) string {
	switch {
	case kernelLate && floorLate:
		return "kernel clock started late in both boots: both t= leave out the early boot (~0.3 s)"
	case kernelLate:
		return "kernel clock started late: kernel → ready and → agent start leave out the early boot (~0.3 s)"
	case floorLate:
		return "floor's kernel clock started late: its t= leaves out the early boot (~0.3 s)"
	}
	return ""
}

// Targets from the issue.
const (
	TargetOverFloor = 2.0 // seconds over the floor
	TargetKernel    = 3.0 // seconds from kernel start to ready under TCG
)

// stepRE matches the agent's step lines, which carry t= like the ready line.
var stepRE = regexp.MustCompile(`^etoile: step=`)

// KernelToReady returns the seconds from kernel start to the ready line: the
// ready line's own t= when it has one, else the latest t= of the step lines
// before it.
func KernelToReady(ready Match, lines []Line) (float64, error) {
	if _, ok := ready.Fields["t"]; ok {
		return ready.Seconds("t")
	}
	best := -1.0
	for _, l := range lines {
		if l.At > ready.At || l.At == ready.At && l.Text == ready.Line {
			break
		}
		if !stepRE.MatchString(l.Text) {
			continue
		}
		if v, ok := ParseFields(l.Text)["t"]; ok {
			if s, err := ParseSeconds(v); err == nil && s > best {
				best = s
			}
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("neither the ready line nor any `etoile: step=` line before it has t=")
	}
	return best, nil
}

// InitRanRE is the agent's line, right after the ready line, with when the
// kernel ran it as /init (agent_start=, from the kernel's log).
var InitRanRE = regexp.MustCompile(`^etoile: init ran agent_start=`)

// AgentStart returns the seconds from kernel start to the agent's start: the
// agent_start= the agent reads from the kernel's log ("Run /init as init
// process"), or, from an agent that does not print it, the beginning of its
// first step (its t= less its took=). What the kernel and the initramfs
// unpacking cost before the agent ran.
func AgentStart(lines []Line) (float64, error) {
	for _, l := range lines {
		if v := ParseFields(l.Text)["agent_start"]; v != "" && strings.HasPrefix(l.Text, "etoile: ") {
			return ParseSeconds(v)
		}
	}
	for _, l := range lines {
		if !stepRE.MatchString(l.Text) {
			continue
		}
		f := ParseFields(l.Text)
		t, err := ParseSeconds(f["t"])
		if err != nil {
			return 0, err
		}
		took, err := ParseSeconds(f["took"])
		if err != nil {
			took = 0
		}
		return t - took, nil
	}
	return 0, fmt.Errorf("no agent_start= and no `etoile: step=` line on the console")
}

// FormatBootTable renders the figures as a Markdown table, each figure beside
// its reference and target.
func FormatBootTable(rows []BootFigure) string {
	var b strings.Builder
	b.WriteString("| scenario | vCPUs | QEMU start → ready | floor (same firmware, same kernel) | over floor (target ≤ 2 s) | kernel → ready, console t= (target ≤ 3 s) | floor: kernel → its line | kernel → agent start (/init) | note |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	sec := func(v float64) string {
		if v <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f s", v)
	}
	for _, r := range rows {
		over := "—"
		if r.Wall > 0 && r.Floor > 0 {
			over = fmt.Sprintf("%+.2f s", r.Wall-r.Floor)
			if r.Wall-r.Floor > TargetOverFloor {
				over += " ✗"
			}
		}
		kernel := sec(r.Kernel)
		if r.Kernel > TargetKernel {
			kernel += " ✗"
		}
		note := r.Err
		if c := ClockNote(r.KernelClockLate, r.FloorClockLate); c != "" {
			note = strings.TrimPrefix(note+"; "+c, "; ")
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s (%s) | %s | %s | %s | %s | %s |\n",
			r.Scenario, max(r.CPUs, 1), sec(r.Wall), sec(r.Floor), r.FloorKind, over, kernel, sec(r.FloorInit), sec(r.Init), strings.ReplaceAll(note, "|", "\\|"))
	}
	return b.String()
}

// MachineDescription says where figures were measured: CPU, cores, QEMU and
// accelerator.
func MachineDescription() string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	qemu := "QEMU not found"
	if out, err := exec.Command(QEMUTool.Name, "--version").Output(); err == nil {
		qemu, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			load = ", load average " + f[0] + " at the start"
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s, -accel %s, one VM at a time%s", cpu, runtime.NumCPU(), qemu, Accel(), load)
}

// WriteDocSection replaces the section between `<!-- NAME:begin -->` and
// `<!-- NAME:end -->` in the Markdown file at path (appending it if absent), so
// several benchmarks can share docs/benchmarks.md.
func WriteDocSection(path, name, content string) error {
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	doc := string(old)
	if doc == "" {
		doc = "# Benchmarks\n\nWritten by `make bench` (`go test -tags qa -run '^$' -bench . -benchtime 2x ./qa/`); edit the code, not the figures.\n"
	}
	section := begin + "\n" + strings.TrimSpace(content) + "\n" + end
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i >= 0 && j > i {
		doc = doc[:i] + section + doc[j+len(end):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section + "\n"
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// Today is the UTC date and time for a figures header.
func Today() string { return time.Now().UTC().Format("2006-01-02 15:04 MST") }
