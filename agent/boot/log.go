package boot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
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
