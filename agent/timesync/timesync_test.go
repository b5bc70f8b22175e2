package timesync

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etoile-os/etoile/internal/syncbuf"
)

// answers is a scripted set of NTP servers: offset per server, or an error.
type answers struct {
	mu    sync.Mutex
	by    map[string][]any // each call takes the next; the last repeats
	calls []string
}

func (a *answers) query(_ context.Context, server string) (time.Duration, time.Duration, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, server)
	list := a.by[server]
	if len(list) == 0 {
		return 0, 0, errors.New("no answer")
	}
	v := list[0]
	if len(list) > 1 {
		a.by[server] = list[1:]
	}
	if err, ok := v.(error); ok {
		return 0, 0, err
	}
	return v.(time.Duration), 10 * time.Millisecond, nil
}

func (a *answers) count() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.calls) }

func start(t *testing.T, clock *ManualClock, a *answers, servers []string, floor time.Time) (*Service, *syncbuf.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var logs syncbuf.Buffer
	s := Start(ctx, Options{
		Servers:    func() []string { return servers },
		Query:      a.query,
		Clock:      clock,
		Floor:      floor,
		Poll:       20 * time.Millisecond,
		Retry:      time.Millisecond,
		FirstRetry: time.Millisecond,
		// Warned after two failed rounds at least (three in
		// TestNoServerAnswersWarnsOnceThenRecovers).
		WarnAfter: time.Nanosecond,
		Log:       slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	return s, &logs
}

func waitSynced(t *testing.T, s *Service) {
	t.Helper()
	select {
	case <-s.Synced():
	case <-time.After(10 * time.Second):
		t.Fatalf("not synchronised: %+v", s.Status())
	}
}

func TestStepsLargeOffsetsAndSlewsSmallOnes(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := NewManualClock(build.Add(48 * time.Hour))
	// The first server is down; the second is 3 s ahead of us, then 40 ms.
	a := &answers{by: map[string][]any{"ntp.example.com": {3 * time.Second, 40 * time.Millisecond}}}
	s, logs := start(t, clock, a, []string{"down.example.com", "ntp.example.com"}, build)
	waitSynced(t, s)
	if s.Behind() {
		t.Error("Behind with a clock after the build time")
	}
	for a.count() < 5 {
		time.Sleep(time.Millisecond)
	}
	steps, slews, synced := clock.Record()
	if len(steps) != 1 || steps[0] != 3*time.Second {
		t.Errorf("steps %v, want one of 3s", steps)
	}
	if len(slews) == 0 || slews[0] != 40*time.Millisecond {
		t.Errorf("slews %v, want 40ms ones", slews)
	}
	if synced == 0 {
		t.Error("the kernel was never told the clock is synchronised")
	}
	st := s.Status()
	if !st.Synced || st.Server != "ntp.example.com" || st.Error != "" || len(st.Servers) != 2 {
		t.Errorf("status %+v", st)
	}
	if got := logs.String(); strings.Count(got, `msg="time synchronised"`) != 1 || !strings.Contains(got, "server=ntp.example.com offset=3s") {
		t.Errorf("log:\n%s", got)
	}
}

func TestClockBeforeBuildTimeIsSetToIt(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := NewManualClock(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) // a flat RTC battery
	a := &answers{by: map[string][]any{}}
	s, logs := start(t, clock, a, []string{DefaultServer}, build)
	if !s.Behind() {
		t.Error("Behind = false for a clock in 2000")
	}
	if now := clock.Now(); !now.Equal(build) {
		t.Errorf("clock %s, want the build time %s", now, build)
	}
	if !strings.Contains(logs.String(), "the clock was before the image's build time") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestNoServerAnswersWarnsOnceThenRecovers(t *testing.T) {
	clock := NewManualClock(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	a := &answers{by: map[string][]any{"ntp.example.com": {errors.New("i/o timeout"), errors.New("i/o timeout"), errors.New("i/o timeout"), 200 * time.Millisecond}}}
	s, logs := start(t, clock, a, []string{"ntp.example.com"}, time.Time{})
	waitSynced(t, s)
	got := logs.String()
	if n := strings.Count(got, "no NTP server answered"); n != 1 {
		t.Errorf("%d warnings for three failed rounds, want one:\n%s", n, got)
	}
	if !strings.Contains(got, "ntp.example.com: i/o timeout") || !strings.Contains(got, "time.servers") {
		t.Errorf("the warning names neither the server's failure nor the fix:\n%s", got)
	}
	// Once a server answers again, the console says so.
	after := got[strings.Index(got, "no NTP server answered"):]
	if !strings.Contains(after, `msg="time synchronised"`) {
		t.Errorf("no line after the recovery:\n%s", got)
	}
}

// TestFirstRoundsRetrySoon: before any server has answered, a failed round
// is tried again soon (FirstRetry, doubled), not after Retry: a lost packet
// at boot does not hold the clock, and K3s, for half a minute.
func TestFirstRoundsRetrySoon(t *testing.T) {
	clock := NewManualClock(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	a := &answers{by: map[string][]any{"ntp.example.com": {errors.New("i/o timeout"), errors.New("i/o timeout"), 200 * time.Millisecond}}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := Start(ctx, Options{
		Servers:    func() []string { return []string{"ntp.example.com"} },
		Query:      a.query,
		Clock:      clock,
		Retry:      time.Hour,
		FirstRetry: 10 * time.Millisecond,
	})
	waitSynced(t, s)
	if n := a.count(); n != 3 {
		t.Errorf("%d queries, want 3 (two failed, then the answer)", n)
	}
}

// TestFirstRetriesStillBackOff: a server that never answers is asked soon
// at first, then less and less often (Retry doubling towards Poll), not
// every Retry for ever.
func TestFirstRetriesStillBackOff(t *testing.T) {
	clock := NewManualClock(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	a := &answers{by: map[string][]any{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	Start(ctx, Options{
		Servers:    func() []string { return []string{"ntp.example.com"} },
		Query:      a.query,
		Clock:      clock,
		Poll:       time.Hour,
		Retry:      8 * time.Millisecond,
		FirstRetry: time.Millisecond,
	})
	// Waits of 1, 2, 4 ms, then 8, 16, 32… ms: about nine rounds in 400 ms
	// (fewer on a slow machine), against fifty at 8 ms each.
	time.Sleep(400 * time.Millisecond)
	if n := a.count(); n < 4 || n > 20 {
		t.Errorf("%d rounds in 400 ms, want the first three soon and then a backoff (about 9)", n)
	}
}
