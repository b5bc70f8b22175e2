package boot

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etoile-os/etoile/agent/safego"
)

// What PID 1 does at the end of a shutdown, after the services stopped and
// every process was asked, then forced, to exit: the filesystems still
// mounted writable (a workload's persistent volume, a disk a pod mounted on
// the host) are unmounted, or remounted read-only when busy, so that their
// journal is clean; then the caches are synced; each step bounded, since a
// filesystem whose server is gone (NFS, iSCSI, a storage daemon just killed)
// can block for ever and must not keep the machine from rebooting.

// Proc is a process still running, for the shutdown's log.
type Proc struct {
	PID  int
	Comm string
}

// ProcessGrace is how long the processes have, after the SIGTERM at
// shutdown, before SIGKILL: Kubernetes's default terminationGracePeriodSeconds,
// which a pod would have from the kubelet's graceful node shutdown (that
// needs systemd, which Étoile does not run). The wait ends as soon as every
// process has exited.
const ProcessGrace = 30 * time.Second

// stopProcesses asks every process to stop (signal(SIGTERM)), waits until
// procs lists none or grace has passed, reaping meanwhile, then kills the
// rest (signal(SIGKILL)), saying which, and waits 2 s at most for them to
// go. It returns those still there after SIGKILL.
func stopProcesses(log *slog.Logger, procs func() []Proc, signal func(syscall.Signal), reap func(), grace time.Duration) []Proc {
	signal(syscall.SIGTERM)
	for deadline := time.Now().Add(grace); time.Now().Before(deadline) && len(procs()) > 0; {
		reap()
		time.Sleep(100 * time.Millisecond)
	}
	reap()
	if left := procs(); len(left) > 0 {
		log.Warn(fmt.Sprintf("processes still running %s after SIGTERM: killed", grace.Round(100*time.Millisecond)),
			"count", len(left), "processes", procNames(left))
		signal(syscall.SIGKILL)
	} else {
		return nil
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && len(procs()) > 0; {
		reap()
		time.Sleep(50 * time.Millisecond)
	}
	reap()
	return procs()
}

// procNames names ten of procs at most: comm[pid],…
func procNames(procs []Proc) string {
	var names []string
	for _, p := range procs[:min(len(procs), 10)] {
		names = append(names, fmt.Sprintf("%s[%d]", p.Comm, p.PID))
	}
	if len(procs) > 10 {
		names = append(names, fmt.Sprintf("and %d more", len(procs)-10))
	}
	return strings.Join(names, ",")
}

// pfKthread is the kernel's PF_KTHREAD flag in /proc/PID/stat's flags.
const pfKthread = 0x00200000

// userProcesses lists the processes of procDir (/proc) other than PID 1 and
// the kernel's threads: kill(-1, 0) cannot tell, as it counts kernel threads.
func userProcesses(procDir string) []Proc {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid pgrp session tty tpgid flags …": comm may
		// hold spaces and parentheses, so fields count from the last ')'.
		open, closing := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(string(stat[closing+1:]))
		if len(fields) < 7 {
			continue
		}
		flags, err := strconv.ParseUint(fields[6], 10, 64)
		if err != nil || flags&pfKthread != 0 {
			continue
		}
		out = append(out, Proc{PID: pid, Comm: string(stat[open+1 : closing])})
	}
	return out
}

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	Target string
	FSType string
	Source string
	RO     bool
}

// pseudoFS are the filesystems with nothing to write back: in memory, the
// kernel's own, or read-only by nature.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "tmpfs": true, "ramfs": true, "rootfs": true,
	"cgroup": true, "cgroup2": true, "securityfs": true, "debugfs": true, "tracefs": true, "bpf": true,
	"mqueue": true, "hugetlbfs": true, "pstore": true, "efivarfs": true, "configfs": true, "fusectl": true,
	"squashfs": true, "iso9660": true, "nsfs": true, "binfmt_misc": true, "autofs": true, "rpc_pipefs": true,
}

