package hub

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Sites keep their connection to the hub between heartbeats (one every 30 s
// by default), so a hub with many sites holds that many idle connections.
// Left to net/http, each idle HTTP/1.1 connection keeps its serving
// goroutine (whose stack the TLS handshake grew to 8 KB) and a 4 KB read and
// a 4 KB write buffer for its whole life: well over half of what an open
// site connection cost. So siteListener runs the TLS handshake itself, on a
// goroutine that ends with it, and parks a connection between requests:
// when the HTTP server, a response done, waits for the next request with
// nothing of it read ahead, the connection reports the end of its input;
// the server ends the serving goroutine and keeps the buffers for other
// connections, and closing the connection then parks it instead.
// When the next request's first byte arrives it goes back to the HTTP
// server through Accept, as a new connection whose TLS handshake is done.
// On Linux parked connections wait in an epoll set without a goroutine each
// (park_linux.go); elsewhere one small goroutine each waits. What stays per
// idle connection is its TLS state: keys, buffers, the peer's certificate.

// siteListener is the API listener: Accept returns connections whose TLS
// handshake is complete, new ones and parked ones that have a request to read.
type siteListener struct {
	inner            net.Listener
	tls              *tls.Config
	handshakeTimeout time.Duration
	idleTimeout      time.Duration
	log              *slog.Logger

	ready chan net.Conn
	done  chan struct{}

	mu      sync.Mutex
	closed  bool
	err     error                  // why accepting stopped
	waiting map[*siteConn]struct{} // connections parked with a goroutine each (no poller)
	poller  poller
}

func newSiteListener(inner net.Listener, tc *tls.Config, handshakeTimeout, idleTimeout time.Duration, log *slog.Logger) *siteListener {
	l := &siteListener{inner: inner, tls: tc, handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, log: log,
		ready: make(chan net.Conn), done: make(chan struct{}), waiting: make(map[*siteConn]struct{})}
	l.poller = newPoller(l)
	go l.acceptLoop()
	return l
}

func (l *siteListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		return nil, l.err
	}
}

func (l *siteListener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting and closes the parked connections; connections the
// HTTP server is serving are its own to close.
func (l *siteListener) Close() error {
	return l.stop(net.ErrClosed)
}

func (l *siteListener) stop(why error) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed, l.err = true, why
	close(l.done)
	waiting := l.waiting
	l.waiting = nil
	l.mu.Unlock()
	err := l.inner.Close()
	l.poller.stop()
	for c := range waiting {
		_ = c.Conn.Close()
	}
	return err
}

func (l *siteListener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !errors.Is(err, net.ErrClosed) {
				// As net/http does: out of file descriptors and the like.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.log.Warn("accepting a site connection", "err", err, "retry_in", delay)
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					return
				}
			}
			_ = l.stop(err)
			return
		}
		delay = 0
		go l.handshake(c)
	}
}

// handshake runs the TLS handshake on its own short-lived goroutine, so that
// the stack it needs is given back at once rather than kept by the
// connection's serving goroutine.
func (l *siteListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.tls)
	if l.handshakeTimeout > 0 {
		_ = c.SetDeadline(time.Now().Add(l.handshakeTimeout))
	}
	if err := tc.Handshake(); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		l.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	l.deliver(&siteConn{Conn: tc, l: l})
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET":
		return true
	}
	return false
}

func (l *siteListener) deliver(c *siteConn) {
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Conn.Close()
	}
}

// park takes back a connection the HTTP server let go of between requests,
// until the next request arrives.
func (l *siteListener) park(c *siteConn) {
	if l.poller.park(c) {
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Conn.Close()
		return
	}
	l.waiting[c] = struct{}{}
	l.mu.Unlock()
	go l.wait(c)
}

// handBack gives a connection with a request to read to the HTTP server,
// through Accept.
func (l *siteListener) handBack(c *siteConn) {
	select {
	case l.ready <- c:
	default:
		go l.deliver(c) // Accept is busy: do not hold up the caller
	}
}

