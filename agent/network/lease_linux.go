package network

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A lease's life on its link, as RFC 2131 §4.4.5 has it. At T1 a REQUEST
// for the address goes to the server that gave it (RENEWING), at T2 to any
// server on the link (REBINDING); each is sent again, while unanswered, at
// half the time left, a minute apart at least. A server's NAK (the link is
// on another network now, or the address went to another machine) asks for
// a new lease at once. When the lease runs out the address and its routes
// go — they are no longer the machine's — and DHCP is asked again, 5 s
// later doubling to a minute, for the address the link had. A link that gets
// its carrier back is asked at once (a cable moved), an infinite lease's
// too.

// lifecycle is one link's lease, renewed until ctx ends.
type lifecycle struct {
	ctx     context.Context
	l       netlink.Link
	cfg     Config
	metric  int
	kick    <-chan struct{} // the link got its carrier back
	renewed func(Lease)     // told of every lease got, and of a lost one (no address)
	lease   Lease           // what the link holds, or held when lost
	got     time.Time       // when lease was asked for
	lost    bool            // lease ran out (or was refused): the link has no address from it
}

// renew keeps lease on l until ctx ends (lifecycle).
func renew(ctx context.Context, l netlink.Link, lease Lease, metric int, cfg Config, kick <-chan struct{}, renewed func(Lease)) {
	defer func() {
		if r := recover(); r != nil {
			cfg.Log.Warn("DHCP renewal crashed", "iface", lease.Iface, "reason", fmt.Sprint(r))
		}
	}()
	lc := &lifecycle{ctx: ctx, l: l, cfg: cfg, metric: metric, kick: kick, renewed: renewed, lease: lease, got: time.Now()}
	for ctx.Err() == nil {
		if !lc.lost {
			lc.bound()
		} else if !lc.reacquire() {
			return
		}
	}
}

// resendMin is the shortest wait between two REQUESTs of a renewal (a
// minute; tests shorten it).
func (lc *lifecycle) resendMin() time.Duration { return cmp.Or(lc.cfg.resendMin, time.Minute) }

// bound waits for the lease's renewal and runs it; it returns once the link
// has a new lease (or the same one renewed), has lost it, or ctx ended.
func (lc *lifecycle) bound() {
	name := lc.lease.Iface
	t1, t2 := lc.lease.times()
	renewAt, rebindAt, expires := lc.got.Add(t1), lc.got.Add(t2), lc.got.Add(lc.lease.Lifetime)
	tryAt := renewAt
	var carrierAt time.Time // a try after the carrier came back failed: the next one
	carrierWait := 10 * time.Second
	for {
		at := tryAt
		if lc.lease.infinite() {
			at = time.Time{}
		}
		if !carrierAt.IsZero() && (at.IsZero() || carrierAt.Before(at)) {
			at = carrierAt
		}
		var due <-chan time.Time
		if !at.IsZero() {
			due = time.After(time.Until(at))
		}
		carrier := false
		select {
		case <-lc.ctx.Done():
			return
		case <-lc.kick:
			lc.cfg.Log.Info("link has carrier again: asking DHCP again", "iface", name)
			carrier, carrierWait = true, 10*time.Second
		case <-due:
			carrier = !carrierAt.IsZero() && !time.Now().Before(carrierAt)
		}
		now := time.Now()
		if carrier {
			// Another network, perhaps: DISCOVER, asking for the address
			// (a server there offers another). The switch port may not
			// forward yet (spanning tree holds it 30 s or more): a
			// failure is asked again soon, the lease kept meanwhile.
			if fresh, err := dhcpWant(lc.ctx, lc.l, lc.cfg, lc.lease.Addr.IP); err == nil {
				if lc.adopt(fresh, now) {
					return
				}
			} else if lc.ctx.Err() == nil {
				carrierAt = now.Add(carrierWait)
				lc.cfg.Log.Warn("asking DHCP after the carrier came back failed; the lease is kept", "iface", name,
					"reason", err.Error(), "next_in", carrierWait)
				carrierWait = lc.cfg.nextRetry(carrierWait)
				continue
			}
			carrierAt = time.Time{}
			continue
		}
		if lc.lease.infinite() {
			continue
		}
		switch {
		case now.Before(tryAt):
			continue
		case !now.Before(expires):
			lc.lose("DHCP lease ran out: its address and routes are removed; asking DHCP again")
			return
		case !now.Before(rebindAt), lc.lease.Server == nil:
			// REBINDING (or a lease without a server to ask): any
			// server on the link may answer.
			got, err := lc.request(net.IPv4bcast, expires)
			if lc.answered(got, err, now, "rebinding") || lc.ctx.Err() != nil {
				return
			}
			tryAt = minTime(now.Add(max(lc.resendMin(), time.Until(expires)/2)), expires)
			lc.cfg.Log.Warn("DHCP rebinding got no answer", "iface", name, "reason", err.Error(),
				"lease_left", time.Until(expires).Round(time.Second), "next_in", time.Until(tryAt).Round(time.Second))
		default:
			// RENEWING: the server that gave the lease, unicast.
			got, err := lc.request(lc.lease.Server, rebindAt)
			if lc.answered(got, err, now, "renewing") || lc.ctx.Err() != nil {
				return
			}
			tryAt = minTime(now.Add(max(lc.resendMin(), time.Until(rebindAt)/2)), rebindAt)
			lc.cfg.Log.Warn("DHCP renewal got no answer from the server", "iface", name, "server", lc.lease.Server.String(),
				"reason", err.Error(), "lease_left", time.Until(expires).Round(time.Second), "next_in", time.Until(tryAt).Round(time.Second))
		}
	}
}

