//go:build unix

package hubcli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file in the data folder that `etoile hub serve` holds an
// exclusive flock on for as long as it runs, with its pid inside. The
// admin commands do not take it: SQLite (WAL) lets them work beside the hub.
const LockFile = "serve.lock"

// lockData takes the data folder for one `hub serve`; the returned
// function releases it (the kernel does so too when the process dies).
func lockData(dir string) (func(), error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("hub data folder lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := "unknown"
			if b, err := os.ReadFile(path); err == nil {
				if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
					pid = strconv.Itoa(n)
				}
			}
			return nil, fmt.Errorf("data folder %s is in use by another etoile hub serve (pid %s): stop it first, or give this one another --data", dir, pid)
		}
		return nil, fmt.Errorf("hub data folder lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		// The pid stays in the file: only the flock says whether a hub runs.
		f.Close()
	}, nil
}
