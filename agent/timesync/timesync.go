// Package timesync keeps the node's clock right. K3s's certificates, the
// constellation's mTLS and every log line depend on it, and edge boxes come
// with flat RTC batteries, RTCs in local time, or none. It asks NTP servers
// (SNTP, github.com/beevik/ntp) — the machine config's time.servers, else
// those DHCP gives (option 42), else pool.ntp.org — steps the clock when it
// is off by more than 128 ms (ntpd's threshold), slews it otherwise, and
// tells the kernel the clock is synchronised, so that the kernel writes it
// back to the RTC every 11 minutes. An answer that would put the clock
// before the image's build time is refused; once synchronised, an offset
// worth a step (a server gone wrong, or the clock really off) is stepped
// only when the next answer, a round later, agrees — a single wild answer
// never moves a running cluster's clock. A server that answers with a kiss
// of death (DENY, RSTR) is not asked again.
//
// Before any server answers, a clock earlier than the image's build time is
// certainly wrong: it is set to that time at once (as systemd does), and
// Behind reports it, so that K3s can wait a little for a real answer before
// it makes certificates.
package timesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/beevik/ntp"
)

// DefaultServer is asked when neither the machine config nor DHCP names a
// server: the NTP Pool project's, which has servers in every country.
const DefaultServer = "pool.ntp.org"

// StepThreshold is the offset above which the clock is stepped rather than
// slewed.
const StepThreshold = 128 * time.Millisecond

// Clock is the system clock as timesync changes it.
type Clock interface {
	Now() time.Time
	// Step moves the clock by offset at once.
	Step(offset time.Duration) error
	// Slew has the kernel move the clock by offset gradually.
	Slew(offset time.Duration) error
	// MarkSynced tells the kernel the clock is right within maxError.
	MarkSynced(maxError time.Duration) error
}

// Options configure the service.
type Options struct {
	// Servers returns the servers to ask, in order, at every round (the
	// machine config and DHCP may change them).
	Servers func() []string
	// Query asks one server and returns how far the local clock is from
	// it (positive: behind) and the answer's error bound. Default: SNTP.
	Query func(ctx context.Context, server string) (offset, maxError time.Duration, err error)
	Clock Clock
	// Floor is the image's build time: the clock is never left before it.
	Floor time.Time
	// Behind says the clock was found before Floor earlier in the boot
	// (ApplyFloor), and set to it then.
	Behind bool
	// Poll is the time between rounds once synchronised (default 17 min);
	// Retry the first wait after a failed round (default 30 s), doubled up
	// to Poll.
	Poll, Retry time.Duration
	// FirstRetry is the first wait after a failed round while no server
	// has answered yet (default 2 s), doubled up to Retry, from where the
	// failed rounds' waits go on doubling as above: at boot a lost
	// packet, or a link or name server not ready yet, does not leave the
	// clock (and K3s, which waits a while for it) unsynchronised for Retry,
	// as chrony's iburst.
	FirstRetry time.Duration
	// WarnAfter is how long the servers may fail before the console is
	// warned (default a minute: at boot DNS or a link may not be ready yet).
	WarnAfter time.Duration
	Log       *slog.Logger
}

// Status is what the local API shows.
type Status struct {
	Synced bool `json:"synced"`
	// Failing: no server has answered for WarnAfter or longer (the clock
	// runs on its own since Last).
	Failing bool      `json:"failing,omitempty"`
	Server  string    `json:"server,omitempty"`
	Offset  string    `json:"offset,omitempty"` // the last correction
	Last    time.Time `json:"last,omitzero"`
	Servers []string  `json:"servers"`
	Error   string    `json:"error,omitempty"`
}

// Service runs the rounds in the background.
type Service struct {
	opts   Options
	mu     sync.Mutex
	st     Status
	behind bool
	synced chan struct{}
	once   sync.Once
	warned bool
	// failingSince is when the rounds started failing (zero while a
	// server answers).
	failingSince time.Time
	// pending is a step an answer asked for after the first
	// synchronisation, waiting for another answer to agree (nil: none);
	// held counts the rounds it has waited.
	pending *answer
	held    int
	// denied are the servers that answered with a kiss of death saying
	// not to ask them, until when.
	denied map[string]denial
}

// kissError is a server's kiss of death (RFC 5905 §7.4), with its code.
type kissError struct{ code string }

func (e kissError) Error() string { return "kiss of death received (" + e.code + ")" }

