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
	devs   map[string]*device // the devices with a read not ended
	warned map[string]bool
}

// device is the reads of one device that have not ended.
type device struct {
	reading int           // reads not ended
	hung    int           // of those, the ones past their wait
	changed chan struct{} // closed (and replaced) when a read ends or passes its wait
}

// flight is one read's state, under Reads.mu.
type flight struct {
	ended, hung bool
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
// time or an earlier read of dev is still blocked past its wait. A read of
// dev still within its wait (two probes of a disk at once) is not a hung
// one: it is waited for (at most until its own wait ends), then read runs
// with the whole wait. The result is read's own, not shared: each read
// fills its caller's variables, and two callers may read different things
// of a device. A panic in read is its error (read parses what anyone who
// had the disk wrote).
func (r *Reads) Do(dev, what string, read func() error) error {
	r.mu.Lock()
	wait, warn := r.wait, r.warn
	if wait <= 0 {
		wait = DefaultWait
	}
	if r.devs == nil {
		r.devs, r.warned = map[string]*device{}, map[string]bool{}
	}
	// Waits once, for the first of the reads in progress to end or to
	// pass its wait (each does within the wait from its start, so this
	// is bounded by wait); then reads beside any read that came meanwhile.
	for waited := false; ; waited = true {
		d := r.devs[dev]
		if d != nil && d.hung > 0 {
			r.mu.Unlock()
			return &HungError{Device: dev, What: what, Wait: wait}
		}
		if d == nil || d.reading == 0 || waited {
			break
		}
		changed := d.changed
		r.mu.Unlock()
		<-changed
		r.mu.Lock()
	}
	d := r.devs[dev]
	if d == nil {
		d = &device{changed: make(chan struct{})}
		r.devs[dev] = d
	}
	d.reading++
	this := &flight{}
	r.mu.Unlock()
	// notify wakes the callers waiting for dev; r.mu held.
	notify := func() {
		close(d.changed)
		d.changed = make(chan struct{})
	}
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%s: reading %s panicked: %v", dev, what, p)
			}
			// Ended before the caller hears of it: a read of dev right
			// after this one must not find it still blocked.
			r.mu.Lock()
			this.ended = true
			d.reading--
			if this.hung {
				d.hung--
			}
			if d.reading == 0 && r.devs[dev] == d {
				delete(r.devs, dev)
			}
			notify()
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
	if this.ended { // it ended as the wait did
		r.mu.Unlock()
		return <-done
	}
	this.hung = true
	d.hung++
	notify()
	first := !r.warned[dev]
	r.warned[dev] = true
	r.mu.Unlock()
	if first && warn != nil {
		warn(dev, what, wait)
	}
	return &HungError{Device: dev, What: what, Wait: wait}
}
