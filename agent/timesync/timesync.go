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
// With several servers (or a lone server's name giving several addresses),
// every round asks up to four of them at once and the clock follows only
// what a strict majority of the answers agree on (Marzullo's intersection,
// see majority): a wrong server is outvoted and named (a falseticker), and
// with no majority the clock is left alone. One answer alone is trusted as
// above.
//
// Before any server answers, a clock earlier than the image's build time is
// certainly wrong: it is set to that time at once (as systemd does), and
// Behind reports it, so that K3s can wait a little for a real answer before
// it makes certificates.
package timesync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
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

// MaxPerRound is how many servers a round asks at most: the first four of
// the list not refusing this machine, or the first four addresses of a lone
// server's name.
const MaxPerRound = 4

// DefaultRoundTimeout is how long a round waits for the servers' answers.
const DefaultRoundTimeout = 5 * time.Second

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
	// Resolve returns the addresses of a server's name: a lone server
	// whose name gives several (pool.ntp.org) is asked at each of them
	// (MaxPerRound at most), each a vote. Default, with the default
	// Query: the system's resolver; nil otherwise: names are asked as
	// they are.
	Resolve func(ctx context.Context, host string) ([]string, error)
	// RoundTimeout bounds how long a round waits for the answers (default
	// DefaultRoundTimeout): a server that does not answer holds no round
	// past it.
	RoundTimeout time.Duration
	Clock        Clock
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
	// Agreed is how many of the Answered servers agreed on the last
	// correction (both zero when one server answered alone).
	Agreed   int `json:"agreed,omitempty"`
	Answered int `json:"answered,omitempty"`
	// Falsetickers are the servers the others outvoted in the round of the
	// last correction: their time is not followed.
	Falsetickers []Falseticker `json:"falsetickers,omitempty"`
}

// Falseticker is a server whose answer disagreed with the majority's.
type Falseticker struct {
	Server string `json:"server"`
	Offset string `json:"offset"` // the correction it asked for
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
	// outvoted are the servers named as falsetickers on the console, not
	// named again until they are back in a majority.
	outvoted map[string]bool
	// disagreed names the servers whose disagreement the console was last
	// told of ("" since the last correction).
	disagreed string
}

// kissError is a server's kiss of death (RFC 5905 §7.4), with its code.
type kissError struct{ code string }

func (e kissError) Error() string { return "kiss of death received (" + e.code + ")" }