// Start checks the clock against the floor and starts the rounds; they stop
// when ctx ends.
func Start(ctx context.Context, opts Options) *Service {
	if opts.Query == nil {
		opts.Query = sntp
	}
	if opts.Poll <= 0 {
		opts.Poll = 1024 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = 30 * time.Second
	}
	if opts.FirstRetry <= 0 {
		opts.FirstRetry = 2 * time.Second
	}
	opts.FirstRetry = min(opts.FirstRetry, opts.Retry)
	if opts.WarnAfter <= 0 {
		opts.WarnAfter = time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{opts: opts, synced: make(chan struct{})}
	s.behind = ApplyFloor(opts.Clock, opts.Floor, opts.Log) || opts.Behind
	go s.run(ctx)
	return s
}

// ApplyFloor sets the clock to floor when it is before it (a flat RTC
// battery, an RTC never set): TLS certificates, which start after the
// image was built, then verify before any NTP server has answered. It
// reports whether it did.
func ApplyFloor(clock Clock, floor time.Time, log *slog.Logger) bool {
	now := clock.Now()
	if floor.IsZero() || !now.Before(floor) {
		return false
	}
	if err := clock.Step(floor.Sub(now)); err != nil {
		log.Warn("setting the clock to the image's build time failed", "reason", err.Error())
		return true
	}
	log.Info("the clock was before the image's build time: set to it until an NTP server answers",
		"was", now.UTC().Format(time.RFC3339), "now", floor.UTC().Format(time.RFC3339))
	return true
}

// Behind reports whether the clock was found before the image's build time
// at start: until Synced, it is a guess.
func (s *Service) Behind() bool { return s.behind }

// Synced is closed once a server has answered.
func (s *Service) Synced() <-chan struct{} { return s.synced }

// answered reports whether a server has answered since the start.
func (s *Service) answered() bool {
	select {
	case <-s.synced:
		return true
	default:
		return false
	}
}

// Failing reports whether the servers have failed for WarnAfter or longer
// (the console has been warned).
func (s *Service) Failing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.warned
}

// Status returns the service's state.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Servers = append([]string{}, st.Servers...)
	st.Failing = s.warned
	return st
}

