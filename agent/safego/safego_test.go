package safego

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/internal/syncbuf"
)

func logger(b *syncbuf.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

//go:noinline
func indexOutOfRange(s []int, i int) int { return s[i] }

func TestGoLogsAPanicWithWhereItHappened(t *testing.T) {
	var b syncbuf.Buffer
	done := make(chan struct{})
	Go(logger(&b), "the widget watch", func() {
		defer close(done)
		indexOutOfRange(nil, 3)
	})
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(b.String(), "crashed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := b.String()
	for _, want := range []string{"level=ERROR", `msg="the widget watch crashed"`, "index out of range",
		"safego.indexOutOfRange (safego_test.go:", "safego.TestGoLogsAPanicWithWhereItHappened.func1"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// The stack starts where the panic happened, not in the runtime or here.
	if i := strings.Index(out, "stack="); i < 0 || strings.Contains(out[i:i+40], "runtime.") || strings.Contains(out, "safego.Report") {
		t.Errorf("stack does not start at the panic:\n%s", out)
	}
}

func TestRecoverDeferred(t *testing.T) {
	var b syncbuf.Buffer
	func() {
		defer Recover(logger(&b), "step")
		panic("boom")
	}()
	if !strings.Contains(b.String(), `msg="step crashed" reason=boom`) {
		t.Errorf("log: %s", b.String())
	}
	b = syncbuf.Buffer{}
	func() { defer Recover(logger(&b), "step") }()
	if b.String() != "" {
		t.Errorf("no panic, yet: %s", b.String())
	}
}

func TestLoopStartsAgainAfterAPanic(t *testing.T) {
	var b syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := make(chan int, 10)
	n := 0
	Loop(ctx, logger(&b), "the loop", time.Millisecond, func(context.Context) {
		n++
		runs <- n
		if n < 3 {
			panic("again")
		}
	})
	for want := 1; want <= 3; want++ {
		select {
		case got := <-runs:
			if got != want {
				t.Fatalf("run %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d never came:\n%s", want, b.String())
		}
	}
	select {
	case got := <-runs:
		t.Fatalf("run %d after one that returned", got)
	case <-time.After(50 * time.Millisecond):
	}
	if c := strings.Count(b.String(), "the loop crashed"); c != 2 {
		t.Errorf("%d crash lines, want 2:\n%s", c, b.String())
	}
}
