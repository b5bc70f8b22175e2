package boot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// NewLogger returns a logger that writes one line per record in the form the
// console shows and tests grep:
//
//	etoile: step=drivers t=0.52s took=110ms
//	etoile: module loaded module=virtio_pci took=3.1ms for=modalias
//	etoile: warning: module not in image module=e1000
//
// A record with an empty message prints only its attributes. A nil level
// is slog.LevelInfo.
//
// A line is written while a lock is held, to keep lines whole: for PID 1, w
// must not block (a console that takes no output would hold every
// goroutine that logs), so its consoles are behind console.Queued and the
// log in memory is written first.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	if level == nil {
		level = slog.LevelInfo
	}
	return slog.New(&lineHandler{w: w, level: level, mu: &sync.Mutex{}})
}

type lineHandler struct {
	w     io.Writer
	level slog.Leveler
	mu    *sync.Mutex
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("etoile:")
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString(" error:")
	case r.Level >= slog.LevelWarn:
		b.WriteString(" warning:")
	case r.Level < slog.LevelInfo:
		b.WriteString(" debug:")
	}
	if r.Message != "" {
		b.WriteString(" " + r.Message)
	}
	write := func(a slog.Attr) bool {
		if a.Equal(slog.Attr{}) {
			return true
		}
		b.WriteString(" " + a.Key + "=" + formatValue(a.Value.Resolve()))
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	if r.Level < slog.LevelInfo {
		// Debug lines (etoile.debug) say when they happened, so that a boot's
		// critical path can be read from the console alone.
		fmt.Fprintf(&b, " at=%.3fs", BootClock{}.SinceBoot().Seconds())
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

// WithGroup is not used by the agent; groups are flattened.
func (h *lineHandler) WithGroup(string) slog.Handler { return h }

// Unblocked returns a logger whose calls return once their line is handled
// by log, or after wait if it is not by then: what must go on whatever
// becomes of the log's writer (the shutdown) logs through it. While a line
// is still held, the lines after it do not wait at all.
func Unblocked(log *slog.Logger, wait time.Duration) *slog.Logger {
	return slog.New(&unblockedHandler{inner: log.Handler(), wait: wait, held: new(atomic.Int32)})
}

type unblockedHandler struct {
	inner slog.Handler
	wait  time.Duration
	held  *atomic.Int32 // lines handed to inner and not handled yet
}

func (h *unblockedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *unblockedHandler) Handle(ctx context.Context, r slog.Record) error {
	behind := h.held.Add(1) > 1
	r = r.Clone() // handled after Handle may have returned
	done := make(chan error, 1)
	go func() {
		defer h.held.Add(-1)
		defer func() {
			// In a goroutine of its own, a panic would end PID 1.
			if p := recover(); p != nil {
				done <- fmt.Errorf("logging: %v", p)
			}
		}()
		done <- h.inner.Handle(ctx, r)
	}()
	if behind {
		return nil
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return nil
	}
}

func (h *unblockedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(as)
	return &c
}

func (h *unblockedHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}

func formatValue(v slog.Value) string {
	var s string
	switch v.Kind() {
	case slog.KindDuration:
		s = v.Duration().String()
	case slog.KindTime:
		s = v.Time().UTC().Format(time.RFC3339)
	default:
		s = fmt.Sprint(v.Any())
	}
	if s == "" || strings.ContainsAny(s, " \t\n\"=\\") || !strconv.CanBackquote(s) {
		return strconv.Quote(s)
	}
	return s
}