func (s *Service) run(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.opts.Log.Warn("time synchronisation crashed", "reason", fmt.Sprint(r))
		}
	}()
	retry, first := s.opts.Retry, s.opts.FirstRetry
	for {
		wait := s.opts.Poll
		switch s.round(ctx) {
		case roundOK:
			retry = s.opts.Retry
		case roundHeld:
			wait = s.opts.Retry // the step's confirmation comes soon
		default:
			if !s.answered() && first < s.opts.Retry {
				wait, first = first, min(first*2, s.opts.Retry)
			} else {
				wait, retry = retry, min(retry*2, s.opts.Poll)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

type roundResult int

const (
	roundFailed roundResult = iota
	roundOK
	roundHeld // an answer asked for a step, to be confirmed
)

// round asks the servers in turn until one answers, and corrects the clock
// by its offset. Once synchronised, an answer asking for a step is taken
// only when another answer agrees with it — another server's in the same
// round, or the one held from an earlier round; meanwhile the next servers
// are asked, and one of them answering without a step is taken instead.
func (s *Service) round(ctx context.Context) roundResult {
	servers := s.opts.Servers()
	s.mu.Lock()
	s.st.Servers = servers
	s.mu.Unlock()
	var failures []string
	var steps []answer // answers asking for a step this round, not agreed yet
	for _, srv := range servers {
		if ctx.Err() != nil {
			return roundFailed
		}
		s.mu.Lock()
		d, denied := s.denied[srv]
		if denied && time.Now().After(d.until) {
			denied = false
		}
		s.mu.Unlock()
		if denied {
			failures = append(failures, srv+": not asked until "+d.until.UTC().Format(time.RFC3339)+" (it answered "+d.code+")")
			continue
		}
		offset, maxErr, err := s.opts.Query(ctx, srv)
		if ctx.Err() != nil {
			return roundFailed // stopped meanwhile (time.disabled applied): the clock is left alone
		}
		var kiss kissError
		if errors.As(err, &kiss) && (kiss.code == "DENY" || kiss.code == "RSTR") {
			s.deny(srv, kiss.code)
		}
		if err == nil {
			err = s.belowFloor(offset)
		}
		if err != nil {
			failures = append(failures, srv+": "+err.Error())
			continue
		}
		a := answer{server: srv, offset: offset, maxErr: maxErr}
		if s.answered() && a.step() {
			if agreed, ok := s.agreeing(a, steps); ok {
				a.offset = agreed
			} else {
				steps = append(steps, a)
				continue
			}
		}
		if err := s.correct(a); err != nil {
			failures = append(failures, srv+": "+err.Error())
			continue
		}
		return roundOK
	}
	if len(steps) > 0 {
		return s.hold(ctx, servers, steps)
	}
	reason := "no server to ask"
	if len(failures) > 0 {
		reason = strings.Join(failures, "; ")
	}
	s.failed(ctx, servers, reason)
	return roundFailed
}

// answer is one server's answer.
type answer struct {
	server         string
	offset, maxErr time.Duration
}

func (a answer) step() bool { return a.offset > StepThreshold || a.offset < -StepThreshold }

// agrees reports whether two answers asking for a step say the same, within
// the step threshold and both answers' error bounds.
func (a answer) agrees(b answer) bool {
	return (a.offset - b.offset).Abs() <= StepThreshold+a.maxErr+b.maxErr
}

// agreeing finds an answer agreeing with a: one of this round's, or the one
// held from an earlier round; it returns the offset to step by (a's).
func (s *Service) agreeing(a answer, round []answer) (time.Duration, bool) {
	for _, b := range round {
		if a.agrees(b) {
			return a.offset, true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil && a.agrees(*s.pending) {
		return a.offset, true
	}
	return 0, false
}

// hold keeps the first of this round's step answers for the next round to
// confirm; after three rounds without agreement the status says so.
func (s *Service) hold(ctx context.Context, servers []string, steps []answer) roundResult {
	a := steps[0]
	s.mu.Lock()
	s.pending = &a
	s.held++
	disagree := s.held >= 3
	s.mu.Unlock()
	if disagree {
		var said []string
		for _, b := range steps {
			said = append(said, fmt.Sprintf("%s says %s", b.server, b.offset.Round(time.Millisecond)))
		}
		s.failed(ctx, servers, "the answers disagree, the clock is not corrected: "+strings.Join(said, "; "))
	}
	s.opts.Log.Info("the clock is off by more than a step's threshold: stepped when another answer agrees", "server", a.server,
		"offset", a.offset.Round(time.Microsecond))
	return roundHeld
}

// failed records a round in which no server answered, warning the console
// once after WarnAfter.
func (s *Service) failed(ctx context.Context, servers []string, reason string) {
	s.mu.Lock()
	s.st.Error = reason
	if s.failingSince.IsZero() {
		s.failingSince = time.Now()
	}
	warn := !s.warned && time.Since(s.failingSince) >= s.opts.WarnAfter
	s.warned = s.warned || warn
	s.mu.Unlock()
	if warn && ctx.Err() == nil {
		s.opts.Log.Warn("no NTP server answered: the clock is not synchronised", "servers", strings.Join(servers, ","), "reason", reason,
			"fix", "set time.servers in the machine config to NTP servers this network reaches (or have DHCP give them), or time.disabled: true where something else keeps the clock")
	}
}

// denyFor is how long a server that answered a kiss of death DENY or RSTR
// is not asked: a pool name's next address may well answer.
const denyFor = time.Hour

// deny leaves srv out of the rounds for denyFor.
func (s *Service) deny(srv, code string) {
	s.mu.Lock()
	if s.denied == nil {
		s.denied = map[string]denial{}
	}
	s.denied[srv] = denial{code: code, until: time.Now().Add(denyFor)}
	s.mu.Unlock()
	s.opts.Log.Warn("an NTP server refused this machine: it is not asked for an hour", "server", srv, "kiss_code", code,
		"fix", "use NTP servers that serve this network (time.servers in the machine config)")
}

type denial struct {
	code  string
	until time.Time
}

// belowFloor refuses an answer that would put the clock before the
// image's build time.
func (s *Service) belowFloor(offset time.Duration) error {
	if floor := s.opts.Floor; !floor.IsZero() && s.opts.Clock.Now().Add(offset).Before(floor) {
		return fmt.Errorf("its time, %s, is before the image's build time (%s): refused",
			s.opts.Clock.Now().Add(offset).UTC().Format(time.RFC3339), floor.UTC().Format(time.RFC3339))
	}
	return nil
}

// correct steps or slews the clock by a's offset.
func (s *Service) correct(a answer) error {
	server, offset, maxErr := a.server, a.offset, a.maxErr
	stepped := a.step()
	s.mu.Lock()
	s.pending, s.held = nil, 0
	s.mu.Unlock()
	var err error
	if stepped {
		err = s.opts.Clock.Step(offset)
	} else {
		err = s.opts.Clock.Slew(offset)
	}
	if err != nil {
		return fmt.Errorf("correcting the clock by %s: %w", offset, err)
	}
	if err := s.opts.Clock.MarkSynced(maxErr); err != nil {
		s.opts.Log.Debug("telling the kernel the clock is synchronised failed", "reason", err.Error())
	}
	s.mu.Lock()
	first := !s.st.Synced
	recovered := s.warned
	s.st = Status{Synced: true, Server: server, Offset: offset.Round(time.Microsecond).String(), Last: s.opts.Clock.Now().UTC(), Servers: s.st.Servers}
	s.warned, s.failingSince = false, time.Time{}
	s.mu.Unlock()
	attrs := []any{"server", server, "offset", offset.Round(time.Microsecond), "clock", s.opts.Clock.Now().UTC().Format(time.RFC3339)}
	switch {
	case first || recovered:
		s.opts.Log.Info("time synchronised", attrs...)
	case stepped:
		s.opts.Log.Info("clock stepped", attrs...)
	default:
		s.opts.Log.Debug("clock slewed", attrs...)
	}
	// Closed after the line above: whoever waits on Synced (K3s's start,
	// a test reading the log) sees the console say so first.
	s.once.Do(func() { close(s.synced) })
	return nil
}

// sntp asks one server with SNTP (RFC 4330) and checks its answer (not a
// kiss of death, a synchronised server, a sane stratum and root distance).
func sntp(ctx context.Context, server string) (time.Duration, time.Duration, error) {
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	r, err := ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: timeout})
	if err != nil {
		return 0, 0, err
	}
	if err := r.Validate(); err != nil {
		if errors.Is(err, ntp.ErrKissOfDeath) {
			return 0, 0, kissError{code: r.KissCode}
		}
		return 0, 0, err
	}
	return r.ClockOffset, r.RootDistance, nil
}