// answered adopts a renewal's lease, or asks for a new one after a NAK; it
// reports whether the link's lease changed state (bound returns then).
func (lc *lifecycle) answered(next Lease, err error, sent time.Time, how string) bool {
	var nak *nakError
	switch {
	case err == nil:
		lc.cfg.Log.Debug("dhcp lease renewed", "iface", next.Iface, "addr", next.Addr.String(), "how", how)
		return lc.adopt(next, sent)
	case errors.As(err, &nak):
		lc.cfg.Log.Warn("DHCP server refused the lease's renewal: asking for a new lease", "iface", lc.lease.Iface,
			"addr", lc.lease.Addr.String(), "server", nak.server.String(), "reason", nak.Error())
		now := time.Now()
		if fresh, err := dhcpWant(lc.ctx, lc.l, lc.cfg, nil); err == nil && lc.adopt(fresh, now) {
			return true
		}
		if lc.ctx.Err() == nil {
			lc.lose("DHCP refused the lease and gave no new one: its address and routes are removed; asking DHCP again")
		}
		return true
	}
	return false
}

// adopt applies next, which came for a request sent at sent: the address
// and routes the link held and next does not have go. It reports whether
// next was applied.
func (lc *lifecycle) adopt(next Lease, sent time.Time) bool {
	if err := apply(lc.l, next, lc.metric); err != nil {
		lc.cfg.Log.Warn("applying the DHCP lease failed", "iface", next.Iface, "reason", err.Error())
		return false
	}
	changed := lc.lost || leaseChanged(lc.lease, next)
	if !lc.lost {
		if !next.Addr.IP.Equal(lc.lease.Addr.IP) || next.Addr.Mask.String() != lc.lease.Addr.Mask.String() {
			// The link moved (another network, a server that forgot it).
			lc.cfg.Log.Warn("DHCP gave a new address", "iface", next.Iface, "old", lc.lease.Addr.String(), "new", next.Addr.String())
		}
		dropOld(lc.l, lc.lease, next, lc.metric)
	} else {
		lc.cfg.Log.Info("dhcp lease", "iface", next.Iface, "addr", next.Addr.String(), "after", "the lease ran out")
	}
	lc.lease, lc.got, lc.lost = next, sent, false
	lc.renewed(next)
	if changed && lc.cfg.OnRenewed != nil {
		// Not in this goroutine: stop waits for it, and the caller may
		// hold what OnRenewed takes.
		go lc.cfg.OnRenewed(next)
	}
	return true
}

