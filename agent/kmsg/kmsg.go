// Package kmsg reads the kernel's log records as /dev/kmsg gives them
// (Documentation/ABI/testing/dev-kmsg): what the kernel logged before the
// agent ran, including what `quiet` kept off the console.
package kmsg

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// Record is one kernel log record.
type Record struct {
	Seq   uint64        // sequence number; 0 is the first record since boot
	Stamp time.Duration // timestamp, since the kernel's clock started
	Msg   string        // the message, without continuation lines
	// Prio is the record's syslog priority: facility × 8 + severity (a
	// kernel message's facility is 0, kern; one written to /dev/kmsg
	// from user space without a priority gets facility user, 1, at the
	// kernel's default level).
	Prio int
}

// Parse reads one record: "level,seq,usec,flags[,...];message\n" followed by
// optional " KEY=value" continuation lines.
func Parse(raw []byte) (Record, bool) {
	prefix, msg, ok := bytes.Cut(raw, []byte(";"))
	if !ok {
		return Record{}, false
	}
	f := strings.Split(string(prefix), ",")
	if len(f) < 3 {
		return Record{}, false
	}
	seq, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return Record{}, false
	}
	us, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return Record{}, false
	}
	prio, err := strconv.Atoi(f[0])
	if err != nil || prio < 0 {
		return Record{}, false
	}
	msg, _, _ = bytes.Cut(msg, []byte("\n"))
	return Record{Seq: seq, Stamp: time.Duration(us) * time.Microsecond, Msg: string(msg), Prio: prio}, true
}

// ParseAll parses raw records, skipping any that do not parse.
func ParseAll(raw [][]byte) []Record {
	out := make([]Record, 0, len(raw))
	for _, r := range raw {
		if rec, ok := Parse(r); ok {
			out = append(out, rec)
		}
	}
	return out
}

// InitRan returns the timestamp of "Run /init as init process": when the
// kernel ran the init program, before its runtime and package initialisation.
func InitRan(recs []Record) (time.Duration, bool) {
	for _, r := range recs {
		if isRunInit(r.Msg) {
			return r.Stamp, true
		}
	}
	return 0, false
}

func isRunInit(msg string) bool {
	return strings.HasPrefix(msg, "Run ") && strings.HasSuffix(msg, " as init process")
}

// ClockStartedLate reports whether the kernel's clock, which its log
// timestamps and CLOCK_BOOTTIME share, started only after the early boot.
// x86 counts from the early TSC calibration when that succeeds; when it fails
// (under emulation it does in some boots, as the PIT is read against a
// clock that does not keep real time) the clock starts with the later
// calibration, the records before it carry jiffies-based stamps, and the
// first record after it goes back in time. Such a boot's times since kernel
// start leave out the early setup: about 0.3 s under TCG. known is false
// when the records do not reach back to the first one (a wrapped log).
func ClockStartedLate(recs []Record) (late, known bool) {
	if len(recs) == 0 || recs[0].Seq != 0 {
		return false, false
	}
	var prev time.Duration
	for _, r := range recs {
		if r.Stamp < prev {
			return true, true
		}
		if isRunInit(r.Msg) {
			break
		}
		prev = r.Stamp
	}
	return false, true
}

// ClockStart names what ClockStartedLate found, as the agent and the floor
// print it after "kernel_clock=": "late" or "early"; ok is false when unknown.
func ClockStart(recs []Record) (name string, ok bool) {
	late, known := ClockStartedLate(recs)
	switch {
	case !known:
		return "", false
	case late:
		return "late", true
	default:
		return "early", true
	}
}
