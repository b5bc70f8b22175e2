package boot

import "github.com/etoile-os/etoile/agent/safego"

// locked is safego.Locked: a panic under the lock leaves it usable for the
// step or goroutine that recovers it (the status, resolv.conf and the ready
// line take these locks).
var locked = safego.Locked