// lose removes the lease's address and routes from the link and tells
// renewed and OnRenewed of a lease without an address.
func (lc *lifecycle) lose(msg string) {
	lc.cfg.Log.Warn(msg, "iface", lc.lease.Iface, "addr", lc.lease.Addr.String())
	dropOld(lc.l, lc.lease, Lease{}, lc.metric)
	lc.lost = true
	gone := Lease{Iface: lc.lease.Iface, MAC: lc.lease.MAC}
	lc.renewed(gone)
	if lc.cfg.OnRenewed != nil {
		go lc.cfg.OnRenewed(gone)
	}
}

// reacquire asks DHCP for a lease again, for the address the link had,
// until one comes (applied) or ctx ends: at once, then Retry later (5 s when
// zero), twice as long each time up to RetryMax, and at once when the link
// gets its carrier back. It returns false when the lease is not to be asked
// for any more: ctx ended, or the link is gone.
func (lc *lifecycle) reacquire() bool {
	for wait := cmp.Or(lc.cfg.Retry, 5*time.Second); ; wait = lc.cfg.nextRetry(wait) {
		if linkGone(lc.l, lc.cfg.Log) {
			return false
		}
		sent := time.Now()
		if fresh, err := dhcpWant(lc.ctx, lc.l, lc.cfg, lc.lease.Addr.IP); err == nil {
			if lc.adopt(fresh, sent) {
				return true
			}
		} else if lc.ctx.Err() == nil {
			lc.cfg.Log.Debug("no DHCP lease yet", "iface", lc.lease.Iface, "reason", err.Error(), "next_in", wait)
		}
		select {
		case <-lc.ctx.Done():
			return false
		case <-lc.kick:
		case <-time.After(wait):
		}
	}
}

// nakError is a server's DHCPNAK to a renewal.
type nakError struct {
	server net.IP
	msg    string
}

func (e *nakError) Error() string {
	if e.msg == "" {
		return "DHCPNAK"
	}
	return "DHCPNAK: " + e.msg
}

// request asks for the lease's address again (a REQUEST with ciaddr, RFC
// 2131 §4.3.2) from server, or from every server on the link when server is
// the broadcast address, until an answer or by (DHCPTimeout at most). The
// REQUEST leaves from the link's address through a UDP socket bound to the
// link: a server behind a relay gets it through the router, and its answer
// comes to the address.
func (lc *lifecycle) request(server net.IP, by time.Time) (Lease, error) {
	ctx, cancel := context.WithTimeout(lc.ctx, lc.cfg.DHCPTimeout)
	defer cancel()
	ctx, cancel2 := context.WithDeadline(ctx, by)
	defer cancel2()
	name, hw := lc.l.Attrs().Name, lc.l.Attrs().HardwareAddr
	conn, err := linkUDP(ctx, name)
	if err != nil {
		return Lease{}, fmt.Errorf("opening a DHCP socket on %s: %w", name, err)
	}
	c, err := nclient4.NewWithConn(conn, hw, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3),
		nclient4.WithLogger(dhcpLogger{lc.cfg.Log.With("iface", name)}))
	if err != nil {
		conn.Close()
		return Lease{}, err
	}
	defer c.Close()
	req := message(hw,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(lc.lease.Addr.IP),
		dhcpv4.WithRequestedOptions(requested...),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
	)
	ack, err := c.SendAndRead(ctx, &net.UDPAddr{IP: server, Port: dhcpv4.ServerPort}, req,
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	if err != nil {
		return Lease{}, fmt.Errorf("no answer to the REQUEST for %s sent to %s: %w", lc.lease.Addr.IP, server, err)
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return Lease{}, &nakError{server: ack.ServerIdentifier(), msg: ack.Message()}
	}
	return LeaseFromACK(name, hw, ack)
}

// linkUDP is a UDP socket on the DHCP client's port bound to link name: its
// broadcasts leave there, and it gets the answers that come there only (a
// renewal runs on each link).
func linkUDP(ctx context.Context, name string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}
		})
		return cmp.Or(err, serr)
	}}
	return lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", dhcpv4.ClientPort))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
