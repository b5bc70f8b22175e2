// Package devread bounds the reads of block devices the agent does while
// it looks for its boot medium or config: a failing disk or CD can hold a
// read (or an open) for minutes, and the agent, PID 1, must go on without
// it. A device whose read did not end in time is skipped, and named once
// (Warn); while that read is still stuck, the device is skipped at once.
package devread

import (
	"fmt"
	"sync"
	"time"
)

// DefaultWait is the time a device's read is given when Reads.Wait is 0
// (the inventory's labels wait as long).
const DefaultWait = 5 * time.Second

// HungError is a device's read that did not end within the wait.
type HungError struct {
	Device string
	What   string // what was being read
	Wait   time.Duration
}

func (e *HungError) Error() string {
	return fmt.Sprintf("%s: reading %s did not end within %s: the device is skipped", e.Device, e.What, e.Wait)
}

// Reads runs device reads with a time limit. Its zero value waits
// DefaultWait and warns no one.
type Reads struct {
	mu     sync.Mutex
	wait   time.Duration
	warn   func(dev, what string, wait time.Duration)
	busy   map[string]bool // a read still blocked
	warned map[string]bool
}

// Set sets the wait (0: DefaultWait) and what is told, once per device,
// of a device skipped (nil: nothing).
func (r *Reads) Set(wait time.Duration, warn func(dev, what string, wait time.Duration)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wait, r.warn = wait, warn
}

// Do runs read, which reads device dev (what: what it reads, for the
// warning), and returns its error, or a *HungError when it did not end in
// time or an earlier read of dev is still blocked. A panic in read is its
// error (read parses what anyone who had the disk wrote).
func (r *Reads) Do(dev, what string, read func() error) error {
	r.mu.Lock()
	wait, warn := r.wait, r.warn
	if wait <= 0 {
		wait = DefaultWait
	}
	if r.busy[dev] {
		r.mu.Unlock()
		return &HungError{Device: dev, What: what, Wait: wait}
	}
	if r.busy == nil {
		r.busy, r.warned = map[string]bool{}, map[string]bool{}
	}
	r.busy[dev] = true
	r.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%s: reading %s panicked: %v", dev, what, p)
			}
			// No longer busy before the caller hears of it: a read of dev
			// right after this one must not find it still blocked.
			r.mu.Lock()
			delete(r.busy, dev)
			r.mu.Unlock()
			done <- err
		}()
		err = read()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	r.mu.Lock()
	first := !r.warned[dev]
	r.warned[dev] = true
	r.mu.Unlock()
	if first && warn != nil {
		warn(dev, what, wait)
	}
	return &HungError{Device: dev, What: what, Wait: wait}
}
