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
	// Dial, when set, stands in for the network's dialer of tcp:// and
	// tls:// destinations (tests).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// writeTimeout bounds one write to a collector: one that reads no more
// is given up, and tried again later.
const writeTimeout = 10 * time.Second

// forwarder sends the sources' entries to one destination.
type forwarder struct {
	dest    Destination
	scheme  string
	address string
	opts    Options
	cursors []uint64 // by source
	started []bool   // by source: read once (a skip before is no loss)
	conn    net.Conn // tcp:// and tls://
	udp     net.PacketConn
	udpTo   net.Addr
	down    bool // the last try failed (said once)
	cancel  context.CancelFunc
	final   chan time.Duration // a last sending before the machine stops, within the time given
	done    chan struct{}
}

// run forwards until ctx ends, or after a last sending (final).
func (f *forwarder) run(ctx context.Context) {
	defer close(f.done)
	defer f.disconnect()
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
			f.disconnect()
			wait = min(wait*2, 30*time.Second) // backing off, a reconnection at most every 30 s
		} else {
			if f.down && ctx.Err() == nil {
				f.opts.Log.Info("log destination reachable again", "endpoint", f.dest.Endpoint)
				f.down = false
			}
			wait = poll
		}
		select {
		case <-ctx.Done():
			return
		case d := <-f.final:
			// What the machine said as it stopped: at once, within d,
			// even when the destination was down (it may be back).
			fctx, cancel := context.WithTimeout(ctx, d)
			_ = f.once(fctx)
			cancel()
			return
		case <-time.After(wait):
		}
	}
}

// once sends what the sources hold that was not sent yet; a cursor moves
// past an entry only once it is written. It stops at ctx's end, even in
// the middle of a write.
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
			if err := f.write(ctx, Message(lost, f.dest.Format, host, now)); err != nil {
				return err
			}
			// Said: not again should the next write fail.
			f.cursors[i] = next
			if len(entries) > 0 {
				f.cursors[i] = entries[0].Pos - 1
			}
		}
		for _, e := range entries {
			if err := f.write(ctx, Message(e, f.dest.Format, host, now)); err != nil {
				return err
			}
			f.cursors[i] = e.Pos
		}
		f.cursors[i] = max(f.cursors[i], next)
	}
	return nil
}

// connect opens the way to the destination unless it is open: a UDP
// socket of no peer (a port nobody listens on then answers with nothing
// the next write would fail on: UDP says nothing of what arrives), a TCP
// connection, TLS over it.
func (f *forwarder) connect(ctx context.Context) error {
	if f.conn != nil || f.udp != nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if f.scheme == "udp" {
		addrs, err := net.DefaultResolver.LookupNetIP(dctx, "ip", hostOf(f.address))
		if err != nil {
			return err
		}
		if len(addrs) == 0 {
			return fmt.Errorf("%s has no address", hostOf(f.address))
		}
		_, port, _ := net.SplitHostPort(f.address)
		to, err := net.ResolveUDPAddr("udp", net.JoinHostPort(addrs[0].Unmap().String(), port))
		if err != nil {
			return err
		}
		pc, err := net.ListenPacket("udp", "")
		if err != nil {
			return err
		}
		f.udp, f.udpTo = pc, to
		return nil
	}
	dial := f.opts.Dial
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	c, err := dial(dctx, "tcp", f.address)
	if err != nil {
		return err
	}
	if f.scheme == "tls" {
		tc := tls.Client(c, &tls.Config{ServerName: hostOf(f.address), RootCAs: f.opts.Roots, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(dctx); err != nil {
			c.Close()
			return fmt.Errorf("TLS with %s: %w", f.address, err)
		}
		c = tc
	}
	f.conn = c
	return nil
}

func hostOf(address string) string {
	h, _, _ := net.SplitHostPort(address)
	return h
}

// disconnect closes what connect opened.
func (f *forwarder) disconnect() {
	if f.conn != nil {
		f.conn.Close()
		f.conn = nil
	}
	if f.udp != nil {
		f.udp.Close()
		f.udp = nil
	}
}

// write sends one message, framed as the transport has it: a datagram
// each over UDP; over TCP and TLS, RFC 6587's octet counting for syslog,
// a newline after each JSON object. A write lasts writeTimeout at most,
// and ends at once when ctx does.
func (f *forwarder) write(ctx context.Context, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.udp != nil {
		if f.dest.Format == FormatJSONLines {
			msg = append(msg, '\n')
		}
		_, err := f.udp.WriteTo(msg, f.udpTo)
		return err
	}
	var frame []byte
	if f.dest.Format == FormatJSONLines {
		frame = append(msg, '\n')
	} else {
		frame = append(fmt.Appendf(nil, "%d ", len(msg)), msg...)
	}
	if err := f.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	conn := f.conn
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Now()) })
	defer stop()
	_, err := conn.Write(frame)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Manager keeps one forwarder running for each destination of the config
