package network

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/etoile-os/etoile/agent/safego"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A lease's life on its link, as RFC 2131 §4.4.5 has it. At T1 a REQUEST
// for the address goes to the server that gave it (RENEWING), at T2 to any
// server on the link (REBINDING); each is sent again, while unanswered, at
// half the time left, a minute apart at least. When a server refuses it (a
// NAK: the link is on another network now, or the address went to another
// machine) or the lease runs out, the address and its routes go — they are
// no longer the machine's — and DHCP is asked again: at once, then 5 s
// later doubling to a minute; for the address the link had, unless a
// server refused it. A link that gets its carrier back is asked at once (a
// cable moved), an infinite lease's too.

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
	want    net.IP          // while lost: the address to ask for (nil after a NAK)
	// mtuFixed tells whether the machine config sets the link's MTU: a
	// lease's (option 26) is not used then.
	mtuFixed func() bool
}

// renew keeps lease on l until ctx ends (lifecycle).
func renew(ctx context.Context, l netlink.Link, lease Lease, metric int, cfg Config, kick <-chan struct{}, renewed func(Lease), mtuFixed func() bool) {
	// A crash ends the renewal (logged): the address stays until the
	// machine config is applied again or the machine restarts.
	defer safego.Recover(cfg.Log, "DHCP renewal on "+lease.Iface)
	got := lease.asked // its times count from when it was asked for (RFC 2131 §4.4.1)
	if got.IsZero() {
		got = time.Now()
	}
	lc := &lifecycle{ctx: ctx, l: l, cfg: cfg, metric: metric, kick: kick, renewed: renewed, lease: lease, got: got, mtuFixed: mtuFixed}
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
			fresh, err := dhcpWant(lc.ctx, lc.l, lc.cfg, lc.lease.Addr.IP)
			if err == nil {
				if err = lc.adopt(fresh, fresh.asked); err == nil {
					return
				}
			}
			if lc.ctx.Err() != nil {
				return
			}
			carrierAt = time.Now().Add(carrierWait)
			lc.cfg.Log.Warn("asking DHCP after the carrier came back failed; the lease is kept", "iface", name,
				"reason", err.Error(), "next_in", carrierWait)
			carrierWait = lc.cfg.nextRetry(carrierWait)
			continue
		}
		if lc.lease.infinite() {
			continue
		}
		var (
			how, msg string
			until    time.Time // the phase's end
			to       net.IP
		)
		switch { // due fired at tryAt
		case !now.Before(expires):
			lc.lose("DHCP lease ran out: its address and routes are removed; asking DHCP again", lc.lease.Addr.IP)
			return
		case !now.Before(rebindAt), lc.lease.Server == nil:
			// REBINDING (or a lease without a server to ask): any
			// server on the link may answer.
			how, msg, until, to = "rebinding", "DHCP rebinding failed", expires, net.IPv4bcast
		default:
			// RENEWING: the server that gave the lease, unicast.
			how, msg, until, to = "renewing", "DHCP renewal from its server failed", rebindAt, lc.lease.Server
		}
		got, err := lc.request(to, until)
		done, err := lc.answered(got, err, now, how)
		if done || lc.ctx.Err() != nil {
			return
		}
		// Sent again at half the time left, a minute apart at least.
		tryAt = minTime(time.Now().Add(max(lc.resendMin(), time.Until(until)/2)), until)
		lc.cfg.Log.Warn(msg, "iface", name, "to", to.String(), "reason", err.Error(),
			"lease_left", time.Until(expires).Round(time.Second), "next_in", time.Until(tryAt).Round(time.Second))
	}
}

// answered adopts a renewal's lease, or after a NAK drops the address and
// has a new lease asked for; it reports whether the link's lease changed
// state (bound returns then), else why not.
func (lc *lifecycle) answered(next Lease, err error, sent time.Time, how string) (bool, error) {
	var nak *nakError
	switch {
	case err == nil:
		if next.Server == nil {
			next.Server = lc.lease.Server // an ACK without option 54: the same server
		}
		if err := lc.adopt(next, sent); err != nil {
			return false, err
		}
		lc.cfg.Log.Debug("dhcp lease renewed", "iface", next.Iface, "addr", next.Addr.String(), "how", how)
		return true, nil
	case errors.As(err, &nak):
		// The address is not the machine's any more (RFC 2131 §4.4.5):
		// it goes at once, and a new lease is asked for — not that one.
		lc.lose("DHCP server refused the lease's renewal: its address and routes are removed; asking for a new lease",
			nil, "server", nak.server.String(), "reason", nak.Error())
		return true, nil
	}
	return false, err
}

