package k3s

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// leftBehind are the process groups of K3s runs that did not end after
// SIGKILL (LeftBehind: a process stuck in the kernel). While one of their
// processes lives, no K3s is started beside it: it still holds K3s's ports
// (6443, 10250), its data folder's locks and its containerd socket, and a
// second K3s would only fail with words that hide the cause.
//
// A group is known by its number and the moment it was left behind: its
// processes all started before. Once they have all ended, the kernel may
// give the number to a new group (a container's process calling setsid),
// which started after, and is not K3s's.
var leftBehind struct {
	mu     sync.Mutex
	pgids  []int
	before map[int]uint64 // group → clock ticks since boot when it was left behind
}

// noteLeftBehind records K3s's process group pgid as left behind.
func noteLeftBehind(pgid int) {
	leftBehind.mu.Lock()
	defer leftBehind.mu.Unlock()
	if leftBehind.before == nil {
		leftBehind.before = map[int]uint64{}
	}
	if !slices.Contains(leftBehind.pgids, pgid) {
		leftBehind.pgids = append(leftBehind.pgids, pgid)
	}
	leftBehind.before[pgid] = ticksSinceBoot() + 1
}

// ticksSinceBoot is the time since boot in the clock ticks of
// /proc/PID/stat's start times (USER_HZ, 100 on Linux); the largest value
// when it cannot be read, so that no live process of a group is missed.
func ticksSinceBoot() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return ^uint64(0) - 1
	}
	return uint64(ts.Sec)*100 + uint64(ts.Nsec)/10_000_000
}

// stillBehind returns a process group left behind that still has a live
// process (not a zombie) in proc (/proc), and that process; 0, 0 when there
// is none. Groups whose processes have all ended are forgotten.
func stillBehind(proc string) (pgid, pid int) {
	leftBehind.mu.Lock()
	defer leftBehind.mu.Unlock()
	if len(leftBehind.pgids) == 0 {
		return 0, 0
	}
	live := map[int]int{} // group → a live process of it
	stats, _ := filepath.Glob(filepath.Join(proc, "[0-9]*", "stat"))
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue // ended meanwhile
		}
		state, group, start, ok := statStateGroup(b)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		if slices.Contains(leftBehind.pgids, group) && start <= leftBehind.before[group] {
			p, _ := strconv.Atoi(filepath.Base(filepath.Dir(st)))
			live[group] = p
		}
	}
	leftBehind.pgids = slices.DeleteFunc(leftBehind.pgids, func(g int) bool {
		if _, ok := live[g]; ok {
			return false
		}
		delete(leftBehind.before, g)
		return true
	})
	if len(leftBehind.pgids) == 0 {
		return 0, 0
	}
	g := leftBehind.pgids[0]
	return g, live[g]
}

// statStateGroup reads a process's state, process group and start time
// (clock ticks since boot) from its /proc/PID/stat: "pid (comm) state ppid
// pgrp … starttime (the 22nd field) …", where comm may hold spaces and
// parentheses (the last ')' ends it).
func statStateGroup(b []byte) (state byte, pgrp int, start uint64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, 0, false
	}
	g, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return 0, 0, 0, false
	}
	st, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, 0, false
	}
	return f[0][0], g, st, true
}
