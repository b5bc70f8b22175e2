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

// answers is a scripted set of NTP servers: offset per server, or an error,
// or a func giving the offset at the time of the query (a server whose time
// is off by a fixed amount, however the clock moves), or a channel: no
// answer until it is closed (a server that stops answering, and ignores
// its deadline).
type answers struct {
	mu    sync.Mutex
	by    map[string][]any // each call takes the next; the last repeats
	calls []string
}

func (a *answers) query(_ context.Context, server string) (time.Duration, time.Duration, error) {
	a.mu.Lock()
	a.calls = append(a.calls, server)
	list := a.by[server]
	var v any
	if len(list) > 0 {
		v = list[0]
		if len(list) > 1 {
			a.by[server] = list[1:]
		}
	}
	a.mu.Unlock()
	switch v := v.(type) {
	case nil:
		return 0, 0, errors.New("no answer")
	case error:
		return 0, 0, v
	case func() time.Duration:
		return v(), 10 * time.Millisecond, nil
	case chan struct{}:
		<-v
		return 0, 0, errors.New("no answer")
	}
	return v.(time.Duration), 10 * time.Millisecond, nil
}

// asked is how many times server was asked.
func (a *answers) asked(server string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if c == server {
			n++
		}
	}
	return n
}

func (a *answers) count() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.calls) }

