package k3s

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// NoFileLimit is the open-file limit K3s runs with, as its systemd unit
// gives it (LimitNOFILE=1048576; LimitNPROC and LimitCORE are infinity):
// the API server, etcd and containerd hold many files, and containers
// inherit the limit (Elasticsearch's bootstrap check wants 65535).
const NoFileLimit = 1048576

// raiseLimits gives this process — PID 1 on a node, whose limits K3s and
// every container inherit — K3s's limits. Where the hard limits cannot be
// raised (no CAP_SYS_RESOURCE: a container, a test), the soft limits are
// raised to the hard ones, and the error says what was missed.
// syscall.Setrlimit, not unix's, for the file limit: it tells os/exec to
// stop handing children the original soft limit.
func raiseLimits() error {
	var errs []error
	set := func(name string, res int, want uint64) {
		var cur unix.Rlimit
		if err := unix.Getrlimit(res, &cur); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		if cur.Cur == want && cur.Max == want {
			return
		}
		try := func(lim unix.Rlimit) error {
			if res == unix.RLIMIT_NOFILE {
				return syscall.Setrlimit(res, &syscall.Rlimit{Cur: lim.Cur, Max: lim.Max})
			}
			return unix.Prlimit(0, res, &lim, nil)
		}
		raise := try(unix.Rlimit{Cur: want, Max: want})
		if raise == nil {
			return
		}
		if err := try(unix.Rlimit{Cur: cur.Max, Max: cur.Max}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		errs = append(errs, fmt.Errorf("%s kept at the hard limit %d (raising it to %d: %w)", name, cur.Max, want, raise))
	}
	set("open files", unix.RLIMIT_NOFILE, NoFileLimit)
	set("processes", unix.RLIMIT_NPROC, unix.RLIM_INFINITY)
	set("core size", unix.RLIMIT_CORE, unix.RLIM_INFINITY)
	return errors.Join(errs...)
}
