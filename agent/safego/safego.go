// Package safego runs the agent's goroutines so that a panic in one is
// logged, never fatal: the agent is PID 1, and a panic that escapes any of
// its goroutines ends it, which panics the kernel. The crash is printed as
// an error line (`etoile: error: … crashed reason=… stack=…`, with the
// boot's logger) naming what crashed and where, and the goroutine's work
// ends (Go) or starts again (Loop).
package safego

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Frames is how many stack frames, from where the panic happened, the
// error line shows.
const Frames = 6

// Recover, deferred, turns a panic into an error line naming what crashed:
//
//	defer safego.Recover(log, "following the links' carrier")
//
// It reports whether there was one (false when the function returned).
func Recover(log *slog.Logger, what string) bool {
	p := recover()
	if p == nil {
		return false
	}
	Report(log, what, p)
	return true
}

// Report logs p, a value recovered from a panic in what, as an error line
// with the first frames of the stack that panicked. It must be called from
// the deferred function that recovered p, for the stack to be the panic's.
func Report(log *slog.Logger, what string, p any) {
	if log == nil {
		log = slog.Default()
	}
	log.Error(what+" crashed", "reason", fmt.Sprint(p), "stack", Stack(Frames),
		"fix", "report this as a bug with this line; the agent goes on")
}

// Line is the console line Report's logger prints for p, for code that
// writes to the consoles itself rather than through the boot's logger. Like
// Report, it must be called from the deferred function that recovered p.
func Line(what string, p any) string {
	return fmt.Sprintf("etoile: error: %s crashed reason=%q stack=%q fix=%q", what, fmt.Sprint(p), Stack(Frames),
		"report this as a bug with this line; the agent goes on")
}

// Stack is the panicking goroutine's stack as one line, "func (file:line)"
// for up to n frames from where the panic happened (the runtime's own
// panic frames left out), or from Stack's caller when there is no panic.
func Stack(n int) string {
	pcs := make([]uintptr, 64)
	pcs = pcs[:runtime.Callers(2, pcs)]
	var all []runtime.Frame
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		all = append(all, f)
		if !more {
			break
		}
	}
	// After runtime.gopanic come the frames of the code that panicked
	// (after the runtime's own: a nil dereference's sigpanic, an index's
	// goPanicIndex).
	start := 0
	for i, f := range all {
		if f.Function == "runtime.gopanic" {
			start = i + 1
			break
		}
	}
	for start < len(all)-1 && strings.HasPrefix(all[start].Function, "runtime.") {
		start++
	}
	var out []string
	for _, f := range all[start:] {
		if len(out) == n || f.Function == "runtime.goexit" {
			break
		}
		fn := f.Function // github.com/etoile-os/etoile/agent/network.apply: network.apply
		if i := strings.LastIndexByte(fn, '/'); i >= 0 {
			fn = fn[i+1:]
		}
		out = append(out, fmt.Sprintf("%s (%s:%d)", fn, filepath.Base(f.File), f.Line))
	}
	return strings.Join(out, " < ")
}

// Go runs f in a goroutine of its own; a panic in it is logged (Recover)
// and ends it.
func Go(log *slog.Logger, what string, f func()) {
	go Run(log, what, f)
}

// Run runs f; a panic in it is logged (Recover) and Run returns. It
// reports whether f panicked.
func Run(log *slog.Logger, what string, f func()) (crashed bool) {
	defer func() {
		if p := recover(); p != nil {
			Report(log, what, p)
			crashed = true
		}
	}()
	f()
	return false
}

// Loop runs f in a goroutine of its own, and again wait after each panic
// (twice as long each time, up to 10 minutes) until ctx ends; it ends when
// f returns without one.
func Loop(ctx context.Context, log *slog.Logger, what string, wait time.Duration, f func(context.Context)) {
	if wait <= 0 {
		wait = time.Second
	}
	go func() {
		for ctx.Err() == nil {
			if !Run(log, what, func() { f(ctx) }) {
				return
			}
			if log == nil {
				log = slog.Default()
			}
			log.Warn(what+": starting again", "in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 10*time.Minute)
		}
	}()
}

// Locked runs f with mu held; a panic in f unlocks mu on its way up, so
// that whatever recovers it (Go, Run, a step's recover) leaves the lock
// usable, rather than every later caller waiting for ever.
func Locked(mu *sync.Mutex, f func()) {
	mu.Lock()
	defer mu.Unlock()
	f()
}
