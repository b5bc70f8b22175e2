package kmod

import "golang.org/x/sys/unix"

// setThreadNice sets one thread's nice value: on Linux it is a per-thread
// attribute, and setpriority(PRIO_PROCESS, tid) sets only that thread's
// (setpriority(2), NOTES).
func setThreadNice(tid, nice int) error { return unix.Setpriority(unix.PRIO_PROCESS, tid, nice) }

func gettid() int { return unix.Gettid() }