// Start checks the clock against the floor and starts the rounds; they stop
// when ctx ends.
func Start(ctx context.Context, opts Options) *Service {
	if opts.Query == nil {
		opts.Query = sntp
		if opts.Resolve == nil {
			opts.Resolve = net.DefaultResolver.LookupHost
		}
	}
	if opts.RoundTimeout <= 0 {
		opts.RoundTimeout = DefaultRoundTimeout
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
	st.Falsetickers = slices.Clone(st.Falsetickers)
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

// round asks the servers (MaxPerRound at most, all at once, for
// RoundTimeout at most) and corrects the clock:
//   - one answer alone is taken, but once synchronised an answer asking for
//     a step is taken only when the next round's agrees (hold);
//   - with several answers, only the median of a strict majority agreeing
//     with each other is taken (vote), at once, step or not; the others are
//     falsetickers. No majority: the clock is left alone (disagree).
//
// Until the first synchronisation the round ends as soon as a strict
// majority of the servers asked agree (a silent server does not hold the
// boot); after it, every server asked has until RoundTimeout to answer, so
// that a falseticker is named.
func (s *Service) round(ctx context.Context) roundResult {
	servers := s.opts.Servers()
	s.mu.Lock()
	s.st.Servers = servers
	s.mu.Unlock()
	var failures, names []string
	for _, srv := range servers {
		if len(names) == MaxPerRound || slices.Contains(names, srv) {
			continue
		}
		if why, denied := s.isDenied(srv); denied {
			failures = append(failures, why)
			continue
		}
		names = append(names, srv)
	}
	sources, fails := s.sources(ctx, names)
	failures = append(failures, fails...)
	answers, fails := s.ask(ctx, sources)
	if ctx.Err() != nil {
		return roundFailed // stopped meanwhile (time.disabled applied): the clock is left alone
	}
	failures = append(failures, fails...)
	switch {
	case len(answers) == 1:
		a := answers[0]
		if s.answered() && a.step() {
			agreed, ok := s.agreeing(a, nil)
			if !ok {
				return s.hold(ctx, servers, []answer{a})
			}
			a.offset = agreed
		}
		if err := s.correct(a, nil); err != nil {
			failures = append(failures, a.server+": "+err.Error())
			break
		}
		return roundOK
	case len(answers) > 1:
		return s.vote(ctx, servers, answers, failures)
	}
	reason := "no server to ask"
	if len(failures) > 0 {
		reason = strings.Join(failures, "; ")
	}
	s.failed(ctx, servers, reason)
	return roundFailed
}

// isDenied reports whether srv answered a kiss of death not to be asked
// now, and says so.
func (s *Service) isDenied(srv string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, denied := s.denied[srv]
	if !denied || time.Now().After(d.until) {
		return "", false
	}
	return srv + ": not asked until " + d.until.UTC().Format(time.RFC3339) + " (it answered " + d.code + ")", true
}

// source is one server a round asks: its name as shown, and where the
// query goes.
type source struct{ name, addr string }

// sources are the servers to ask: the names as they are, or, for a lone
// name giving several addresses, each of them ("pool.ntp.org (192.0.2.1)"),
// MaxPerRound at most.
func (s *Service) sources(ctx context.Context, names []string) ([]source, []string) {
	var out []source
	if len(names) != 1 || s.opts.Resolve == nil {
		for _, n := range names {
			out = append(out, source{n, n})
		}
		return out, nil
	}
	name := names[0]
	host, port := splitServer(name)
	if _, err := netip.ParseAddr(host); err == nil || host == "" {
		return []source{{name, name}}, nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RoundTimeout)
	addrs, err := s.opts.Resolve(rctx, host)
	cancel()
	if err == nil && len(addrs) == 0 {
		err = errors.New("the name has no address")
	}
	if err != nil {
		return nil, []string{name + ": " + err.Error()}
	}
	var uniq []string
	for _, a := range addrs {
		if !slices.Contains(uniq, a) && len(uniq) < MaxPerRound {
			uniq = append(uniq, a)
		}
	}
	for _, a := range uniq {
		addr := a
		if port != "" {
			addr = net.JoinHostPort(a, port)
		}
		src := source{name, addr}
		if len(uniq) > 1 {
			src.name = name + " (" + a + ")"
			if _, denied := s.isDenied(src.name); denied {
				continue
			}
		}
		out = append(out, src)
	}
	if len(out) == 0 {
		return nil, []string{name + ": every address refused this machine (kiss of death): not asked for now"}
	}
	return out, nil
}

// splitServer splits a server as time.servers writes it (as
// github.com/beevik/ntp reads it) into its host and port ("" for the
// default).
func splitServer(server string) (host, port string) {
	if strings.HasPrefix(server, "[") {
		end := strings.IndexByte(server, ']')
		if end < 0 {
			return "", ""
		}
		return server[1:end], strings.TrimPrefix(server[end+1:], ":")
	}
	switch strings.Count(server, ":") {
	case 0:
		return server, ""
	case 1:
		h, p, _ := strings.Cut(server, ":")
		return h, p
	}
	return server, "" // an IPv6 address without a port
}

// ask queries the sources at once and returns the valid answers and the
// others' failures, both in the sources' order. It returns when every
// source has answered, or RoundTimeout has passed, or — before the first
// synchronisation — a strict majority of the sources agree.
func (s *Service) ask(ctx context.Context, sources []source) ([]answer, []string) {
	if len(sources) == 0 {
		return nil, nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RoundTimeout)
	defer cancel()
	type reply struct {
		i   int
		a   answer
		err error
	}
	replies := make(chan reply, len(sources)) // a late query does not block
	for i, src := range sources {
		go func() {
			r := reply{i: i, a: answer{server: src.name}}
			defer func() {
				if p := recover(); p != nil {
					r.err = fmt.Errorf("the query crashed: %v", p)
				}
				replies <- r
			}()
			r.a.offset, r.a.maxErr, r.err = s.opts.Query(rctx, src.addr)
		}()
	}
	early := !s.answered()
	got := make([]*reply, len(sources))
	var valid []answer
collect:
	for range sources {
		select {
		case r := <-replies:
			if ctx.Err() != nil {
				return nil, nil
			}
			var kiss kissError
			if errors.As(r.err, &kiss) && (kiss.code == "DENY" || kiss.code == "RSTR") {
				s.deny(r.a.server, kiss.code)
			}
			if r.err == nil {
				r.err = s.belowFloor(r.a.offset)
			}
			got[r.i] = &r
			if r.err != nil {
				continue
			}
			valid = append(valid, r.a)
			if group, _ := majority(valid); early && 2*len(group) > len(sources) {
				break collect
			}
		case <-rctx.Done():
			break collect
		}
	}
	var answers []answer
	var failures []string
	for i, r := range got {
		switch {
		case r == nil && early && rctx.Err() == nil:
			// not waited for: a majority had agreed
		case r == nil:
			failures = append(failures, fmt.Sprintf("%s: no answer within %s", sources[i].name, s.opts.RoundTimeout))
		case r.err != nil:
			failures = append(failures, r.a.server+": "+r.err.Error())
		default:
			answers = append(answers, r.a)
		}
	}
	return answers, failures
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

// majority returns the largest group of answers that agree with each other,
// and the answer the clock is corrected by: the group's median. Each answer
// stands for the interval offset ± (its error bound + StepThreshold/2); a
// group agrees when its intervals share a point (Marzullo's algorithm) —
// that is, when any two of its answers agree. Between groups as large, the
// one whose median asks for the smaller correction; an even group's median
// is, of its two middle answers, the one asking for the smaller correction.
func majority(answers []answer) (group []answer, median answer) {
	reach := func(a answer) time.Duration { return a.maxErr + StepThreshold/2 }
	for _, a := range answers {
		p := a.offset - reach(a) // the most answers' intervals hold one of their starts
		var g []answer
		for _, b := range answers {
			if b.offset-reach(b) <= p && p <= b.offset+reach(b) {
				g = append(g, b)
			}
		}
		m := middle(g)
		if len(g) > len(group) || len(g) == len(group) && m.offset.Abs() < median.offset.Abs() {
			group, median = g, m
		}
	}
	return group, median
}

// middle is a group's median answer.
func middle(g []answer) answer {
	g = slices.Clone(g)
	slices.SortStableFunc(g, func(a, b answer) int { return cmp.Compare(a.offset, b.offset) })
	m := g[len(g)/2]
	if len(g)%2 == 0 && g[len(g)/2-1].offset.Abs() <= m.offset.Abs() {
		m = g[len(g)/2-1]
	}
	return m
}

// verdict is how the answers of a round with several voted.
type verdict struct {
	agreed, answered int
	outvoted         []answer
}

// vote corrects the clock by the median of the answers a strict majority
// of them agree on, naming the others (falsetickers) on the console once;
// with no majority it leaves the clock alone.
func (s *Service) vote(ctx context.Context, servers []string, answers []answer, failures []string) roundResult {
	group, chosen := majority(answers)
	if 2*len(group) <= len(answers) {
		return s.disagree(ctx, servers, answers, failures)
	}
	v := &verdict{agreed: len(group), answered: len(answers)}
	var agreeing []string
	for _, a := range answers {
		if slices.ContainsFunc(group, func(g answer) bool { return g.server == a.server }) {
			agreeing = append(agreeing, a.server)
		} else {
			v.outvoted = append(v.outvoted, a)
		}
	}
	s.mu.Lock()
	if s.outvoted == nil {
		s.outvoted = map[string]bool{}
	}
	var name []answer
	for _, a := range v.outvoted {
		if !s.outvoted[a.server] {
			name = append(name, a)
		}
		s.outvoted[a.server] = true
	}
	for _, srv := range agreeing {
		delete(s.outvoted, srv)
	}
	s.mu.Unlock()
	for _, a := range name {
		s.opts.Log.Warn("falseticker: an NTP server disagrees with the others' majority, its time is not followed",
			"server", a.server, "offset", a.offset.Round(time.Microsecond), "majority", strings.Join(agreeing, ","),
			"majority_offset", chosen.offset.Round(time.Microsecond),
			"fix", "check that server, or remove it from time.servers in the machine config")
	}
	if err := s.correct(chosen, v); err != nil {
		failures = append(failures, chosen.server+": "+err.Error())
		s.failed(ctx, servers, strings.Join(failures, "; "))
		return roundFailed
	}
	return roundOK
}

// disagree records a round whose answers have no majority: the clock is
// not corrected, the console is told once (until the servers disagreeing
// change) and the status says so; the next round asks again.
func (s *Service) disagree(ctx context.Context, servers []string, answers []answer, failures []string) roundResult {
	var said, who []string
	for _, a := range answers {
		said = append(said, fmt.Sprintf("%s says %s", a.server, a.offset.Round(time.Millisecond)))
		who = append(who, a.server)
	}
	reason := "the servers disagree and no majority agrees, the clock is not corrected: " + strings.Join(said, "; ")
	if len(failures) > 0 {
		reason += " (" + strings.Join(failures, "; ") + ")"
	}
	key := strings.Join(who, ",")
	s.mu.Lock()
	tell := s.disagreed != key
	s.disagreed = key
	s.mu.Unlock()
	if tell && ctx.Err() == nil {
		msg := "the NTP servers disagree and no majority agrees: the clock is not corrected"
		if !s.answered() && s.behind {
			msg += "; it stays at the image's build time until a majority agrees"
		}
		s.opts.Log.Warn(msg, "answers", strings.Join(said, "; "),
			"fix", "set three or more servers in time.servers (a majority then outvotes a wrong one), or remove the wrong one")
	}
	s.fail(reason)
	return roundFailed
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
	if warn := s.fail(reason); warn && ctx.Err() == nil {
		s.opts.Log.Warn("no NTP server answered: the clock is not synchronised", "servers", strings.Join(servers, ","), "reason", reason,
			"fix", "set time.servers in the machine config to NTP servers this network reaches (or have DHCP give them), or time.disabled: true where something else keeps the clock")
	}
}

// fail records a round that did not correct the clock, for the status,
// and reports whether the console is to be warned now (the rounds have
// failed for WarnAfter).
func (s *Service) fail(reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Error = reason
	if s.failingSince.IsZero() {
		s.failingSince = time.Now()
	}
	warn := !s.warned && time.Since(s.failingSince) >= s.opts.WarnAfter
	s.warned = s.warned || warn
	return warn
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

// correct steps or slews the clock by a's offset; v is the vote that chose
// it (nil: a answered alone).
func (s *Service) correct(a answer, v *verdict) error {
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
	if v != nil {
		s.st.Agreed, s.st.Answered = v.agreed, v.answered
		for _, b := range v.outvoted {
			s.st.Falsetickers = append(s.st.Falsetickers, Falseticker{Server: b.server, Offset: b.offset.Round(time.Microsecond).String()})
		}
	}
	s.warned, s.failingSince = false, time.Time{}
	s.disagreed = ""
	s.mu.Unlock()
	attrs := []any{"server", server, "offset", offset.Round(time.Microsecond), "clock", s.opts.Clock.Now().UTC().Format(time.RFC3339)}
	if v != nil {
		attrs = append(attrs, "agreed", fmt.Sprintf("%d of %d", v.agreed, v.answered))
	}
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
	timeout := DefaultRoundTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		return 0, 0, context.DeadlineExceeded
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
