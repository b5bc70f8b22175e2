// Package countdown is for tests only: a context that a test cancels at a
// chosen point of the work under test, with no timing involved.
package countdown

import (
	"context"
	"sync/atomic"
)

// Ctx is a context whose Err answers nil Left times, then context.Canceled
// for good (a Ctrl-C at a chosen point inside a build step: the writers
// look at Err, never at Done). It counts every Err call.
type Ctx struct {
	context.Context
	left  atomic.Int64
	calls atomic.Int64
}

// New returns a Ctx that answers nil left times.
func New(left int64) *Ctx {
	c := &Ctx{Context: context.Background()}
	c.left.Store(left)
	return c
}

// Err is nil left times, then context.Canceled.
func (c *Ctx) Err() error {
	c.calls.Add(1)
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// Calls is how many times Err was asked.
func (c *Ctx) Calls() int64 { return c.calls.Load() }