// wait is parking where the poller cannot: a goroutine blocks reading the
// next request's first byte, then hands the connection to the HTTP server.
func (l *siteListener) wait(c *siteConn) {
	if l.idleTimeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(l.idleTimeout))
	}
	n, err := c.Conn.Read(c.one[:])
	l.mu.Lock()
	_, mine := l.waiting[c]
	delete(l.waiting, c)
	l.mu.Unlock()
	if !mine {
		return // closed by stop
	}
	if n == 0 {
		// The site hung up, or stayed idle past the idle timeout.
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.log.Debug("idle site connection", "remote", c.RemoteAddr().String(), "err", err)
		}
		_ = c.Conn.Close()
		return
	}
	_ = c.Conn.SetReadDeadline(time.Time{})
	c.pending = c.one[:n]
	l.deliver(c)
}

// siteConn is a TLS connection with its handshake done, as the HTTP server
// sees it. It implements ConnectionState, so requests carry Request.TLS.
type siteConn struct {
	*tls.Conn
	l       *siteListener
	auth    connAuth // the client certificate's verification, for the connection's life
	pending []byte   // read ahead while parked, served before the connection
	one     [1]byte
	park    parkState // the poller's

	// Parking, with the HTTP server's serving goroutine (and ConnState).
	fresh     bool         // served from Accept, not read from yet
	bufSize   int          // the HTTP server's read buffer: its first read on the connection
	between   atomic.Int32 // where the HTTP server is between two requests
	parkClose atomic.Bool  // the HTTP server was told the input ended: park at Close
}

// Between two requests net/http's serving goroutine reports StateIdle, sets
// the idle timeout as read deadline, waits for the first bytes of the next
// request (a read into its buffer, unless it holds enough already), then
// sets the header timeout as read deadline.
const (
	inRequest   int32 = iota
	idleState         // StateIdle reported
	waitRequest       // idle timeout set: the next read, if any, is the wait
)

// errParked ends the HTTP server's wait for the next request on a
// connection that is parked instead.
var errParked = errors.New("site connection parked between requests")

func (c *siteConn) Read(b []byte) (int, error) {
	if c.fresh {
		c.fresh, c.bufSize = false, len(b)
	}
	if c.between.Swap(inRequest) == waitRequest && len(b) == c.bufSize && len(c.pending) == 0 {
		// The HTTP server waits for a request with its read buffer empty
		// (its whole size asked for): nothing of the next request has been
		// read, so it can let go of the connection.
		c.parkClose.Store(true)
		return 0, errParked
	}
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *siteConn) SetReadDeadline(t time.Time) error {
	if !c.between.CompareAndSwap(idleState, waitRequest) {
		c.between.Store(inRequest) // the wait is over (or never was)
	}
	return c.Conn.SetReadDeadline(t)
}

// Close parks the connection when the HTTP server lets go of it between
// requests, and closes it otherwise.
func (c *siteConn) Close() error {
	if c.parkClose.Swap(false) {
		c.l.park(c)
		return nil
	}
	return c.Conn.Close()
}

// siteConnState is the HTTP server's ConnState hook: it follows the server's
// view of a site connection.
func siteConnState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*siteConn)
	if !ok {
		return
	}
	switch st {
	case http.StateNew:
		c.fresh = true
	case http.StateIdle:
		// The last response is complete and the connection is positioned
		// at the next request (net/http goes idle only then).
		c.between.Store(idleState)
	case http.StateActive:
		c.between.Store(inRequest)
	}
}

// poller parks connections without a goroutine each where the system allows.
type poller interface {
	// park watches c until it has a request to read and hands it back
	// then, or closes it after the idle timeout; false if it cannot (or is
	// stopped), and the listener falls back to a goroutine that waits.
	park(c *siteConn) bool
	// stop closes the connections parked and parks no more.
	stop()
}

type noPoller struct{}

func (noPoller) park(*siteConn) bool { return false }
func (noPoller) stop()               {}