// applied last.
type Manager struct {
	mu      sync.Mutex
	running []*forwarder
}

// Set makes dests the destinations forwarded to, under ctx: one already
// running with the same endpoint and format goes on where it was (with
// other roots, started again from there: a config applied again sends
// nothing twice); the others start from the oldest entry the logs hold;
// those not in dests stop (at once: a collector that reads slowly does not
// hold the caller).
func (m *Manager) Set(ctx context.Context, dests []Destination, opts Options) error {
	type planned struct {
		dest            Destination
		scheme, address string
	}
	var plan []planned
	for _, d := range dests {
		if d.Format == "" {
			d.Format = FormatRFC5424
		}
		scheme, address, err := ParseEndpoint(d.Endpoint)
		if err != nil {
			return err // validation refuses it first; nothing changed
		}
		plan = append(plan, planned{d, scheme, address})
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var next []*forwarder
	old := m.running
	for _, p := range plan {
		i := slices.IndexFunc(old, func(f *forwarder) bool { return f.dest == p.dest })
		if i >= 0 && (p.scheme != "tls" || old[i].opts.Roots.Equal(opts.Roots)) {
			next = append(next, old[i])
			old = slices.Delete(slices.Clone(old), i, i+1)
			continue
		}
		fctx, cancel := context.WithCancel(ctx)
		f := &forwarder{dest: p.dest, scheme: p.scheme, address: p.address, opts: opts, cancel: cancel,
			final: make(chan time.Duration, 1), done: make(chan struct{}),
			cursors: make([]uint64, len(opts.Sources)), started: make([]bool, len(opts.Sources))}
		if i >= 0 {
			// Other roots: the same collector, where the one before was.
			prev := old[i]
			prev.cancel()
			<-prev.done // at once: its writes end with its context
			if len(prev.cursors) == len(f.cursors) {
				copy(f.cursors, prev.cursors)
				copy(f.started, prev.started)
			}
			old = slices.Delete(slices.Clone(old), i, i+1)
		}
		next = append(next, f)
		safego.Go(opts.Log, "forwarding the logs to "+p.dest.Endpoint, func() { f.run(fctx) })
	}
	for _, f := range old {
		f.cancel()
		<-f.done
	}
	m.running = next
	return nil
}

// Close sends each destination what the logs hold that it was not sent
// yet, within d (the machine stops: what it said doing so is what an
// operator looks for), and ends every forwarder.
func (m *Manager) Close(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.running {
		select {
		case f.final <- d:
		default:
		}
	}
	until := time.Now().Add(d + time.Second)
	for _, f := range m.running {
		select {
		case <-f.done:
		case <-time.After(time.Until(until)):
			f.cancel()
			<-f.done
		}
	}
	m.running = nil
}

// Stop ends every forwarder at once.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.running {
		f.cancel()
		<-f.done
	}
	m.running = nil
}
