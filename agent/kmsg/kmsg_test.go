package kmsg

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func recs(lines ...string) []Record {
	raw := make([][]byte, len(lines))
	for i, l := range lines {
		raw[i] = []byte(l)
	}
	return ParseAll(raw)
}

func TestParse(t *testing.T) {
	r, ok := Parse([]byte("7,902,2346973,c;  with arguments:\n SUBSYSTEM=x\n"))
	if !ok || r.Seq != 902 || r.Stamp != 2346973*time.Microsecond || r.Msg != "  with arguments:" || r.Prio != 7 {
		t.Errorf("Parse = %+v, %v", r, ok)
	}
	for _, bad := range []string{"", "no prefix", "6,901;Run /init as init process", "6,9,x,-;msg", "6,y,1,-;msg", "x,9,1,-;msg"} {
		if r, ok := Parse([]byte(bad)); ok {
			t.Errorf("Parse(%q) = %+v, want not parsed", bad, r)
		}
	}
}

func TestInitRan(t *testing.T) {
	log := recs("6,0,0,-;Linux version 6.1.0-56-amd64\n",
		"6,901,2346777,-;Run /init as init process\n",
		"7,902,2346973,c;  with arguments:\n SUBSYSTEM=x\n")
	if d, ok := InitRan(log); !ok || d != 2346777*time.Microsecond {
		t.Errorf("InitRan = %v, %v; want 2.346777s", d, ok)
	}
	if d, ok := InitRan(log[:1]); ok {
		t.Errorf("InitRan without the record = %v, want not found", d)
	}
	if d, ok := InitRan(nil); ok {
		t.Errorf("InitRan(nil) = %v, want not found", d)
	}
}

// The records around the TSC's takeover, from two boots of the same kernel
// under QEMU TCG: one whose early calibration succeeded, one whose failed.
func TestClockStartedLate(t *testing.T) {
	early := recs("5,0,0,-;Linux version 6.1.0-56-amd64",
		"6,28,0,-;tsc: Fast TSC calibration using PIT",
		"6,29,0,-;tsc: Detected 2096.008 MHz processor",
		"6,30,5639,-;AGP: No AGP bridge found",
		"6,120,254178,-;clocksource: tsc-early: mask: 0xffffffffffffffff",
		"6,700,1718929,-;Run /init as init process",
		"6,701,1718000,-;a later record out of order is not the clock's start")
	late := recs("5,0,0,-;Linux version 6.1.0-56-amd64",
		"6,27,0,-;AGP: No AGP bridge found",
		"4,125,48000,-;tsc: Unable to calibrate against PIT",
		"6,126,48000,-;tsc: using HPET reference calibration",
		"6,128,599,-;clocksource: tsc-early: mask: 0xffffffffffffffff",
		"6,700,1411172,-;Run /init as init process")
	for _, c := range []struct {
		name        string
		recs        []Record
		late, known bool
		field       string
	}{
		{"early", early, false, true, "early"},
		{"late", late, true, true, "late"},
		{"wrapped log", late[1:], false, false, ""},
		{"empty", nil, false, false, ""},
	} {
		l, k := ClockStartedLate(c.recs)
		f, fk := ClockStart(c.recs)
		if l != c.late || k != c.known || f != c.field || fk != c.known {
			t.Errorf("%s: ClockStartedLate = %v, %v; ClockStart = %q, %v; want %v, %v, %q", c.name, l, k, f, fk, c.late, c.known, c.field)
		}
	}
}

// TestReadTheKernelsLog reads this machine's /dev/kmsg (the tests run as root,
// as `make test` does): records in sequence order, with messages.
func TestReadTheKernelsLog(t *testing.T) {
	recs, err := Read("/dev/kmsg")
	if err != nil {
		t.Fatalf("reading /dev/kmsg (the tests need root): %v", err)
	}
	if len(recs) == 0 {
		t.Fatal("no records in the kernel's log")
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("record %d has sequence %d after %d", i, recs[i].Seq, recs[i-1].Seq)
		}
	}
	if !slices.ContainsFunc(recs, func(r Record) bool { return r.Msg != "" }) {
		t.Errorf("no record has a message: %+v", recs[:min(len(recs), 5)])
	}
}

// TestTailReadsOnlyWhatCame: a tail opened on this machine's /dev/kmsg
// returns nothing of the log before it, then a record written to the log
// after it (the tests run as root).
func TestTailReadsOnlyWhatCame(t *testing.T) {
	all, err := Read("/dev/kmsg")
	if err != nil || len(all) == 0 {
		t.Fatalf("reading /dev/kmsg (the tests need root): %d records, %v", len(all), err)
	}
	newest := all[len(all)-1].Seq
	tail, err := OpenTail("/dev/kmsg")
	if err != nil {
		t.Fatalf("opening /dev/kmsg (the tests need root): %v", err)
	}
	defer tail.Close()
	before, err := tail.Read()
	if err != nil {
		t.Fatal(err)
	}
	mark := fmt.Sprintf("etoile kmsg test %d", time.Now().UnixNano())
	if err := os.WriteFile("/dev/kmsg", []byte(mark+"\n"), 0); err != nil {
		t.Fatalf("writing to /dev/kmsg: %v", err)
	}
	recs, err := tail.Read()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(recs, func(r Record) bool { return strings.HasSuffix(r.Msg, mark) }) {
		t.Errorf("the tail did not return the record written after it (%d records before, %d after)", len(before), len(recs))
	}
	for _, r := range before {
		if strings.HasSuffix(r.Msg, mark) {
			t.Errorf("the mark was read before it was written")
		}
	}
	for _, r := range append(before, recs...) {
		if r.Seq <= newest {
			t.Errorf("the tail returned record %d, logged before it was opened (the newest then was %d)", r.Seq, newest)
		}
	}
}

// TestFollowerReadsWhatIsNew: a follower on this machine's /dev/kmsg
// holds the log from its oldest record (its newest max), and after a
// position returns only what came after it, a record written meanwhile
// with its priority (facility user, as the kernel gives a write without one).
func TestFollowerReadsWhatIsNew(t *testing.T) {
	f, err := OpenFollower("/dev/kmsg", 50)
	if err != nil {
		t.Fatalf("opening /dev/kmsg (the tests need root): %v", err)
	}
	first, err := f.Since(0)
	if err != nil || len(first) == 0 || len(first) > 50 {
		t.Fatalf("the first read: %d records, %v", len(first), err)
	}
	last := first[len(first)-1].Seq + 1
	mark := fmt.Sprintf("etoile kmsg follower test %d", time.Now().UnixNano())
	if err := os.WriteFile("/dev/kmsg", []byte(mark+"\n"), 0); err != nil {
		t.Fatalf("writing to /dev/kmsg: %v", err)
	}
	recs, err := f.Since(last)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(recs, func(r Record) bool { return strings.HasSuffix(r.Msg, mark) })
	if i < 0 || recs[i].Prio>>3 != 1 {
		t.Fatalf("the record written after: %+v", recs)
	}
	for _, r := range recs {
		if r.Seq+1 <= last {
			t.Errorf("record %d, at or before the position asked after (%d)", r.Seq, last)
		}
	}
	if again, _ := f.Since(recs[len(recs)-1].Seq + 1); len(again) > 5 {
		t.Errorf("read after the newest: %d records", len(again))
	}
}
