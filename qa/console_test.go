package qa

import (
	"reflect"
	"testing"
)

func TestParseFields(t *testing.T) {
	tests := []struct {
		line string
		want map[string]string
	}{
		{
			line: "etoile: ready version=0.1.0 boot=uefi source=disk slot=a ip=10.0.2.15",
			want: map[string]string{"version": "0.1.0", "boot": "uefi", "source": "disk", "slot": "a", "ip": "10.0.2.15"},
		},
		{
			line: `etoile: error step=sysimage reason="sha256 mismatch: expected ab, actual cd" fix="rebuild \"out\""`,
			want: map[string]string{"step": "sysimage", "reason": "sha256 mismatch: expected ab, actual cd", "fix": `rebuild "out"`},
		},
		{
			line: "etoile: step=mount t=0.41s took=3ms",
			want: map[string]string{"step": "mount", "t": "0.41s", "took": "3ms"},
		},
		{line: "[    2.434754] Run /init as init process", want: map[string]string{}},
		{line: `etoile: error step=x reason="line\nbreak \u00e9" fix=""`, want: map[string]string{"step": "x", "reason": "line\nbreak é", "fix": ""}},
		{line: `a="unterminated b=c`, want: map[string]string{"a": "unterminated b=c"}},
		{line: `=x k= "q=1" w"x=y" k2=v`, want: map[string]string{"k": "", "k2": "v"}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			if got := ParseFields(tt.line); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseFields(%q) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

func FuzzParseFields(f *testing.F) {
	f.Add(`etoile: error step=x reason="a \"b\" c" fix="d"`)
	f.Add("etoile: ready version=1 boot=bios")
	f.Add(`k="\`)
	f.Fuzz(func(t *testing.T, line string) {
		for k := range ParseFields(line) {
			if k == "" {
				t.Fatalf("empty key from %q", line)
			}
		}
		_ = cleanLine(line)
	})
}

func TestCleanLine(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"etoile: ready boot=bios\r\n", "etoile: ready boot=bios"},
		{"\x1b[2J\x1b[01;01H\x1b[=3hBdsDxe: loading Boot0001\r\n", "BdsDxe: loading Boot0001"},
		{"progress 10%\rprogress 100%\r\n", "progress 100%"},
		{"\x00bell\x07 tab\there\n", "bell tab\there"},
	}
	for _, tt := range tests {
		if got := cleanLine(tt.raw); got != tt.want {
			t.Errorf("cleanLine(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func TestParseSeconds(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"0.41s", 0.41, true}, {"3ms", 0.003, true}, {"1.5", 1.5, true}, {"soon", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSeconds(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSeconds(%q) = %v, %v; want %v (ok=%v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