// parseMountinfo reads /proc/self/mountinfo's lines.
func parseMountinfo(data []byte) []Mount {
	var out []Mount
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 2 {
			continue
		}
		out = append(out, Mount{Target: unescapeMount(f[4]), FSType: g[0], Source: unescapeMount(g[1]),
			RO: slices.Contains(strings.Split(f[5], ","), "ro")})
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// writableMounts are the mounts the shutdown releases: writable, not the
// root, not in memory or the kernel's own; the machine's own disks first,
// then network filesystems, each the last mounted first (a mount on top of
// another goes before it). A dead NFS or CIFS server makes each of its
// mounts wait out its time, and the release's time is bounded as a whole:
// the local disks, whose data the machine holds, get theirs first. A local
// filesystem under a network mount is then busy and is remounted read-only,
// which is as safe for its data.
func writableMounts(ms []Mount) []Mount {
	var local, network []Mount
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		switch {
		case m.RO || m.Target == "/" || pseudoFS[m.FSType]:
		case networkFS(m.FSType):
			network = append(network, m)
		default:
			local = append(local, m)
		}
	}
	return append(local, network...)
}

// networkFS reports whether fstype is a filesystem served over the network.
func networkFS(fstype string) bool {
	switch fstype {
	case "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "9p", "glusterfs", "lustre", "afs", "ncpfs":
		return true
	}
	return strings.HasPrefix(fstype, "fuse.") // sshfs, s3fs, glusterfs's client…
}

// releaseWithin bounds the whole of releaseFilesystems.
var releaseWithin = 30 * time.Second

// Released says what releaseFilesystems did.
type Released struct {
	Unmounted []string // targets
	ReadOnly  []string // busy: remounted read-only
	Left      []string // neither, in time: "target (why)"
}

// releaseFilesystems unmounts each of ms, or remounts it read-only when it
// is busy, each step given within at most and the whole 30 s at most; what
// blocks longer is left (its goroutine stays blocked, the shutdown goes on)
// and said, and so are the other mounts of a source that blocked (the same
// dead server's).
//
// A panic in unmount or remountRO (logged on log) counts as that step's
// error.
func releaseFilesystems(log *slog.Logger, ms []Mount, unmount, remountRO func(target string) error, within time.Duration) Released {
	var r Released
	deadline := time.Now().Add(releaseWithin)
	stuck := map[string]bool{} // sources whose mount blocked
	bounded := func(f func(string) error, target string) (error, bool) {
		done := make(chan error, 1)
		go func() {
			defer func() {
				if p := recover(); p != nil {
					safego.Report(log, "releasing "+target, p)
					done <- fmt.Errorf("internal error (panic): %v", p)
				}
			}()
			done <- f(target)
		}()
		select {
		case err := <-done:
			return err, true
		case <-time.After(within):
			return nil, false
		}
	}
	for _, m := range ms {
		switch {
		case time.Now().After(deadline):
			r.Left = append(r.Left, m.Target+" (no time left)")
			continue
		case stuck[m.Source]:
			r.Left = append(r.Left, m.Target+" ("+m.Source+" did not answer for another mount)")
			continue
		}
		err, ok := bounded(unmount, m.Target)
		switch {
		case !ok:
			stuck[m.Source] = true
			r.Left = append(r.Left, m.Target+" (unmount did not return in "+within.String()+")")
			continue
		case err == nil:
			r.Unmounted = append(r.Unmounted, m.Target)
			continue
		}
		err, ok = bounded(remountRO, m.Target)
		switch {
		case !ok:
			stuck[m.Source] = true
			r.Left = append(r.Left, m.Target+" (read-only remount did not return in "+within.String()+")")
		case err != nil:
			r.Left = append(r.Left, m.Target+" ("+err.Error()+")")
		default:
			r.ReadOnly = append(r.ReadOnly, m.Target)
		}
	}
	return r
}

// syncWithin runs sync, waiting at most d for it; false when it did not
// return (a filesystem whose device or server no longer answers). A panic
// in sync is logged on log and ends the wait.
func syncWithin(log *slog.Logger, sync func(), d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer safego.Recover(log, "syncing the filesystems")
		sync()
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
