package timesync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// offBy is a server whose time is off the true time by err, the true time
// being the clock's when first asked (after the build-time floor): what it
// answers follows the steps made.
func offBy(clock *ManualClock, err time.Duration) func() time.Duration {
	var once sync.Once
	var start time.Time
	return func() time.Duration {
		once.Do(func() { start = clock.Now() })
		return err - clock.Now().Sub(start)
	}
}

// waitFor polls cond (10 s at most: a bound on a hang, not a timing).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("never: " + what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAFalsetickerFirstIsOutvoted: a server an hour ahead, first in the
// list and valid-looking, is outvoted by the two others from the first
// round on, named once on the console and in the status; the clock follows
// the others.
func TestAFalsetickerFirstIsOutvoted(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := NewManualClock(build.Add(48 * time.Hour))
	a := &answers{by: map[string][]any{"wild": {offBy(clock, time.Hour)}, "good": {offBy(clock, 0)}, "good2": {offBy(clock, 2*time.Millisecond)}}}
	s, logs := start(t, clock, a, []string{"wild", "good", "good2"}, build)
	waitSynced(t, s)
	waitFor(t, "the falseticker in the status", func() bool { return len(s.Status().Falsetickers) > 0 })
	waitCalls(t, a, a.count()+12) // a few rounds more
	if steps, _, _ := clock.Record(); len(steps) != 0 {
		t.Errorf("steps %v: the falseticker moved the clock", steps)
	}
	st := s.Status()
	if st.Server == "wild" || st.Agreed != 2 || st.Answered != 3 || !slices.Equal(st.Falsetickers, []Falseticker{{Server: "wild", Offset: "1h0m0s"}}) {
		t.Errorf("status %+v", st)
	}
	got := logs.String()
	if n := strings.Count(got, `msg="falseticker:`); n != 1 || !strings.Contains(got, "server=wild offset=1h0m0s majority=good,good2") {
		t.Errorf("%d falseticker lines, want one naming wild:\n%s", n, got)
	}
	if !strings.Contains(got, `agreed="2 of`) {
		t.Errorf("the synchronisation does not say how many agreed:\n%s", got)
	}
}

// TestTwoServersDisagreeingMoveNothing: the audit's case. With two servers,
// one an hour ahead and first, neither has a majority: the clock is not
// corrected, the console says so once (naming both) and the status too,
// and the rounds go on asking both. Clock before the build time: it stays
// at the build time, and the console says that too.
func TestTwoServersDisagreeingMoveNothing(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for name, now := range map[string]time.Time{"clock right": build.Add(48 * time.Hour), "clock before the build time": time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)} {
		t.Run(name, func(t *testing.T) {
			clock := NewManualClock(now)
			a := &answers{by: map[string][]any{"wild": {offBy(clock, time.Hour)}, "good": {offBy(clock, 0)}}}
			s, logs := start(t, clock, a, []string{"wild", "good"}, build)
			waitFor(t, "several rounds", func() bool { return a.asked("good") >= 6 })
			steps, _, _ := clock.Record()
			floor := 0
			if now.Before(build) {
				floor = 1 // ApplyFloor's
			}
			if len(steps) != floor || s.Status().Synced {
				t.Errorf("steps %v, status %+v: the clock was corrected without a majority", steps, s.Status())
			}
			if st := s.Status(); !strings.Contains(st.Error, "no majority") || !strings.Contains(st.Error, "wild says 1h0m0s; good says 0s") {
				t.Errorf("status %+v", st)
			}
			got := logs.String()
			if n := strings.Count(got, "the NTP servers disagree"); n != 1 || !strings.Contains(got, `answers="wild says 1h0m0s; good says 0s"`) {
				t.Errorf("%d disagreement lines, want one naming both:\n%s", n, got)
			}
			if stays := strings.Contains(got, "stays at the image's build time"); stays != now.Before(build) {
				t.Errorf("the build time is said %v:\n%s", stays, got)
			}
		})
	}
}

// TestAuditFirstAnswerWins: the audit's script. wild, first, is an hour
// ahead on its first answer, then (as if it had set the clock) says 0;
// good says 0. The hour is never stepped, and good is asked.
func TestAuditFirstAnswerWins(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := NewManualClock(build.Add(48 * time.Hour))
	a := &answers{by: map[string][]any{"wild": {time.Hour, time.Duration(0)}, "good": {time.Duration(0)}}}
	s, _ := start(t, clock, a, []string{"wild", "good"}, build)
	waitSynced(t, s)
	waitCalls(t, a, 8)
	if steps, _, _ := clock.Record(); len(steps) != 0 || a.asked("good") < 2 {
		t.Errorf("steps %v, good asked %d times", steps, a.asked("good"))
	}
}

// TestALoneServerIsTrusted: one server is trusted as before: its first
// answer is taken, however far, asked once a round, no vote in the status.
func TestALoneServerIsTrusted(t *testing.T) {
	build := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := NewManualClock(build.Add(48 * time.Hour))
	a := &answers{by: map[string][]any{"ntp.example.com": {offBy(clock, time.Hour)}}}
	s, logs := start(t, clock, a, []string{"ntp.example.com"}, build)
	waitSynced(t, s)
	waitCalls(t, a, 4)
	if steps, _, _ := clock.Record(); !slices.Equal(steps, []time.Duration{time.Hour}) {
		t.Errorf("steps %v, want the hour once", steps)
	}
	if st := s.Status(); st.Server != "ntp.example.com" || st.Agreed != 0 || st.Falsetickers != nil {
		t.Errorf("status %+v", st)
	}
	if got := logs.String(); strings.Contains(got, "agreed=") || strings.Contains(got, "disagree") {
		t.Errorf("log:\n%s", got)
	}
}

