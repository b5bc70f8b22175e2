package boot

import "sync"

// locked runs f with mu held; a panic in f unlocks mu on its way up, so
// that the step or goroutine that recovers it leaves the lock usable (the
// status, resolv.conf and the ready line take these locks).
func locked(mu *sync.Mutex, f func()) {
	mu.Lock()
	defer mu.Unlock()
	f()
}
