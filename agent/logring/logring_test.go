package logring

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestRingKeepsTheNewestLines(t *testing.T) {
	r := New(3)
	for i := 1; i <= 5; i++ {
		r.Add(strconv.Itoa(i))
	}
	if got := strings.Join(r.Lines(), ","); got != "3,4,5" {
		t.Errorf("ring = %s", got)
	}
}

// TestRingAsWriter: lines split across writes, several in one write.
func TestRingAsWriter(t *testing.T) {
	r := New(10)
	fmt.Fprint(r, "etoile: step=mount-api ")
	fmt.Fprint(r, "t=0.10s\netoile: step=cmdline\netoile: ready")
	if got := strings.Join(r.Lines(), "|"); got != "etoile: step=mount-api t=0.10s|etoile: step=cmdline" {
		t.Errorf("ring = %q", got)
	}
	fmt.Fprint(r, " ip=none\n")
	if got := r.Lines(); len(got) != 3 || got[2] != "etoile: ready ip=none" {
		t.Errorf("ring = %q", got)
	}
}
