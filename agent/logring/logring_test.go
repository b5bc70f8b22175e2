package logring

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
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

// TestSinceFollowsTheLog: asking from the last answer's next gives only the
// lines added since; lines the ring dropped meanwhile are counted, not lost
// silently; 0 gives every line held.
func TestSinceFollowsTheLog(t *testing.T) {
	r := New(4)
	lines, next, skipped := r.Since(0)
	if len(lines) != 0 || next != 0 || skipped != 0 {
		t.Fatalf("empty ring: %q next=%d skipped=%d", lines, next, skipped)
	}
	r.Add("1")
	r.Add("2")
	lines, next, skipped = r.Since(0)
	if strings.Join(lines, ",") != "1,2" || next != 2 || skipped != 0 {
		t.Fatalf("Since(0) = %q next=%d skipped=%d", lines, next, skipped)
	}
	if lines, n2, _ := r.Since(next); len(lines) != 0 || n2 != 2 {
		t.Fatalf("nothing new: %q next=%d", lines, n2)
	}
	r.Add("3")
	fmt.Fprint(r, "4\n5\n")
	lines, next, skipped = r.Since(next)
	if strings.Join(lines, ",") != "3,4,5" || next != 5 || skipped != 0 {
		t.Fatalf("Since(2) = %q next=%d skipped=%d", lines, next, skipped)
	}
	for i := 6; i <= 12; i++ {
		r.Add(strconv.Itoa(i))
	}
	// Lines 6–8 were dropped before anyone asked: 9–12 held.
	lines, next, skipped = r.Since(next)
	if strings.Join(lines, ",") != "9,10,11,12" || next != 12 || skipped != 3 {
		t.Fatalf("Since(5) after a wrap = %q next=%d skipped=%d", lines, next, skipped)
	}
	if lines, _, skipped := r.Since(0); strings.Join(lines, ",") != "9,10,11,12" || skipped != 0 {
		t.Fatalf("Since(0) after a wrap = %q skipped=%d", lines, skipped)
	}
	if lines, next, _ := r.Since(10); strings.Join(lines, ",") != "11,12" || next != 12 {
		t.Fatalf("Since(10) = %q next=%d", lines, next)
	}
	// A number this ring never gave (another agent's, before a reboot)
	// starts over: every line held.
	if lines, next, _ := r.Since(99); strings.Join(lines, ",") != "9,10,11,12" || next != 12 {
		t.Fatalf("Since(99) = %q next=%d", lines, next)
	}
}

// TestSinceAtTimes: each line comes with when it was added.
func TestSinceAtTimes(t *testing.T) {
	r := New(3)
	before := time.Now()
	r.Add("a")
	time.Sleep(2 * time.Millisecond)
	mid := time.Now()
	r.Add("b")
	lines, next, _ := r.SinceAt(0)
	if len(lines) != 2 || next != 2 || lines[0].Text != "a" || lines[0].At.Before(before) || !lines[0].At.Before(mid) || lines[1].At.Before(mid) {
		t.Errorf("SinceAt = %+v, %d", lines, next)
	}
}
