package qa

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKernelToReady(t *testing.T) {
	lines := []Line{
		{Text: "etoile: step=mount t=0.41s took=3ms", At: time.Second},
		{Text: "etoile: step=network t=1.90s took=1.2s", At: 2 * time.Second},
		{Text: "etoile: ready version=1 boot=bios", At: 3 * time.Second},
		{Text: "etoile: step=late t=9.00s", At: 4 * time.Second},
	}
	tests := []struct {
		name  string
		ready string
		want  float64
		ok    bool
	}{
		{"own t", "etoile: ready version=1 t=2.50s", 2.5, true},
		{"from steps", "etoile: ready version=1 boot=bios", 1.9, true},
	}
	for _, tt := range tests {
		m := Match{Line: tt.ready, Fields: ParseFields(tt.ready), At: 3 * time.Second}
		got, err := KernelToReady(m, lines)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: KernelToReady = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if _, err := KernelToReady(Match{Fields: map[string]string{}}, nil); err == nil {
		t.Error("no t= anywhere gave no error")
	}
}

func TestFormatBootTable(t *testing.T) {
	got := FormatBootTable([]BootFigure{
		{Scenario: "iso-cd-bios", CPUs: 2, FloorKind: "direct kernel, SeaBIOS", Wall: 12.5, Floor: 9, Kernel: 2.1, FloorInit: 2, Init: 1.2},
		{Scenario: "raw", FloorKind: "x", Wall: 20, Floor: 9, Kernel: 4, Err: "a|b"},
	})
	for _, want := range []string{"| iso-cd-bios | 2 | 12.50 s | 9.00 s (direct kernel, SeaBIOS) | +3.50 s ✗ | 2.10 s | 2.00 s | 1.20 s |", "| raw | 1 | 20.00 s |", "4.00 s ✗", `a\|b`} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestWriteDocSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "benchmarks.md")
	steps := []struct{ name, content string }{{"boot", "first"}, {"sizes", "sizes"}, {"boot", "second"}}
	for _, s := range steps {
		if err := WriteDocSection(p, s.name, s.content); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	doc := string(b)
	if strings.Contains(doc, "first") || !strings.Contains(doc, "second") || !strings.Contains(doc, "sizes") || strings.Count(doc, "<!-- boot:begin -->") != 1 {
		t.Errorf("doc after updates:\n%s", doc)
	}
	if strings.Index(doc, "second") > strings.Index(doc, "sizes") {
		t.Errorf("boot section moved after sizes:\n%s", doc)
	}
}

func TestAgentStart(t *testing.T) {
	lines := []Line{{Text: "[ 1.0] Run /init"}, {Text: "etoile: step=mount-api t=2.50s took=500ms"}, {Text: "etoile: step=x t=9s took=1s"}}
	if got, err := AgentStart(lines); err != nil || got != 2.0 {
		t.Errorf("AgentStart = %v, %v; want 2", got, err)
	}
	if _, err := AgentStart(lines[:1]); err == nil {
		t.Error("no step line gave no error")
	}
	// The agent's own reading of when /init started wins over its first step.
	withStart := append([]Line{lines[1], {Text: "etoile: init ran agent_start=2.31s from=\"kernel log\""}}, lines[2:]...)
	if got, err := AgentStart(withStart); err != nil || got != 2.31 {
		t.Errorf("AgentStart with agent_start = %v, %v; want 2.31", got, err)
	}
}

func TestClockLate(t *testing.T) {
	for _, c := range []struct {
		lines       []string
		late, known bool
	}{
		{[]string{"etoile: ready version=x", `etoile: init ran agent_start=2.31s from="kernel log" kernel_clock=late`}, true, true},
		{[]string{`etoile: init ran agent_start=2.31s from="kernel log" kernel_clock=early`}, false, true},
		{[]string{"etoile-floor: ready t=1.70s", "etoile-floor: kernel_clock=late"}, true, true},
		{[]string{`etoile: init ran agent_start=2.31s from="kernel log"`}, false, false},
		{[]string{"[ 0.1] something kernel_clock=late"}, false, false},
	} {
		var lines []Line
		for _, l := range c.lines {
			lines = append(lines, Line{Text: l})
		}
		if late, known := ClockLate(lines); late != c.late || known != c.known {
			t.Errorf("ClockLate(%q) = %v, %v; want %v, %v", c.lines, late, known, c.late, c.known)
		}
	}
	got := FormatBootTable([]BootFigure{{Scenario: "a", Wall: 5, Floor: 4, Kernel: 2.9, KernelClockLate: true, Err: "x"}})
	if !strings.Contains(got, "| x; kernel clock started late: kernel → ready and → agent start leave out the early boot (~0.3 s) |") {
		t.Errorf("table lacks the clock note:\n%s", got)
	}
}
