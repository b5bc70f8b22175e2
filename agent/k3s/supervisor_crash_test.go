package k3s

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// panicky is a log handler that panics on one message (standing for a bug
// in what handles K3s's output lines) and keeps the others.
type panicky struct {
	on  string
	mu  *sync.Mutex
	got *[]string
}

func (h panicky) Enabled(context.Context, slog.Level) bool { return true }
func (h panicky) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.on {
		panic("a bug while handling a line of K3s's output")
	}
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.Key + "=" + a.Value.String()); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.got = append(*h.got, b.String())
	return nil
}
func (h panicky) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicky) WithGroup(string) slog.Handler      { return h }

// TestOutputHandlingCrashIsLoggedAndReadingGoesOn: a panic while K3s's
// output is read (PID 1's goroutine) is an error line naming where it
// happened; the agent lives on and K3s's later lines are still read (a
// K3s whose pipe is not read blocks on its next write).
func TestOutputHandlingCrashIsLoggedAndReadingGoesOn(t *testing.T) {
	root := fakeRoot(t)
	var (
		mu  sync.Mutex
		got []string
	)
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"agent"},
		Env: []string{"ETOILE_FAKE_K3S=pwrejected"}, StopTimeout: time.Second,
		Log: slog.New(panicky{on: "K3s keeps failing", mu: &mu, got: &got})}
	stop := runSupervisor(t, s, 30*time.Second)
	// pwrejected prints three lines; the first one's trouble panics.
	waitFor(t, "the lines after the crash", func() bool { return len(s.Logs()) >= 3 })
	_ = stop()
	mu.Lock()
	defer mu.Unlock()
	log := strings.Join(got, "\n")
	if !strings.Contains(log, "ERROR reading K3s's output crashed reason=a bug while handling a line of K3s's output") ||
		!strings.Contains(log, "k3s.(*Supervisor).noteTrouble") {
		t.Errorf("no error line with where it crashed:\n%s", log)
	}
}
