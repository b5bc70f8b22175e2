package k3s

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// NoFileLimit is the open-file limit K3s runs with, as its systemd unit
// gives it (LimitNOFILE=1048576; LimitNPROC is infinity): the API server,
// etcd and containerd hold many files, and containers inherit the limit
// (Elasticsearch's bootstrap check wants 65535).
const NoFileLimit = 1048576

// The core file size K3s runs with, which every container inherits: none
// (soft limit 0) unless a container raises it itself (ulimit -c unlimited:
// the hard limit is infinity), as on Talos. K3s's systemd unit gives
// LimitCORE=infinity, but there a distribution's core_pattern (a pipe to
// systemd-coredump) bounds what is kept; with the kernel's default pattern
// ("core", which Étoile leaves) a crashing container's process would write
// its whole memory into its root filesystem, which lives in RAM here. A
// machine config that sets sysctls: {kernel/core_pattern: …} to a folder a
// pod mounts, and a pod that raises its own limit, still get cores.
const (
	coreSoftLimit = 0
	coreHardLimit = unix.RLIM_INFINITY
)

// raiseLimits gives this process — PID 1 on a node, whose limits K3s and
// every container inherit — K3s's limits. Where the hard limits cannot be
// raised (no CAP_SYS_RESOURCE: a container, a test), the soft limits are
// raised (the core size's lowered) within the hard ones, and the error says
// what was missed. syscall.Setrlimit, not unix's, for the file limit: it
// tells os/exec to stop handing children the original soft limit.
func raiseLimits() error {
	var errs []error
	set := func(name string, res int, soft, hard uint64) {
		var cur unix.Rlimit
		if err := unix.Getrlimit(res, &cur); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		if cur.Cur == soft && cur.Max == hard {
			return
		}
		try := func(lim unix.Rlimit) error {
			if res == unix.RLIMIT_NOFILE {
				return syscall.Setrlimit(res, &syscall.Rlimit{Cur: lim.Cur, Max: lim.Max})
			}
			return unix.Prlimit(0, res, &lim, nil)
		}
		raise := try(unix.Rlimit{Cur: soft, Max: hard})
		if raise == nil {
			return
		}
		// The hard limit kept: the soft one as wanted, at most the hard one.
		if err := try(unix.Rlimit{Cur: min(soft, cur.Max), Max: cur.Max}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		errs = append(errs, fmt.Errorf("%s kept at the hard limit %d (raising it to %d: %w)", name, cur.Max, hard, raise))
	}
	set("open files", unix.RLIMIT_NOFILE, NoFileLimit, NoFileLimit)
	set("processes", unix.RLIMIT_NPROC, unix.RLIM_INFINITY, unix.RLIM_INFINITY)
	set("core size", unix.RLIMIT_CORE, coreSoftLimit, coreHardLimit)
	return errors.Join(errs...)
}
