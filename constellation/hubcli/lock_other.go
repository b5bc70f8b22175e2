//go:build !unix

package hubcli

// LockFile is the lock file's name in the data folder (unused here).
const LockFile = "serve.lock"

// lockData is a no-op where flock is missing.
func lockData(string) (func(), error) { return func() {}, nil }
