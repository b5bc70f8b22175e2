package logfwd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/etoile-os/etoile/agent/safego"
)

// Source is one of the node's logs.
type Source struct {
	Name string // agent, k3s, kernel, syslog: in the lost lines' notice
	// Read returns the entries after position after (0: every one held),
	// oldest first, the position to read from next time, and how many
	// after `after` the log no longer holds.
	Read func(after uint64) (entries []Entry, next, skipped uint64)
}

// Options are what every destination's forwarding shares.
type Options struct {
	Sources []Source
	// Host is the node's name, as each message carries it.
	Host func() string
	// Roots are the certificate authorities a tls:// destination's
	// certificate is checked against (nil: the system's).
	Roots *x509.CertPool
	Log   *slog.Logger
	// Poll is how often the logs are read (1 s when zero).
	Poll time.Duration
	// Dial, when set, stands in for the network's dialer (tests).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// forwarder sends the sources' entries to one destination.
type forwarder struct {
	dest    Destination
	scheme  string
	address string
	opts    Options
	cursors []uint64 // by source
	started []bool   // by source: read once (a skip before is no loss)
	conn    net.Conn
	down    bool // the last try failed (said once)
	cancel  context.CancelFunc
	done    chan struct{}
}

// run forwards until ctx ends.
func (f *forwarder) run(ctx context.Context) {
	defer close(f.done)
	poll := f.opts.Poll
	if poll <= 0 {
		poll = time.Second
	}
	wait := poll
	for {
		if err := f.once(ctx); err != nil && ctx.Err() == nil {
			if !f.down {
				f.opts.Log.Warn("log destination unreachable: its lines wait in the node's logs", "endpoint", f.dest.Endpoint, "reason", err.Error())
				f.down = true
			}
			if f.conn != nil {
				f.conn.Close()
				f.conn = nil
			}
			wait = min(wait*2, 30*time.Second) // backing off, a reconnection at most every 30 s
		} else {
			if f.down {
				f.opts.Log.Info("log destination reachable again", "endpoint", f.dest.Endpoint)
				f.down = false
			}
			wait = poll
		}
		select {
		case <-ctx.Done():
			if f.conn != nil {
				f.conn.Close()
			}
			return
		case <-time.After(wait):
		}
	}
}

// once sends what the sources hold that was not sent yet; a cursor moves
// past an entry only once it is written.
func (f *forwarder) once(ctx context.Context) error {
	host := ""
	if f.opts.Host != nil {
		host = f.opts.Host()
	}
	for i, src := range f.opts.Sources {
		entries, next, skipped := src.Read(f.cursors[i])
		if len(entries) == 0 && (skipped == 0 || !f.started[i]) {
			f.cursors[i], f.started[i] = next, true
			continue
		}
		if !f.started[i] {
			// Held from the first read on: what the log loses of it
			// before it is sent is counted from now.
			f.cursors[i], f.started[i], skipped = entries[0].Pos-1, true, 0
		} else if len(entries) > 0 && entries[0].Pos > f.cursors[i]+1 {
			// (A log read from its start counts no loss itself.)
			skipped = max(skipped, entries[0].Pos-f.cursors[i]-1)
		}
		if err := f.connect(ctx); err != nil {
			return err
		}
		now := time.Now()
		if skipped > 0 {
			lost := Entry{App: "etoile-agent", Facility: 3, Severity: 4,
				Text: fmt.Sprintf("etoile: warning: %d lines of the %s log were gone from the node's memory before they could be sent to %s", skipped, src.Name, f.dest.Endpoint)}
			if err := f.write(Message(lost, f.dest.Format, host, now)); err != nil {
				return err
			}
			// Said: not again should the next write fail.
			f.cursors[i] = next
			if len(entries) > 0 {
				f.cursors[i] = entries[0].Pos - 1
			}
		}
		for _, e := range entries {
			if err := f.write(Message(e, f.dest.Format, host, now)); err != nil {
				return err
			}
			f.cursors[i] = e.Pos
		}
		f.cursors[i] = max(f.cursors[i], next)
	}
	return nil
}

// connect dials the destination unless a connection is open.
func (f *forwarder) connect(ctx context.Context) error {
	if f.conn != nil {
		return nil
	}
	dial := f.opts.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		dial = d.DialContext
	}
	network := "tcp"
	if f.scheme == "udp" {
		network = "udp"
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := dial(dctx, network, f.address)
	if err != nil {
		return err
	}
	if f.scheme == "tls" {
		host, _, _ := net.SplitHostPort(f.address)
		tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: f.opts.Roots, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(dctx); err != nil {
			c.Close()
			return fmt.Errorf("TLS with %s: %w", f.address, err)
		}
		c = tc
	}
	f.conn = c
	return nil
}

// write sends one message, framed as the transport has it: a datagram
// each over UDP; over TCP and TLS, RFC 6587's octet counting for syslog,
// a newline after each JSON object.
func (f *forwarder) write(msg []byte) error {
	var frame []byte
	switch {
	case f.dest.Format == FormatJSONLines:
		frame = append(msg, '\n')
	case f.scheme == "udp":
		frame = msg
	default:
		frame = append(fmt.Appendf(nil, "%d ", len(msg)), msg...)
	}
	if err := f.conn.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	_, err := f.conn.Write(frame)
	return err
}

// Manager keeps one forwarder running for each destination of the config
// applied last.
type Manager struct {
	mu      sync.Mutex
	running []*forwarder
}

// Set makes dests the destinations forwarded to, under ctx: one already
// running with the same endpoint, format and roots goes on where it was
// (a config applied again sends nothing twice); the others start from the
// oldest entry the logs hold; those not in dests stop.
func (m *Manager) Set(ctx context.Context, dests []Destination, opts Options) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keep, next []*forwarder
	for _, d := range dests {
		if d.Format == "" {
			d.Format = FormatRFC5424
		}
		if i := slices.IndexFunc(m.running, func(f *forwarder) bool {
			return f.dest == d && (f.scheme != "tls" || f.opts.Roots.Equal(opts.Roots))
		}); i >= 0 {
			keep = append(keep, m.running[i])
			next = append(next, m.running[i])
			continue
		}
		scheme, address, err := ParseEndpoint(d.Endpoint)
		if err != nil {
			return err // validation refuses it first
		}
		if opts.Log == nil {
			opts.Log = slog.New(slog.DiscardHandler)
		}
		fctx, cancel := context.WithCancel(ctx)
		f := &forwarder{dest: d, scheme: scheme, address: address, opts: opts, cancel: cancel, done: make(chan struct{}),
			cursors: make([]uint64, len(opts.Sources)), started: make([]bool, len(opts.Sources))}
		next = append(next, f)
		safego.Go(opts.Log, "forwarding the logs to "+d.Endpoint, func() { f.run(fctx) })
	}
	for _, f := range m.running {
		if !slices.Contains(keep, f) {
			f.cancel()
			<-f.done
		}
	}
	m.running = next
	return nil
}

// Stop ends every forwarder.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.running {
		f.cancel()
		<-f.done
	}
	m.running = nil
}