func start(t *testing.T, clock *ManualClock, a *answers, servers []string, floor time.Time, more ...func(*Options)) (*Service, *syncbuf.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var logs syncbuf.Buffer
	opts := Options{
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
	}
	for _, f := range more {
		f(&opts)
	}
	return Start(ctx, opts), &logs
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

func waitCalls(t *testing.T, a *answers, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d queries, want %d", a.count(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOneWildAnswerAfterSyncMovesNothing: once synchronised, a server that
// says the clock is two hours off, once, does not step a running cluster's
// clock; the next answer, back to normal, is taken.
func TestOneWildAnswerAfterSyncMovesNothing(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := NewManualClock(build.Add(48 * time.Hour))
	a := &answers{by: map[string][]any{"ntp.example.com": {time.Millisecond, 2 * time.Hour, 3 * time.Millisecond}}}
	s, logs := start(t, clock, a, []string{"ntp.example.com"}, build)
	waitSynced(t, s)
	waitCalls(t, a, 4)
	if steps, _, _ := clock.Record(); len(steps) != 0 {
		t.Errorf("steps %v after one wild answer", steps)
	}
	if !strings.Contains(logs.String(), "stepped when another answer agrees") {
		t.Errorf("the held step is not logged:\n%s", logs.String())
	}
}

// TestAStepConfirmedIsTaken: the next answer agreeing, the step is made,
// backwards too.
func TestAStepConfirmedIsTaken(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := NewManualClock(build.Add(48 * time.Hour))
	a := &answers{by: map[string][]any{"ntp.example.com": {time.Millisecond, -2 * time.Second, -2*time.Second + 20*time.Millisecond, time.Millisecond}}}
	s, _ := start(t, clock, a, []string{"ntp.example.com"}, build)
	waitSynced(t, s)
	waitCalls(t, a, 4)
	if steps, _, _ := clock.Record(); len(steps) != 1 || steps[0] != -2*time.Second+20*time.Millisecond {
		t.Errorf("steps %v, want the confirmed -1.98s once", steps)
	}
}

// TestAnswerBeforeTheBuildTimeIsRefused: a server twenty years behind
// cannot set the clock before the image was built, even before the first
// synchronisation.
func TestAnswerBeforeTheBuildTimeIsRefused(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := NewManualClock(build.Add(48 * time.Hour))
	a := &answers{by: map[string][]any{"wild.example.com": {-20 * 365 * 24 * time.Hour}}}
	s, _ := start(t, clock, a, []string{"wild.example.com"}, build)
	waitCalls(t, a, 3)
	if steps, _, _ := clock.Record(); len(steps) != 0 {
		t.Errorf("steps %v", steps)
	}
	if st := s.Status(); st.Synced || !strings.Contains(st.Error, "before the image's build time") {
		t.Errorf("status %+v", st)
	}
}

// TestKissOfDeathDenyIsNotAskedAgain: a server that answers DENY is left
// out of the next rounds; the others are asked.
func TestKissOfDeathDenyIsNotAskedAgain(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	a := &answers{by: map[string][]any{"deny.example.com": {kissError{code: "DENY"}}, "ok.example.com": {time.Millisecond}}}
	s, logs := start(t, clock, a, []string{"deny.example.com", "ok.example.com"}, time.Time{})
	waitSynced(t, s)
	waitCalls(t, a, 6)
	a.mu.Lock()
	denied := 0
	for _, c := range a.calls {
		if c == "deny.example.com" {
			denied++
		}
	}
	a.mu.Unlock()
	if denied != 1 {
		t.Errorf("the DENY server was asked %d times, want once", denied)
	}
	if !strings.Contains(logs.String(), "kiss_code=DENY") {
		t.Errorf("the refusal is not logged:\n%s", logs.String())
	}
}

// TestStatusSaysFailingAfterSync: servers failing after a first answer
// show in the status (the clock runs on its own), not only before it.
func TestStatusSaysFailingAfterSync(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	a := &answers{by: map[string][]any{"ntp.example.com": {time.Millisecond, errors.New("i/o timeout")}}}
	s, _ := start(t, clock, a, []string{"ntp.example.com"}, time.Time{})
	waitSynced(t, s)
	waitCalls(t, a, 4)
	if st := s.Status(); !st.Synced || !st.Failing || !strings.Contains(st.Error, "i/o timeout") {
		t.Errorf("status %+v, want synchronised once and failing now", st)
	}
}

// TestNoCorrectionAfterTheServiceStops: an answer that comes after the
// service was stopped (time.disabled applied meanwhile) is not used.
func TestNoCorrectionAfterTheServiceStops(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	asked := make(chan struct{})
	s := Start(ctx, Options{
		Servers: func() []string { return []string{"slow.example.com"} },
		Query: func(context.Context, string) (time.Duration, time.Duration, error) {
			close(asked)
			cancel() // stopped while the query is out
			return 5 * time.Second, time.Millisecond, nil
		},
		Clock: clock,
	})
	<-asked
	time.Sleep(50 * time.Millisecond)
	if steps, _, _ := clock.Record(); len(steps) != 0 || s.Status().Synced {
		t.Errorf("steps %v after the stop, status %+v", steps, s.Status())
	}
}

// TestAWrongFirstServerDoesNotOutvoteTheOthers: after the first
// synchronisation, the first server saying +3 h (every time) is not taken
// when the next one answers without a step; one flipping between ±1 h
// neither.
func TestAWrongFirstServerDoesNotOutvoteTheOthers(t *testing.T) {
	for name, wild := range map[string][]any{"consistent": {3 * time.Hour}, "flipping": {time.Hour, -time.Hour}} {
		t.Run(name, func(t *testing.T) {
			clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
			script := []any{time.Millisecond}
			for range 20 {
				script = append(script, wild...)
			}
			a := &answers{by: map[string][]any{"wrong.example.com": script, "good.example.com": {2 * time.Millisecond}}}
			s, _ := start(t, clock, a, []string{"wrong.example.com", "good.example.com"}, time.Time{})
			waitSynced(t, s)
			waitCalls(t, a, 12)
			if steps, _, _ := clock.Record(); len(steps) != 0 {
				t.Errorf("steps %v", steps)
			}
		})
	}
}

// TestStepAgreedWithinTheAnswersErrors: answers jittering by more than the
// step threshold but within their error bounds agree, and the step is taken.
func TestStepAgreedWithinTheAnswersErrors(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	var got []time.Duration
	q := []time.Duration{time.Millisecond, 5 * time.Second, 5*time.Second + 200*time.Millisecond}
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := Start(ctx, Options{
		Servers: func() []string { return []string{"lte.example.com"} },
		Query: func(context.Context, string) (time.Duration, time.Duration, error) {
			mu.Lock()
			defer mu.Unlock()
			o := q[min(len(got), len(q)-1)]
			got = append(got, o)
			return o, 150 * time.Millisecond, nil // a slow link's root distance
		},
		Clock: clock, Poll: 20 * time.Millisecond, Retry: time.Millisecond, FirstRetry: time.Millisecond,
	})
	waitSynced(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if steps, _, _ := clock.Record(); len(steps) > 0 {
			if steps[0] != 5*time.Second+200*time.Millisecond {
				t.Errorf("stepped by %v", steps[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("answers agreeing within their errors never stepped the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDisagreementShowsInTheStatus: answers asking for steps that never
// agree leave the clock alone, and after three rounds the status says so.
func TestDisagreementShowsInTheStatus(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	a := &answers{by: map[string][]any{"a.example.com": {time.Millisecond, time.Hour, 3 * time.Hour, 5 * time.Hour, 7 * time.Hour, 9 * time.Hour, 11 * time.Hour}}}
	s, _ := start(t, clock, a, []string{"a.example.com"}, time.Time{})
	waitSynced(t, s)
	waitCalls(t, a, 6)
	if st := s.Status(); !st.Failing || !strings.Contains(st.Error, "answers disagree") {
		t.Errorf("status %+v", st)
	}
	if steps, _, _ := clock.Record(); len(steps) != 0 {
		t.Errorf("steps %v", steps)
	}
}