// TestServersAgreeingOnAStepStepAtOnce: after the first synchronisation,
// two servers agreeing on a step make it in the same round.
func TestServersAgreeingOnAStepStepAtOnce(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	truth := time.Duration(0)
	t0 := clock.Now()
	server := func() time.Duration { mu.Lock(); defer mu.Unlock(); return truth - clock.Now().Sub(t0) }
	a := &answers{by: map[string][]any{"a": {server}, "b": {server}}}
	s, _ := start(t, clock, a, []string{"a", "b"}, time.Time{})
	waitSynced(t, s)
	mu.Lock()
	truth = 2 * time.Second // the clock lost two seconds (a VM paused)
	mu.Unlock()
	waitFor(t, "the step", func() bool { steps, _, _ := clock.Record(); return len(steps) > 0 })
	waitCalls(t, a, a.count()+6)
	if steps, _, _ := clock.Record(); !slices.Equal(steps, []time.Duration{2 * time.Second}) {
		t.Errorf("steps %v, want 2s once", steps)
	}
}

// TestASilentServerDoesNotHoldTheRound: a server that stops answering (and
// ignores its deadline) holds no round past RoundTimeout: the other's
// answer is taken, round after round.
func TestASilentServerDoesNotHoldTheRound(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	silent := make(chan struct{})
	t.Cleanup(func() { close(silent) })
	a := &answers{by: map[string][]any{"silent": {time.Millisecond, silent}, "good": {2 * time.Millisecond}}}
	s, _ := start(t, clock, a, []string{"silent", "good"}, time.Time{}, func(o *Options) { o.RoundTimeout = 20 * time.Millisecond })
	waitSynced(t, s)
	waitFor(t, "rounds going on without the silent server", func() bool { return a.asked("good") >= 5 })
	if st := s.Status(); !st.Synced || st.Server != "good" {
		t.Errorf("status %+v", st)
	}
}

// TestAtMostFourServersAreAsked: of six servers, the first four are asked.
func TestAtMostFourServersAreAsked(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	a := &answers{by: map[string][]any{}}
	var servers []string
	for i := range 6 {
		srv := fmt.Sprintf("s%d", i)
		servers = append(servers, srv)
		a.by[srv] = []any{time.Millisecond}
	}
	s, _ := start(t, clock, a, servers, time.Time{})
	waitSynced(t, s)
	waitCalls(t, a, 12)
	if a.asked("s4")+a.asked("s5") != 0 {
		t.Errorf("asked %v", a.calls)
	}
}

// TestALoneNameGivingSeveralAddressesVotes: a lone server whose name gives
// several addresses (pool.ntp.org) is asked at each, and they vote; a name
// giving one address is shown as the name.
func TestALoneNameGivingSeveralAddressesVotes(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	a := &answers{by: map[string][]any{"192.0.2.1:1123": {offBy(clock, time.Hour)}, "192.0.2.2:1123": {time.Millisecond}, "[2001:db8::3]:1123": {2 * time.Millisecond}, "192.0.2.9": {time.Hour}}}
	resolve := func(_ context.Context, host string) ([]string, error) {
		if host == "one.example.com" {
			return []string{"192.0.2.9"}, nil
		}
		return []string{"192.0.2.1", "192.0.2.2", "2001:db8::3"}, nil
	}
	s, _ := start(t, clock, a, []string{"pool.example.com:1123"}, time.Time{}, func(o *Options) { o.Resolve = resolve })
	waitSynced(t, s)
	waitFor(t, "the falseticker in the status", func() bool { return len(s.Status().Falsetickers) > 0 })
	if st := s.Status(); st.Falsetickers[0].Server != "pool.example.com:1123 (192.0.2.1)" || !strings.HasPrefix(st.Server, "pool.example.com:1123 (") {
		t.Errorf("status %+v", st)
	}
	if steps, _, _ := clock.Record(); len(steps) != 0 {
		t.Errorf("steps %v", steps)
	}

	clock = NewManualClock(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	s, _ = start(t, clock, a, []string{"one.example.com"}, time.Time{}, func(o *Options) { o.Resolve = resolve })
	waitSynced(t, s)
	if st := s.Status(); st.Server != "one.example.com" {
		t.Errorf("status %+v", st)
	}
}

func TestMajority(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		offsets []time.Duration
		size    int
		median  time.Duration
	}{
		{[]time.Duration{0, time.Hour}, 1, 0},
		{[]time.Duration{time.Hour, 0, 5 * ms}, 2, 0},                                                   // even: the smaller correction
		{[]time.Duration{0, 140 * ms, 280 * ms}, 2, 0},                                                  // a chain: the group asking less
		{[]time.Duration{-2 * time.Second, -2050 * ms, -1950 * ms, 3 * time.Hour}, 3, -2 * time.Second}, // a step agreed by three
		{[]time.Duration{0, 300 * ms, 600 * ms}, 1, 0},
	} {
		var as []answer
		for i, o := range c.offsets {
			as = append(as, answer{server: fmt.Sprint(i), offset: o, maxErr: 10 * ms})
		}
		g, m := majority(as)
		if len(g) != c.size || m.offset != c.median {
			t.Errorf("%v: group %v, median %v; want %d, %v", c.offsets, g, m.offset, c.size, c.median)
		}
	}
}
