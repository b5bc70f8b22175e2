package k3s

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// leftBehind are the process groups of K3s runs that did not end after
// SIGKILL (LeftBehind: a process stuck in the kernel). While one of their
// processes lives, no K3s is started beside it: it still holds K3s's ports
// (6443, 10250), its data folder's locks and its containerd socket, and a
// second K3s would only fail with words that hide the cause.
var leftBehind struct {
	mu    sync.Mutex
	pgids []int
}

// noteLeftBehind records K3s's process group pgid as left behind.
func noteLeftBehind(pgid int) {
	leftBehind.mu.Lock()
	defer leftBehind.mu.Unlock()
	if !slices.Contains(leftBehind.pgids, pgid) {
		leftBehind.pgids = append(leftBehind.pgids, pgid)
	}
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
		state, group, ok := statStateGroup(b)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		if slices.Contains(leftBehind.pgids, group) {
			p, _ := strconv.Atoi(filepath.Base(filepath.Dir(st)))
			live[group] = p
		}
	}
	leftBehind.pgids = slices.DeleteFunc(leftBehind.pgids, func(g int) bool { _, ok := live[g]; return !ok })
	if len(leftBehind.pgids) == 0 {
		return 0, 0
	}
	g := leftBehind.pgids[0]
	return g, live[g]
}

// statStateGroup reads a process's state and process group from its
// /proc/PID/stat: "pid (comm) state ppid pgrp …", where comm may hold
// spaces and parentheses (the last ')' ends it).
func statStateGroup(b []byte) (state byte, pgrp int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	g, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], g, true
}
