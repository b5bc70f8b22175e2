package kmod

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/internal/syncbuf"
)

// TestLoadCrashBeforeItsSlot: a panic in a load's goroutine before the load
// itself (its wait for a slot) is an error line naming the module and
// where; the other loads go on, and the load's bookkeeping is undone — a
// wait for the loads (Settle, LoadFixed) still ends, and the lock is free.
func TestLoadCrashBeforeItsSlot(t *testing.T) {
	mods := t.TempDir()
	dep := "kernel/drivers/a.ko:\nkernel/drivers/b.ko:\n"
	for name, body := range map[string]string{"modules.dep": dep, "modules.alias": ""} {
		if err := os.WriteFile(filepath.Join(mods, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"kernel/drivers/a.ko", "kernel/drivers/b.ko"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mods, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mods, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec := &Recorder{}
	var log syncbuf.Buffer
	c, err := NewColdplug(t.TempDir(), mods, rec, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.beforeSlot = func(module string) {
		if module == "a" {
			var m map[string]int
			m[module]++ // a runtime panic
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.LoadFixed(context.Background(), []string{"a", "b"})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("LoadFixed did not return after a load crashed")
	}
	if got := rec.Loaded(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("loaded %q, want b (a crashed)", got)
	}
	out := log.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, `msg="loading module a crashed"`) ||
		!strings.Contains(out, "assignment to entry in nil map") || !strings.Contains(out, "kmod.TestLoadCrashBeforeItsSlot") {
		t.Errorf("no error line for the crash:\n%s", out)
	}
	if n := c.pending.Load(); n != 0 {
		t.Errorf("pending = %d after every load ended", n)
	}
	if !c.mu.TryLock() {
		t.Fatal("the coldplug's lock is still held after the crash")
	}
	defer c.mu.Unlock()
	for p, n := range c.inFlight {
		if n != 0 {
			t.Errorf("inFlight[%d] = %d after every load ended", p, n)
		}
	}
}
