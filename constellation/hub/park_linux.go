package hub

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// epollPoller parks idle site connections without a goroutine each: their
// sockets wait in an epoll set of the hub's own, watched by one goroutine
// that hands a connection back to the HTTP server as soon as it is readable
// (the next request, or the site hanging up) and closes those idle past the
// idle timeout. The epoll descriptor itself waits in the Go runtime's
// poller, so that goroutine sleeps and wakes like any network read, without
// a thread blocked in a system call.
type epollPoller struct {
	l     *siteListener
	ep    *os.File        // the epoll set, in the runtime's poller
	epRaw syscall.RawConn // its descriptor, held open while in use

	mu      sync.Mutex
	stopped bool
	next    uint64 // the last id given
	byID    map[uint64]*siteConn
}

// parkState is a connection's parking with the poller.
type parkState struct {
	raw   syscall.RawConn
	id    uint64
	since time.Time // parked at
	added bool      // in the epoll set (disarmed between parkings, until closed)
}

func newPoller(l *siteListener) poller {
	p, err := newEpollPoller(l)
	if err != nil {
		l.log.Warn("no epoll set for idle site connections: one goroutine each", "err", err)
		return noPoller{}
	}
	go p.loop()
	return p
}

func newEpollPoller(l *siteListener) (*epollPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	epRaw, err := ep.SyscallConn()
	if err == nil {
		err = ep.SetReadDeadline(time.Time{}) // fails when not in the runtime's poller
	}
	if err != nil {
		_ = ep.Close()
		return nil, err
	}
	return &epollPoller{l: l, ep: ep, epRaw: epRaw, byID: make(map[uint64]*siteConn)}, nil
}

func (p *epollPoller) park(c *siteConn) bool {
	st := &c.park
	if st.raw == nil {
		sc, ok := c.Conn.NetConn().(syscall.Conn)
		if !ok {
			return false
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		st.raw = raw
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return false
	}
	p.next++
	id := p.next
	st.id, st.since = id, time.Now()
	p.byID[id] = c
	p.mu.Unlock()
	var eperr, cerr error
	err := st.raw.Control(func(fd uintptr) {
		eperr = p.epRaw.Control(func(epfd uintptr) {
			// One shot, level-triggered: a request already there wakes
			// it at once. A woken connection stays in the set, disarmed,
			// so that parking it again takes one system call; closing
			// its socket takes it out.
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
			if st.added {
				if cerr = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_MOD, int(fd), &ev); cerr != unix.ENOENT {
					return
				}
			}
			if cerr = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_ADD, int(fd), &ev); cerr == nil {
				st.added = true
			}
		})
	})
	if err = errors.Join(err, eperr, cerr); err != nil {
		if p.take(id) == nil {
			return true // closed by stop meanwhile
		}
		p.l.log.Debug("parking a site connection", "err", err)
		return false
	}
	return true
}

// take removes id from the parked set; nil if it was not there.
func (p *epollPoller) take(id uint64) *siteConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.byID[id]
	delete(p.byID, id)
	return c
}

func (p *epollPoller) loop() {
	// Idle connections are looked for a few times per idle timeout.
	var sweep time.Duration
	if d := p.l.idleTimeout; d > 0 {
		sweep = min(max(d/4, 10*time.Millisecond), time.Second)
	}
	events := make([]unix.EpollEvent, 256)
	var werr error
	for {
		if sweep > 0 {
			_ = p.ep.SetReadDeadline(time.Now().Add(sweep))
		}
		err := p.epRaw.Read(func(fd uintptr) bool {
			for {
				n, err := unix.EpollWait(int(fd), events, 0)
				if errors.Is(err, unix.EINTR) {
					continue
				}
				if err != nil {
					werr = err
					return true
				}
				for _, ev := range events[:n] {
					id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
					if c := p.take(id); c != nil {
						p.l.handBack(c)
					}
				}
				if n < len(events) {
					return false // none left: wait until the set is readable
				}
			}
		})
		switch {
		case werr != nil:
			p.l.log.Error("waiting on idle site connections", "err", werr)
			p.fail()
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.expire(time.Now().Add(-p.l.idleTimeout))
		case err != nil:
			return // stopped
		}
	}
}

// expire closes the connections parked since before t, as the HTTP server
// closes idle connections.
func (p *epollPoller) expire(t time.Time) {
	var idle []*siteConn
	p.mu.Lock()
	for id, c := range p.byID {
		if c.park.since.Before(t) {
			delete(p.byID, id)
			idle = append(idle, c)
		}
	}
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.Conn.Close()
	}
}

// fail hands every parked connection back to the HTTP server (which closes
// idle ones after its own idle timeout) and parks no more.
func (p *epollPoller) fail() { p.shut(p.l.deliver) }

func (p *epollPoller) stop() { p.shut(func(c *siteConn) { _ = c.Conn.Close() }) }

// shut parks no more and gives every parked connection to each.
func (p *epollPoller) shut(each func(*siteConn)) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	parked := p.byID
	p.byID = nil
	p.mu.Unlock()
	_ = p.ep.Close()
	for _, c := range parked {
		each(c)
	}
}
