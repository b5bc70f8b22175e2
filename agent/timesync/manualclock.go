package timesync

import (
	"sync"
	"time"
)

// ManualClock is a Clock that only records what it is asked: a stand-in
// for the kernel's clock in tests, which must never change the host's.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	steps  []time.Duration
	slews  []time.Duration
	synced int
}

// NewManualClock returns a ManualClock reading now.
func NewManualClock(now time.Time) *ManualClock { return &ManualClock{now: now} }

// Now implements Clock.
func (c *ManualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// Step implements Clock: the clock moves by d.
func (c *ManualClock) Step(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.steps = append(c.steps, d)
	return nil
}

// Slew implements Clock: recorded only.
func (c *ManualClock) Slew(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slews = append(c.slews, d)
	return nil
}

// MarkSynced implements Clock: counted.
func (c *ManualClock) MarkSynced(time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.synced++
	return nil
}

// Record returns the steps and slews asked so far and how many times the
// clock was marked synchronised.
func (c *ManualClock) Record() (steps, slews []time.Duration, synced int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.steps...), append([]time.Duration(nil), c.slews...), c.synced
}