// adopt applies next, which came for a request sent at sent: the address
// and routes the link held and next does not have go. A lease it cannot
// apply leaves the link as it was.
func (lc *lifecycle) adopt(next Lease, sent time.Time) error {
	moved := !next.Addr.IP.Equal(lc.lease.Addr.IP) || next.Addr.Mask.String() != lc.lease.Addr.Mask.String()
	if next.asked.IsZero() {
		next.asked = sent // a renewal's: the address's lifetime counts from then
	}
	undoMTU := setMTU(lc.l, next, lc.mtuFixed != nil && lc.mtuFixed(), lc.cfg.Log)
	if err := apply(lc.l, next, lc.metric); err != nil {
		// What next set goes, and what it replaced of the lease comes back
		// (the MTU too).
		undoMTU()
		if lc.lost {
			dropOld(lc.l, next, Lease{}, lc.metric)
		} else {
			dropOld(lc.l, next, lc.lease, lc.metric)
			_ = apply(lc.l, lc.lease, lc.metric)
		}
		return fmt.Errorf("applying the lease for %s: %w", next.Addr.String(), err)
	}
	changed := lc.lost || leaseChanged(lc.lease, next)
	if moved {
		// Another network, a server that forgot the machine or gave its
		// address to another.
		lc.cfg.Log.Warn("DHCP gave a new address", "iface", next.Iface, "old", lc.lease.Addr.String(), "new", next.Addr.String())
	} else if lc.lost {
		lc.cfg.Log.Info("dhcp lease again", "iface", next.Iface, "addr", next.Addr.String())
	}
	if !lc.lost {
		dropOld(lc.l, lc.lease, next, lc.metric)
	}
	lc.lease, lc.got, lc.lost = next, sent, false
	lc.renewed(next)
	if changed && lc.cfg.OnRenewed != nil {
		// Not in this goroutine: stop waits for it, and the caller may
		// hold what OnRenewed takes.
		safego.Go(lc.cfg.Log, "following a renewed DHCP lease", func() { lc.cfg.OnRenewed(next) })
	}
	return nil
}

// lose removes the lease's address and routes from the link, tells renewed
// and OnRenewed of a lease without an address, and has reacquire ask for
// want (nil: any address).
func (lc *lifecycle) lose(msg string, want net.IP, attrs ...any) {
	lc.cfg.Log.Warn(msg, append([]any{"iface", lc.lease.Iface, "addr", lc.lease.Addr.String()}, attrs...)...)
	dropOld(lc.l, lc.lease, Lease{}, lc.metric)
	if lc.mtuFixed == nil || !lc.mtuFixed() {
		restoreMTU(lc.l, lc.cfg.Log, "the lease is lost")
	}
	lc.lost, lc.want = true, want
	gone := Lease{Iface: lc.lease.Iface, MAC: lc.lease.MAC}
	lc.renewed(gone)
	if lc.cfg.OnRenewed != nil {
		safego.Go(lc.cfg.Log, "following a lost DHCP lease", func() { lc.cfg.OnRenewed(gone) })
	}
}

// reacquire asks DHCP for a lease again, for the address the link had
// (unless a server refused it), until one comes (applied) or ctx ends: at once, then Retry later (5 s when
// zero), twice as long each time up to RetryMax, and at once when the link
// gets its carrier back. It returns false when the lease is not to be asked
// for any more: ctx ended, or the link is gone.
//
// A try the carrier's return brought that fails (a switch port that does
// not forward yet) is followed by the first wait again, not a longer one:
// the backoff starts again, as the boot's asking again does.
func (lc *lifecycle) reacquire() bool {
	first := cmp.Or(lc.cfg.Retry, 5*time.Second)
	for wait := first; ; {
		if linkGone(lc.l, lc.cfg.Log) {
			return false
		}
		fresh, err := lc.ask()
		if err == nil {
			if err = lc.adopt(fresh, fresh.asked); err == nil {
				return true
			}
		}
		if lc.ctx.Err() == nil {
			lc.cfg.Log.Debug("no DHCP lease yet", "iface", lc.lease.Iface, "reason", err.Error(), "next_in", wait)
		}
		select {
		case <-lc.ctx.Done():
			return false
		case <-lc.kick:
			lc.cfg.Log.Info("link has carrier again: asking DHCP now", "iface", lc.lease.Iface)
			wait = first
		case <-time.After(wait):
			wait = lc.cfg.nextRetry(wait)
		}
	}
}

// ask runs DHCP on the link for reacquire, asking for lc.want (the
// test's dhcpHook stands in for it).
func (lc *lifecycle) ask() (Lease, error) {
	if lc.cfg.dhcpHook != nil {
		return lc.cfg.dhcpHook(lc.ctx, lc.l)
	}
	return dhcpWant(lc.ctx, lc.l, lc.cfg, lc.want)
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
	lease, err := LeaseFromACK(name, hw, ack)
	refused(lc.cfg.Log, err)
	noteLease(lc.cfg.Log, lease, err)
	return lease, err
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
