package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/netkind"
	"github.com/etoile-os/etoile/agent/safego"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// locked is safego.Locked: a panic under the lock (caught above) leaves it
// usable (AllLeases, stop…).
var locked = safego.Locked

// staticMetric is the default route's metric for the machine config's
// first interface's gateway (and gateway6): ahead of DHCP's (100 + the
// link's index). The entry at index i in the config gets staticMetric + i
// (or the next free one, addDefaultRoute): each link's default route stays
// beside the others' (the kernel keys a default route by its metric, not
// its link), and the first listed leads — the route K3s takes its node
// address from, as the ready line's ip= is the first static address.
const staticMetric = config.StaticMetric

// The routes the agent adds are marked with their origin (rtm_protocol,
// "proto dhcp" and "proto static" in ip route): the agent removes only
// its own, not the kernel's (an IPv6 prefix route's metric, 256, or a
// router advertisement's, 1024, may equal a lease's) or anyone else's.
const (
	protoDHCP   = netlink.RouteProtocol(unix.RTPROT_DHCP)
	protoStatic = netlink.RouteProtocol(unix.RTPROT_STATIC)
)

// renewals holds each link's DHCP: the boot's first exchange while it runs
// (Up's, which may go on after Up has returned), then the lease's renewal:
// how to stop it, when it has stopped, and the address it keeps (a lease
// that came after Up collected its Result is in none). It also knows the links a
// machine config configured, on which the boot's DHCP no longer runs.
type renewals struct {
	mu         sync.Mutex
	m          map[string]*renewal
	configured map[string]bool
	// late are the leases that came after Up collected its Result (a
	// link whose first exchange failed and was asked again, a link that
	// appeared later), in the order they came, one per link: in no
	// Result's Leases, they still give name and NTP servers
	// (Result.AllLeases).
	late []Lease
	// renewed are the leases renewals got since, by link: a boot lease
	// in a Result shows as renewed in AllLeases (a new address, other
	// name servers).
	renewed map[string]Lease
	// onCable, once Up has returned, is told of a link that got carrier
	// with no DHCP on it (not configured by the machine config); only
	// names the links Up configures (Config.Only).
	onCable func(netlink.Link)
	only    []string
	// mtus are the links whose MTU a machine config set (mtu:, or a VLAN's
	// mtu: on its parent): DHCP's (option 26) is not used on them. Once
	// set it stays, as the MTU itself does when a later config drops it.
	mtus map[string]bool
	// pending are bond members the machine config lists that were not
	// there when their bond was made, by their spec (name or MAC): one
	// that appears joins its bond (joinPending).
	pending map[string]pendingMember
	// bondMu is held while an apply makes its bonds and while a link that
	// appeared joins one (joinPending), so that the two never interleave.
	bondMu sync.Mutex
	// extra are the IPv4 routes the machine config gives links beside
	// their DHCP lease, by link: a renewal that applies another address
	// makes them again (keepLeaseRoutes).
	extra map[string]leaseRoutes
}

// setMTUFixed records that the machine config sets link name's MTU.
func (r *renewals) setMTUFixed(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mtus == nil {
		r.mtus = map[string]bool{}
	}
	r.mtus[name] = true
}

// mtuFixed reports whether the machine config sets link name's MTU.
func (r *renewals) mtuFixed(name string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mtus[name]
}

// watchCables has cabled and appeared act from now on (Up's end): on is
// told of each link of only (or each physical one) that gets carrier with
// no DHCP running on it.
func (r *renewals) watchCables(only []string, on func(netlink.Link)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onCable, r.only = on, only
}

// cabled tells onCable of l, which has carrier, unless DHCP runs on it or
// the machine config configures it.
func (r *renewals) cabled(l netlink.Link) {
	var (
		on   func(netlink.Link)
		only []string
	)
	name := l.Attrs().Name
	locked(&r.mu, func() {
		on, only = r.onCable, r.only
		if rn := r.m[name]; (rn != nil && rn.index == l.Attrs().Index) || r.configured[name] {
			on = nil
		}
	})
	if on != nil && afterBoot(l, only) {
		on(l)
	}
}

// gone ends what runs for the link with index idx, which went away (a NIC
// unplugged, moved into a pod's namespace): a NIC that comes back under
// its name is asked again.
func (r *renewals) gone(idx int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, rn := range r.m {
		if rn.index == idx {
			rn.cancel()
			delete(r.m, name)
		}
	}
}

// afterBoot reports whether l, met after the boot's network step, is one
// to set up and ask DHCP on: one of only, or (only empty) a physical
// Ethernet link that is not an SR-IOV virtual function or a switch
// representor (an operator makes those for pods) and not enslaved to a
// bridge or bond.
func afterBoot(l netlink.Link, only []string) bool {
	if !ours(l, only) {
		return false
	}
	if len(only) > 0 {
		return true
	}
	if l.Attrs().MasterIndex != 0 {
		return false
	}
	dir := filepath.Join("/sys/class/net", l.Attrs().Name)
	if _, err := os.Stat(filepath.Join(dir, netkind.VFMarker)); err == nil {
		return false // a VF
	}
	if b, err := os.ReadFile(filepath.Join(dir, "phys_port_name")); err == nil && netkind.Representor(b) {
		return false
	}
	return true
}

// appeared sets up l, a link that appeared after Up returned (a USB NIC
// plugged in, a driver that loaded late), when it is one to configure:
// its carrier, when it comes, is told to cabled. A bond member the machine
// config waited for joins its bond instead (joinPending).
func (r *renewals) appeared(l netlink.Link, log *slog.Logger) {
	if r.joinPending(l, log) {
		return // a bond's member the config waited for
	}
	var (
		on   func(netlink.Link)
		only []string
	)
	locked(&r.mu, func() { on, only = r.onCable, r.only })
	if on == nil || !afterBoot(l, only) {
		return
	}
	if err := netlink.LinkSetUp(l); err != nil {
		log.Warn("setting up a network link that appeared failed", "iface", l.Attrs().Name, "reason", err.Error())
		return
	}
	log.Info("network link appeared: set up", "iface", l.Attrs().Name)
}

// setLateLocked records link lease.Iface's lease in no Result (a renewal's
// replaces it).
func (r *renewals) setLateLocked(lease Lease) {
	if i := slices.IndexFunc(r.late, func(l Lease) bool { return l.Iface == lease.Iface }); i >= 0 {
		r.late[i] = lease
		return
	}
	r.late = append(r.late, lease)
}

// renewedLocked records a renewal's lease: a late lease's is replaced, a
// Result's is kept apart (current) — its address, name or NTP servers may
// have changed.
func (r *renewals) renewedLocked(lease Lease) {
	if slices.ContainsFunc(r.late, func(l Lease) bool { return l.Iface == lease.Iface }) {
		r.setLateLocked(lease)
		return
	}
	if r.renewed == nil {
		r.renewed = map[string]Lease{}
	}
	r.renewed[lease.Iface] = lease
}

// current returns leases with each one a renewal replaced as renewed.
func (r *renewals) current(leases []Lease) []Lease {
	out := slices.Clone(leases)
	if r == nil {
		return out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, l := range out {
		if n, ok := r.renewed[l.Iface]; ok && l.Addr.IP != nil && !l.static {
			out[i] = n
		}
	}
	return out
}

// lateLeases returns the leases in no Result.
func (r *renewals) lateLeases() []Lease {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.late)
}

type renewal struct {
	cancel context.CancelFunc
	done   <-chan struct{}
	addr   net.IPNet     // none while the first exchange runs
	kick   chan struct{} // a renewal's: ask again now (watchCarrier)
	index  int           // the link's index: an entry for another is a NIC that went (its name taken again)
}

// errStopped is the first exchange's error when stop ended it, or when the
// machine config had configured the link before it started.
var errStopped = errors.New("stopped: the machine config configures the link, or the link was set up again")

// closed is a done channel for an entry with nothing running.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// exchange runs link l's first DHCP exchange, which stop can end like a
// renewal, applies its lease with the metric the lease gets then (metric
// is asked once the lease is there), calls applied with it, and starts the
// renewal (cfg.Renew). metric and applied run under r.mu, as one step with
// the apply: Up collects its Result under r.mu too, so a lease is either
// in the Result with the boot's metric or in none with a late one. A stop
// while it runs, or a machine config that configured the link, makes it
// return errStopped, having applied nothing.
func (r *renewals) exchange(ctx context.Context, l netlink.Link, kick chan struct{}, metric func() int, applied func(Lease), cfg Config) (Lease, error) {
	name := l.Attrs().Name
	xctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done) // after the unlock below: stop waits for it
	me := &renewal{cancel: cancel, done: done, kick: kick, index: l.Attrs().Index}
	stopped := false
	locked(&r.mu, func() {
		if stopped = r.configured[name]; !stopped {
			r.replaceLocked(name, me)
		}
	})
	if stopped {
		return Lease{}, errStopped
	}
	lease, err := dhcp(xctx, l, cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[name] != me {
		return Lease{}, errStopped
	}
	delete(r.m, name)
	if err != nil {
		return Lease{}, err
	}
	m := metric()
	undoMTU := setMTU(l, lease, r.mtus[name], cfg.Log)
	if err := cfg.applyLease(l, lease, m); err != nil {
		// Undone: the link is as it was, and the exchange is tried again.
		undoMTU()
		return Lease{}, fmt.Errorf("applying the lease: %w", err)
	}
	applied(lease)
	if cfg.Renew {
		r.startLocked(ctx, l, lease, m, cfg)
	} else {
		// Kept, so that a static config knows the address to remove.
		r.replaceLocked(name, &renewal{cancel: func() {}, done: closed, addr: lease.Addr, index: l.Attrs().Index})
	}
	return lease, nil
}

// waitRetry waits wait before link l's next DHCP try, or less: until ctx
// ends, stop ends the wait (a machine config that configures the link: the
// next exchange says errStopped), or the link gets its carrier back — a
// cable moved from a port without DHCP to one with it is asked at once, not
// after a wait that has grown to a minute.
//
// kick is the caller's, shared with its exchanges' entries (exchange): a
// carrier that came back while an exchange ran ends the wait after it at
// once. It reports whether the carrier ended the wait: the caller then
// starts its backoff again (a port that does not forward yet fails the
// first try). An entry of another link under the name (one that took it
// meanwhile) is left alone, and the wait then only ends in its time.
func (r *renewals) waitRetry(ctx context.Context, l netlink.Link, wait time.Duration, kick chan struct{}, log *slog.Logger) (kicked bool) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	name := l.Attrs().Name
	me := &renewal{cancel: cancel, done: closed, kick: kick, index: l.Attrs().Index}
	configured := false
	locked(&r.mu, func() {
		if configured = r.configured[name]; configured {
			return
		}
		if _, taken := r.m[name]; taken {
			me.kick = nil
		} else {
			r.replaceLocked(name, me)
		}
	})
	if configured {
		return false
	}
	defer locked(&r.mu, func() {
		if r.m[name] == me {
			delete(r.m, name)
		}
	})
	select {
	case <-wctx.Done():
		return false
	case <-me.kick:
		log.Info("link has carrier again: asking DHCP now", "iface", name)
		return true
	}
}

// replaceLocked makes rn the link's entry; one it replaces (a NIC plugged
// in again under the same name) is cancelled: one DHCP client per link.
func (r *renewals) replaceLocked(name string, rn *renewal) {
	if r.m == nil {
		r.m = map[string]*renewal{}
	}
	if old, ok := r.m[name]; ok && old != rn {
		old.cancel()
	}
	r.m[name] = rn
}

// configure records that a machine config configures the link: the boot's
// DHCP does not start on it from now on.
func (r *renewals) configure(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.configured == nil {
		r.configured = map[string]bool{}
	}
	r.configured[name] = true
	r.late = slices.DeleteFunc(r.late, func(l Lease) bool { return l.Iface == name })
}

// unconfigure undoes configure: a port a bond released (or failed to take)
// is the boot's DHCP's again.
func (r *renewals) unconfigure(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.configured, name)
}

// start runs renew for link name's lease until stop.
func (r *renewals) start(ctx context.Context, l netlink.Link, lease Lease, metric int, cfg Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.startLocked(ctx, l, lease, metric, cfg)
}

func (r *renewals) startLocked(ctx context.Context, l netlink.Link, lease Lease, metric int, cfg Config) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	me := &renewal{cancel: cancel, done: done, addr: lease.Addr, kick: make(chan struct{}, 1), index: l.Attrs().Index}
	r.replaceLocked(l.Attrs().Name, me)
	go func() {
		defer close(done)
		renew(rctx, l, lease, metric, cfg, me.kick, func(next Lease) {
			current := false
			locked(&r.mu, func() {
				me.addr = next.Addr // the address stop returns
				if current = r.m[l.Attrs().Name] == me; current {
					r.renewedLocked(next)
				}
			})
			if current {
				r.keepLeaseRoutes(l, cfg.Log)
			}
		}, func() bool { return r.mtuFixed(l.Attrs().Name) })
	}()
}

// stop ends the link's first exchange or the renewal of its lease, and
// waits for it (a renewal in the middle of applying a lease would
// otherwise put the address back); it returns the address the lease held,
// nil when there was none.
func (r *renewals) stop(iface string) *net.IPNet {
	if r == nil {
		return nil
	}
	var (
		rn *renewal
		ok bool
	)
	locked(&r.mu, func() {
		rn, ok = r.m[iface]
		delete(r.m, iface)
		delete(r.renewed, iface)
		r.late = slices.DeleteFunc(r.late, func(l Lease) bool { return l.Iface == iface })
	})
	if !ok {
		return nil
	}
	rn.cancel()
	select {
	case <-rn.done:
	case <-time.After(30 * time.Second):
	}
	var addr net.IPNet
	locked(&r.mu, func() { addr = rn.addr }) // a renewal may have changed it
	if addr.IP == nil {
		return nil
	}
	return &addr
}

// retryDHCP asks DHCP on a link the machine config lists with dhcp: true,
// whose exchange got no lease: cfg.Retry later, then twice as long each
// time up to cfg.RetryMax, until a lease comes, stop ends it (a config
// applied again) or ctx ends. The lease is applied with metric, kept as a
// late lease (Result.AllLeases), renewed (cfg.Renew), and cfg.OnLateLease
// told of it once nothing waits on this entry any more.
func (r *renewals) retryDHCP(ctx context.Context, l netlink.Link, metric int, cfg Config) {
	name := l.Attrs().Name
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	me := &renewal{cancel: cancel, done: done, kick: make(chan struct{}, 1), index: l.Attrs().Index}
	locked(&r.mu, func() { r.replaceLocked(name, me) })
	go func() {
		defer safego.Recover(cfg.Log, "asking DHCP again on "+name)
		var got *Lease
		tries := 1
		func() {
			defer close(done)
			defer safego.Recover(cfg.Log, "DHCP on "+name)
			for wait := cfg.Retry; ; {
				select {
				case <-rctx.Done():
					return
				case <-me.kick:
					cfg.Log.Info("link has carrier again: asking DHCP now", "iface", name)
					wait = cfg.Retry // a port that does not forward yet fails this try: the next comes soon
				case <-time.After(wait):
					wait = cfg.nextRetry(wait)
				}
				if linkGone(l, cfg.Log) {
					return
				}
				tries++
				lease, err := cfg.askDHCP(rctx, l)
				if err != nil {
					cfg.Log.Debug("no DHCP lease yet", "iface", name, "tries", tries, "reason", err.Error())
					continue
				}
				stopped := false
				locked(&r.mu, func() {
					if r.m[name] != me {
						stopped = true // stopped meanwhile
						return
					}
					undoMTU := setMTU(l, lease, r.mtus[name], cfg.Log)
					if err = cfg.applyLease(l, lease, metric); err != nil {
						undoMTU() // the link as it was
						return
					}
					r.setLateLocked(lease)
					if cfg.Renew {
						r.startLocked(ctx, l, lease, metric, cfg)
					} else {
						r.replaceLocked(name, &renewal{cancel: func() {}, done: closed, addr: lease.Addr, index: l.Attrs().Index})
					}
				})
				if stopped {
					return
				}
				if err != nil {
					cfg.Log.Warn("applying the DHCP lease failed", "iface", name, "reason", err.Error())
					continue
				}
				got = &lease
				// Before done closes: stop waits for it, and a config
				// applied meanwhile decides what stays.
				r.keepLeaseRoutes(l, cfg.Log)
				return
			}
		}()
		if got == nil {
			return
		}
		cfg.Log.Info("dhcp lease", append(leaseAttrs(*got), "tries", tries)...)
		if cfg.OnLateLease != nil {
			cfg.OnLateLease(*got)
		}
	}()
}

// configDNS is a dhcp: true entry's own name servers, as a lease without
// an address (nil when it lists none); they are added to a's DNS when a is
// not nil.
func configDNS(iface string, servers []string, a *Applied) []Lease {
	if len(servers) == 0 {
		return nil
	}
	d := Lease{Iface: iface}
	for _, s := range servers {
		if ip := net.ParseIP(s); ip != nil {
			d.DNS = append(d.DNS, ip)
			if a != nil {
				a.DNS = append(a.DNS, s)
			}
		}
	}
	return []Lease{d}
}

// Applied is what Apply did to one interface of the machine config.
type Applied struct {
	Iface     string   // the link configured: eth0, or the VLAN's link eth0.42
	Addresses []string // CIDR; from the DHCP lease with dhcp: true
	Gateway   string
	Gateway6  string // the IPv6 default route's next hop (gateway6)
	DNS       []string
	DHCP      bool
	Routes    []string // "10.20.0.0/16 via 192.0.2.254", "198.51.100.0/24 on-link"
}

// Apply configures the interfaces the machine config lists, once the boot's
// DHCP (Up) has run: a VLAN link is made on its parent, the MTU set, and
// the link gets its static addresses, default route and name servers (its
// boot lease and the lease's renewal are dropped) or asks DHCP. Links the
// config does not list keep what Up gave them. res is updated (leases,
// links), and resolv.conf rewritten in cfg.EtcDir. An interface that
// cannot be configured is reported in the error, and the others are still
// configured.
func Apply(ctx context.Context, ifaces []config.Interface, res *Result, cfg Config) ([]Applied, error) {
	var (
		done          []Applied
		errs          []error
		static, names []Lease
	)
	routedBefore, known := defaultRouteLinks()
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The bonds an earlier config made that this one does not list go,
	// their ports back to the boot's DHCP (unless an entry below lists them).
	var bonds []string
	for _, ifc := range ifaces {
		if ifc.Bond != nil {
			bonds = append(bonds, ifc.Name)
		}
	}
	if len(bonds) > 0 && res.renew == nil {
		res.renew = &renewals{} // it records the bonds' members (makeBond)
	}
	// The bonds first: an entry may put a VLAN on a bond that a later
	// entry makes.
	bondErrs := map[int]error{}
	makeBonds := func() {
		for _, name := range res.bonds {
			if !slices.Contains(bonds, name) {
				if err := dropBond(name, res, log); err != nil {
					errs = append(errs, err)
				}
			}
		}
		res.bonds = slices.Clone(bonds)
		if res.renew != nil {
			res.renew.clearPending() // this apply's bonds record their members
		}
		for i, ifc := range ifaces {
			if ifc.Bond != nil {
				if _, err := makeBond(ifc, res, log); err != nil {
					bondErrs[i] = err
				}
			}
		}
	}
	if r := res.renew; r != nil {
		// (A Result without renewals has no links' watch to join a
		// member meanwhile.)
		locked(&r.bondMu, makeBonds)
	} else {
		makeBonds()
	}
	// The routes an earlier config gave the links this one lists go
	// first: a route moving to an entry listed before its old one would
	// otherwise meet itself (the same network and metric) on its old link.
	locked(&leaseRoutesMu, func() {
		// (No renewal sets an earlier config's routes beside its lease
		// meanwhile: they would stay.)
		res.renew.forgetLeaseRoutes()
		for _, ifc := range ifaces {
			for _, l := range configuredLinks(ifc) {
				delConfigRoutes(l)
			}
		}
	})
	gws := &gateways{done: map[int]bool{}}
	for i, ifc := range ifaces {
		gws.metric = staticMetric + i
		if err := bondErrs[i]; err != nil {
			errs = append(errs, &entryError{i, err})
			continue
		}
		a, leases, err := applyOne(ctx, ifc, res, cfg, gws)
		if err != nil {
			errs = append(errs, &entryError{i, err})
		}
		if err != nil && !errors.As(err, new(*partialError)) {
			// A dhcp: true entry asked again keeps its name servers.
			for _, l := range leases {
				if l.Addr.IP == nil {
					names = append(names, l)
				}
			}
			continue
		}
		// Configured, if not wholly (a route the kernel refused): its
		// addresses and name servers count.
		done = append(done, a)
		for _, l := range leases {
			if l.Addr.IP == nil {
				names = append(names, l) // name servers for a DHCP link
			} else {
				static = append(static, l)
			}
		}
	}
	if routedAfter, knownAfter := defaultRouteLinks(); known && knownAfter && len(routedBefore) > 0 && len(routedAfter) == 0 {
		// Often a storage port's static address is harmless; here it took
		// the machine's way out (which the config check cannot know).
		log.Warn("no default route left", "had", strings.Join(routedBefore, ","),
			"why", "the machine config made the link static without a gateway, and no link has one now",
			"fix", "add gateway: to the interface that is the machine's way out (K3s picks its address from the default route)")
	}
	// Static addresses come first, in the config's order: they are the
	// machine's chosen ones (the ready line's ip= is the first).
	res.Leases = append(static, res.Leases...)
	res.names = names
	if all := res.resolvLeases(); cfg.EtcDir != "" && len(all) > 0 {
		if err := writeResolvConf(cfg.EtcDir+"/resolv.conf", all, cfg.Log); err != nil {
			errs = append(errs, fmt.Errorf("writing resolv.conf: %w", err))
		}
	}
	return done, errors.Join(errs...)
}

// dropAddrs removes the addresses old from link l, except lease's, which
// is applied with metric: once the new address is there, so that the
// routes through the link stay (and made again, in case the kernel dropped
// some with an address they leaned on).
func dropAddrs(l netlink.Link, old []net.IPNet, lease Lease, metric int) {
	dropped := false
	for _, o := range old {
		if o.IP.Equal(lease.Addr.IP) && o.Mask.String() == lease.Addr.Mask.String() {
			continue
		}
		if !dropped {
			// The new address may be the old one's secondary (the same
			// subnet), which the kernel would otherwise delete with it.
			promoteSecondaries(l.Attrs().Name)
			dropped = true
		}
		_ = netlink.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: o.IP, Mask: o.Mask}})
	}
	if dropped {
		_ = apply(l, lease, metric)
	}
}

// delRoutes deletes the link's routes the agent added for a DHCP lease
// (IPv4, proto dhcp) with one of the metrics, and with static those it
// added for the machine config (proto static, of any metric): the default
// routes of gateway and gateway6 and the routes of routes:. None of the
// kernel's, nor K3s's (proto boot); proto static is the machine config's
// on a link it configures, so a route someone added by hand with proto
// static there goes too.
func delRoutes(link netlink.Link, static bool, metrics ...int) error {
	routes, err := dump(func() ([]netlink.Route, error) { return netlink.RouteList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("listing the routes of %s: %w", link.Attrs().Name, err)
	}
	for _, r := range routes {
		lease := r.Protocol == protoDHCP && r.Family == netlink.FAMILY_V4 && slices.Contains(metrics, r.Priority)
		config := static && r.Protocol == protoStatic // a gateway's default route, or a config's routes:
		if lease || config {
			_ = netlink.RouteDel(&r)
		}
	}
	return nil
}

// isDefault reports whether r is a default route (no destination, or a /0).
func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// defaultRouteLinks names the links that carry an IPv4 default route;
// known is false when the routes cannot be read (a dump route changes kept
// interrupting).
func defaultRouteLinks() (links []string, known bool) {
	routes, err := dump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, false
	}
	for _, r := range routes {
		if !isDefault(r) {
			continue
		}
		name := fmt.Sprint(r.LinkIndex)
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			name = l.Attrs().Name
		}
		if !slices.Contains(links, name) {
			links = append(links, name)
		}
	}
	return links, true
}

// entryError is the error of the machine config's network.interfaces[i]:
// each of its lines names the entry (a bond's may hold one per member).
type entryError struct {
	i   int
	err error
}

func (e *entryError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	for j, l := range lines {
		lines[j] = fmt.Sprintf("network.interfaces[%d]: %s", e.i, l)
	}
	return strings.Join(lines, "\n")
}

func (e *entryError) Unwrap() error { return e.err }

// findLink finds the link a config entry names, by name or MAC.
func findLink(ifc config.Interface) (netlink.Link, error) {
	if ifc.Name != "" {
		l, err := netlink.LinkByName(ifc.Name)
		if err != nil {
			return nil, fmt.Errorf("no interface named %s (%s)", ifc.Name, linkNames())
		}
		return l, nil
	}
	hw, err := net.ParseMAC(ifc.MAC)
	if err != nil {
		return nil, fmt.Errorf("mac %q: %w", ifc.MAC, err)
	}
	all, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	// A VLAN or bridge on top shows the same MAC: only the NIC itself (a
	// veth stands for one in tests). Its own address first: a bond's
	// members all show the bond's (the first member's), and only their
	// permanent address tells them apart.
	for _, own := range []bool{true, false} {
		for _, l := range all {
			mac := l.Attrs().HardwareAddr
			if own {
				mac = ownMAC(l)
			}
			if (l.Type() == "device" || l.Type() == "veth") && slices.Equal(mac, hw) {
				return l, nil
			}
		}
	}
	return nil, fmt.Errorf("no interface with MAC %s (%s)", hw, linkNames())
}

// linkNames lists the machine's links with their MACs, for error messages.
func linkNames() string {
	all, err := netlink.LinkList()
	if err != nil {
		return "links unreadable: " + err.Error()
	}
	var out []string
	for _, l := range all {
		if a := l.Attrs(); a.Flags&net.FlagLoopback == 0 {
			out = append(out, a.Name+" "+a.HardwareAddr.String())
		}
	}
	return "links: " + strings.Join(out, ", ")
}

// vlanName is the VLAN link's name: parent.id, or v<parent's index>.id when
// that is longer than the kernel's 15 characters (two ports on one VLAN
// must not share a name).
func vlanName(parent string, parentIndex, id int) string {
	if n := fmt.Sprintf("%s.%d", parent, id); len(n) <= 15 {
		return n
	}
	return fmt.Sprintf("v%d.%d", parentIndex, id)
}

// gateways is what Apply's entries share for their default routes: the
// metric of the entry being configured, and the links its earlier entries
// configured (whose routes a later entry's never moves).
type gateways struct {
	metric int
	done   map[int]bool
}

// applyOne configures one interface; it returns the static addresses as
// leases, for Apply to put first.
func applyOne(ctx context.Context, ifc config.Interface, res *Result, cfg Config, gws *gateways) (Applied, []Lease, error) {
	base, err := findLink(ifc)
	if err != nil {
		return Applied{}, nil, err
	}
	if m := base.Attrs().MasterIndex; m != 0 && ifc.Bond == nil {
		// A bond's member (listed by the other spelling, name or MAC, or
		// by a bond an earlier config made): what is put on it would not
		// reach the network, or would take the bond's traffic.
		if b, err := netlink.LinkByIndex(m); err == nil && b.Type() == "bond" {
			return Applied{}, nil, fmt.Errorf("%s is a member of bond %s: a bond's member carries no addresses or VLANs of its own: put them on %s, or take %s out of the bond's members", base.Attrs().Name, b.Attrs().Name, b.Attrs().Name, base.Attrs().Name)
		}
	}
	if ifc.MTU != 0 && base.Attrs().MTU < ifc.MTU {
		if err := netlink.LinkSetMTU(base, ifc.MTU); err != nil {
			return Applied{}, nil, fmt.Errorf("setting MTU %d on %s: %w", ifc.MTU, base.Attrs().Name, err)
		}
	}
	if err := netlink.LinkSetUp(base); err != nil {
		return Applied{}, nil, fmt.Errorf("setting %s up: %w", base.Attrs().Name, err)
	}
	link := base
	if ifc.VLAN != 0 {
		name := vlanName(base.Attrs().Name, base.Attrs().Index, ifc.VLAN)
		if l, err := netlink.LinkByName(name); err == nil {
			v, ok := l.(*netlink.Vlan)
			if !ok || v.ParentIndex != base.Attrs().Index || v.VlanId != ifc.VLAN {
				return Applied{}, nil, fmt.Errorf("a link named %s exists and is not VLAN %d on %s", name, ifc.VLAN, base.Attrs().Name)
			}
			link = l
		} else {
			v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: base.Attrs().Index}, VlanId: ifc.VLAN}
			if err := netlink.LinkAdd(v); err != nil {
				return Applied{}, nil, fmt.Errorf("making VLAN %d on %s: %w", ifc.VLAN, base.Attrs().Name, err)
			}
			if link, err = netlink.LinkByName(name); err != nil {
				return Applied{}, nil, err
			}
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return Applied{}, nil, fmt.Errorf("setting %s up: %w", name, err)
		}
	}
	name := link.Attrs().Name
	defer func() { gws.done[link.Attrs().Index] = true }()
	if ifc.MTU != 0 {
		// DHCP's MTU (option 26) does not undo the config's, on the
		// link or (a VLAN's, which cannot exceed it) on its parent.
		if res.renew == nil {
			res.renew = &renewals{}
		}
		res.renew.setMTUFixed(name)
		res.renew.setMTUFixed(base.Attrs().Name)
		dhcpMTUs.forget(link.Attrs().Index) // the config's MTU is not DHCP's to undo
		dhcpMTUs.forget(base.Attrs().Index)
		if link.Attrs().MTU != ifc.MTU {
			if err := netlink.LinkSetMTU(link, ifc.MTU); err != nil {
				return Applied{}, nil, fmt.Errorf("setting MTU %d on %s: %w", ifc.MTU, name, err)
			}
		}
	}
	if ifc.DHCP {
		a := Applied{Iface: name, DHCP: true, Gateway6: ifc.Gateway6}
		routes4, routes6 := splitRoutes(ifc.Routes)
		// The IPv4 routes leave from the lease's address: the link's
		// renewal (or the asking again) keeps them from now on.
		beside := leaseRoutes{routes: routes4, metric: gws.metric}
		if len(routes4) > 0 && res.renew == nil {
			res.renew = &renewals{}
		}
		if res.renew != nil {
			res.renew.recordLeaseRoutes(name, beside)
		}
		// DHCP here is DHCPv4: the config's IPv6 addresses (and gateway6)
		// are static beside the lease; validation refuses IPv4 ones.
		var v6 []Lease
		for _, s := range ifc.Addresses {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return a, nil, fmt.Errorf("address %q: %w", s, err)
			}
			if !p.Addr().Is6() || p.Addr().Is4In6() {
				return a, nil, fmt.Errorf("address %q: with dhcp: true, DHCP gives the IPv4 address: only IPv6 addresses may be static beside it", s)
			}
			ipn := net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
			v6 = append(v6, Lease{Iface: name, MAC: link.Attrs().HardwareAddr, Addr: ipn, static: true})
		}
		sameAddr := func(x, y net.IPNet) bool { return x.IP.Equal(y.IP) && x.Mask.String() == y.Mask.String() }
		// An earlier config's static addresses on the link (applied again
		// through the local API) are no lease: DHCP is asked, unless the
		// link has a lease already (an earlier dhcp: true entry's static
		// IPv6 addresses beside it), and those this entry does not list go.
		var old []net.IPNet
		for _, l := range res.Leases {
			if l.Iface == name && l.static && !slices.ContainsFunc(v6, func(n Lease) bool { return sameAddr(n.Addr, l.Addr) }) {
				old = append(old, l.Addr)
			}
		}
		res.Leases = slices.DeleteFunc(res.Leases, func(l Lease) bool { return l.Iface == name && l.static })
		prev := slices.IndexFunc(res.Leases, func(l Lease) bool { return l.Iface == name })
		if prev >= 0 {
			// The lease stays: only the dropped static addresses and the
			// earlier config's IPv6 default route go.
			for _, o := range old {
				_ = netlink.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: o.IP, Mask: o.Mask}})
			}
			old = nil
			if err := delRoutes(link, true); err != nil {
				return a, nil, err
			}
		}
		var routeErrs []error
		addV6 := func() error {
			if len(v6) > 0 {
				if err := raiseForIPv6(link, cfg.Log); err != nil {
					return err
				}
			}
			for _, l := range v6 {
				if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.IP, Mask: l.Addr.Mask}}); err != nil {
					return fmt.Errorf("adding %s to %s: %w", l.Addr.String(), name, err)
				}
				a.Addresses = append(a.Addresses, l.Addr.String())
			}
			if len(v6) > 0 {
				res.Leases = append(res.Leases, v6...)
			}
			if ifc.Gateway6 != "" {
				if len(v6) == 0 {
					return fmt.Errorf("gateway6 %s without an IPv6 address in addresses", ifc.Gateway6)
				}
				if err := addDefaultRoute(link, ifc.Gateway6, v6, gws); err != nil {
					return err
				}
			}
			// The config's IPv6 routes, through the IPv6 addresses: with
			// them, whether DHCPv4 answers or not.
			a.Routes, routeErrs = addRoutes(link, routes6, v6, gws.metric)
			return nil
		}
		if prev < 0 {
			// The boot's exchange on the link, if it still runs, or the
			// renewal of a lease that came after the network step (in no
			// Result), ends: one DHCP client per link.
			if res.renew != nil {
				res.renew.configure(name)
				if late := res.renew.stop(name); late != nil {
					old = append(old, *late)
				}
			}
			// The old addresses' routes (a late lease's behind the boot's,
			// the static gateway's) go now; the addresses once the new
			// lease is there, unless it has the same (removing a link's
			// last address makes the kernel drop every route through it).
			delRoutes(link, true, lateMetric+link.Attrs().Index)
			if err := addV6(); err != nil {
				return a, nil, err
			}
			if isBond(base) {
				// Just made (or its ports just taken): their links come
				// up again, and 802.3ad negotiates with the switch.
				waitLowerUp(ctx, link, bondCarrierWait)
			}
			lease, err := dhcp(ctx, link, cfg)
			metric := 100 + link.Attrs().Index
			if err == nil {
				undoMTU := setMTU(link, lease, res.renew.mtuFixed(name), cfg.Log)
				if err = cfg.applyLease(link, lease, metric); err != nil {
					// Undone (applyLease, and the MTU): asked again as if
					// no lease had come.
					undoMTU()
					err = fmt.Errorf("applying the DHCP lease on %s: %w", name, err)
				}
			}
			if err != nil {
				for _, o := range old {
					// Nothing renews it any more: it must not outlive its lease.
					_ = netlink.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: o.IP, Mask: o.Mask}})
				}
				if cfg.Retry > 0 {
					if res.renew == nil {
						res.renew = &renewals{}
					}
					// Its default route behind the others', as a late
					// lease's: K3s chose its address by theirs.
					res.renew.retryDHCP(ctx, link, lateMetric+link.Attrs().Index, cfg)
					// The entry's name servers are the config's already.
					return a, configDNS(name, ifc.DNS, nil), errors.Join(append(routeErrs, fmt.Errorf("%w; asking again in the background", err))...)
				}
				return a, nil, err
			}
			dropAddrs(link, old, lease, metric)
			if cfg.Renew {
				if res.renew == nil {
					res.renew = &renewals{}
				}
				res.renew.start(ctx, link, lease, metric, cfg)
			}
			res.Leases = append(res.Leases, lease)
			prev = len(res.Leases) - 1
		} else if err := addV6(); err != nil {
			return a, nil, err
		}
		l := res.Leases[prev]
		if len(routes4) > 0 {
			// The lease as its renewal has it now (another address, or
			// none), else as the Result has it.
			lease := []net.IPNet{l.Addr}
			if addr, ok := res.renew.leaseAddr(name); ok {
				lease = []net.IPNet{addr}
			}
			shown, errs := setLeaseRoutes(link, beside, lease, cfg.Log)
			a.Routes = append(shown, a.Routes...)
			routeErrs = append(routeErrs, errs...)
		}
		a.Addresses = append([]string{l.Addr.String()}, a.Addresses...)
		// The config's name servers before the lease's.
		dns := configDNS(name, ifc.DNS, &a)
		for _, d := range l.DNS {
			a.DNS = append(a.DNS, d.String())
		}
		return a, dns, partial(routeErrs)
	}

	// Static: whatever this link had goes — the boot's lease and its
	// renewal (also a late link's, which Up did not return), or an earlier
	// config's static addresses — with their routes.
	var gone []net.IPNet
	if res.renew != nil {
		res.renew.configure(name)
	}
	if addr := res.renew.stop(name); addr != nil {
		gone = append(gone, *addr)
	}
	if ifc.MTU == 0 {
		restoreMTU(link, cfg.Log, "the link's addresses are static now") // DHCP's, if it set one
	}
	for _, old := range res.Leases {
		if old.Iface == name && old.Addr.IP != nil {
			gone = append(gone, old.Addr)
		}
	}
	a := Applied{Iface: name, Addresses: ifc.Addresses, Gateway: ifc.Gateway, Gateway6: ifc.Gateway6, DNS: ifc.DNS}
	if len(ifc.Addresses) == 0 && ifc.Bond == nil {
		// Validation refuses it; never leave a link bare on a config that
		// slipped through. A bond without addresses only carries VLANs.
		return a, nil, errors.New("static without addresses: set dhcp: true, or list addresses")
	}
	// The new addresses first: removing a link's last IPv4 address makes
	// the kernel drop every route through the link, others' too.
	var leases []Lease
	for _, s := range ifc.Addresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return a, nil, fmt.Errorf("address %q: %w", s, err)
		}
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
			return a, nil, fmt.Errorf("adding %s to %s: %w", s, name, err)
		}
		leases = append(leases, Lease{Iface: name, MAC: link.Attrs().HardwareAddr, Addr: *ipn, static: true})
	}
	promoteSecondaries(name)
	for _, g := range gone {
		if slices.ContainsFunc(leases, func(l Lease) bool { return l.Addr.IP.Equal(g.IP) && l.Addr.Mask.String() == g.Mask.String() }) {
			continue
		}
		_ = netlink.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: g.IP, Mask: g.Mask}})
	}
	// The routes the agent added on this link — DHCP's (metric 100+index,
	// or 1000+index for a lease that came after the network step) and an
	// earlier config's default routes — and no one else's.
	if err := delRoutes(link, true, 100+link.Attrs().Index, lateMetric+link.Attrs().Index); err != nil {
		return a, nil, err
	}
	res.Leases = slices.DeleteFunc(res.Leases, func(l Lease) bool { return l.Iface == name })
	for _, g := range []string{ifc.Gateway, ifc.Gateway6} {
		if g == "" {
			continue
		}
		if len(leases) == 0 {
			// Validation refuses it: a bond without addresses has no subnet to reach a gateway from.
			return a, nil, fmt.Errorf("gateway %s on %s, which has no addresses: give the bond addresses, or put the gateway on the VLAN entry that has them", g, name)
		}
		if err := addDefaultRoute(link, g, leases, gws); err != nil {
			return a, nil, err
		}
		gw := net.ParseIP(g)
		// On the first address of the gateway's family (K3s's node address).
		i := max(0, slices.IndexFunc(leases, func(l Lease) bool { return (l.Addr.IP.To4() == nil) == (gw.To4() == nil) }))
		leases[i].Routes = append(leases[i].Routes, Route{Gateway: gw})
	}
	// A route the kernel refuses is said, and the entry's other routes,
	// addresses and name servers stay.
	shown, routeErrs := addRoutes(link, ifc.Routes, leases, gws.metric)
	a.Routes = shown
	if len(leases) == 0 {
		leases = configDNS(name, ifc.DNS, nil) // a bond that only carries VLANs
	} else {
		for _, d := range ifc.DNS {
			if ip := net.ParseIP(d); ip != nil {
				leases[0].DNS = append(leases[0].DNS, ip)
			}
		}
	}
	if !slices.Contains(res.Links, name) {
		res.Links = append(res.Links, name)
	}
	return a, leases, partial(routeErrs)
}

// partialError is an entry configured but for some of its routes, which
// the kernel refused: its addresses and name servers count (Apply).
type partialError struct{ error }

func (e *partialError) Unwrap() error { return e.error }

// partial is errs as a partialError, nil for none.
func partial(errs []error) error {
	if err := errors.Join(errs...); err != nil {
		return &partialError{err}
	}
	return nil
}

// addRoutes adds the entry's routes on link (those of family v6 only when
// only is true: a dhcp: true entry's IPv6 ones), with the leases their next
// hops are judged against; each the kernel refuses is in the errors, the
// others added all the same. It returns how the console shows those added.
func addRoutes(link netlink.Link, routes []config.Route, leases []Lease, metric int) (shown []string, errs []error) {
	for _, r := range routes {
		if len(leases) == 0 {
			// Validation refuses it: a bond without addresses reaches no next hop.
			errs = append(errs, fmt.Errorf("route to %s on %s, which has no addresses: put it on the entry that has them", r.To, link.Attrs().Name))
			continue
		}
		rt, s, err := addRoute(link, r, leases, metric)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		shown = append(shown, s)
		// On the first address of the route's family, as a gateway's.
		i := max(0, slices.IndexFunc(leases, func(l Lease) bool { return (l.Addr.IP.To4() == nil) == (rt.Dst.IP.To4() == nil) }))
		leases[i].Routes = append(leases[i].Routes, Route{Dst: rt.Dst, Gateway: rt.Gw})
	}
	return shown, errs
}

// configuredLinks are the links entry ifc configures that exist now: its
// link (by name or MAC) and its VLAN's.
func configuredLinks(ifc config.Interface) []netlink.Link {
	base, err := findLink(ifc)
	if err != nil {
		return nil
	}
	if ifc.VLAN == 0 {
		return []netlink.Link{base}
	}
	if v, err := netlink.LinkByName(vlanName(base.Attrs().Name, base.Attrs().Index, ifc.VLAN)); err == nil {
		return []netlink.Link{v}
	}
	return nil
}

// delConfigRoutes deletes link's routes of an earlier config's routes:
// (proto static, not a default route: those are gateways', which
// addDefaultRoute moves).
func delConfigRoutes(link netlink.Link) {
	routes, err := dump(func() ([]netlink.Route, error) { return netlink.RouteList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return
	}
	for _, r := range routes {
		if r.Protocol == protoStatic && !isDefault(r) {
			_ = netlink.RouteDel(&r)
		}
	}
}

// addRoute adds the machine config's route r on link (proto static), with
// r's metric or else the entry's (metric); a next hop outside the subnets of
// addrs is on-link, as the validator announced, and so is an IPv6
// link-local one (the route's link is its zone). Another's route to the
// same network with that metric is left alone: the error says to give this
// one another metric. It returns the route and how the console shows it.
func addRoute(link netlink.Link, r config.Route, addrs []Lease, metric int) (*netlink.Route, string, error) {
	rt, shown, err := configRoute(link, r, addrs, metric)
	if err != nil {
		return nil, "", err
	}
	if err := routeAdd(link, rt, shown); err != nil {
		return nil, "", err
	}
	return rt, shown, nil
}

// routeAdd adds rt, the machine config's route shown so on link: another's
// route to the same network with that metric is left alone, and the error
// says to give this one another metric.
func routeAdd(link netlink.Link, rt *netlink.Route, shown string) error {
	if err := netlink.RouteAdd(rt); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("route to %s on %s: a route to %s with metric %d is there already (another link's, or not the agent's): give this route another metric", rt.Dst, link.Attrs().Name, rt.Dst, rt.Priority)
		}
		return fmt.Errorf("adding the route to %s on %s (metric %d): %w", shown, link.Attrs().Name, rt.Priority, err)
	}
	return nil
}

// configRoute is the machine config's route r on link as the kernel gets
// it (addRoute), and how the console shows it.
func configRoute(link netlink.Link, r config.Route, addrs []Lease, metric int) (*netlink.Route, string, error) {
	pf, err := netip.ParsePrefix(r.To)
	if err != nil {
		return nil, "", fmt.Errorf("route to %q: %w", r.To, err)
	}
	pf = pf.Masked()
	dst := &net.IPNet{IP: pf.Addr().AsSlice(), Mask: net.CIDRMask(pf.Bits(), pf.Addr().BitLen())}
	if r.Metric != 0 {
		metric = r.Metric
	}
	rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Priority: metric, Protocol: protoStatic, Table: unix.RT_TABLE_MAIN}
	shown := pf.String() + " on-link"
	if r.Via != "" {
		gw := net.ParseIP(r.Via)
		if gw == nil {
			return nil, "", fmt.Errorf("route to %s: via %q is not an IP address", pf, r.Via)
		}
		rt.Gw = gw
		shown = pf.String() + " via " + gw.String()
		onLink := gw.To4() == nil && gw.IsLinkLocalUnicast()
		for _, l := range addrs {
			onLink = onLink || l.Addr.Contains(gw)
		}
		if !onLink {
			rt.Flags = int(netlink.FLAG_ONLINK)
		}
	} else {
		rt.Scope = netlink.SCOPE_LINK
	}
	return rt, shown, nil
}

// addDefaultRoute adds the default route via gateway on link, with the
// entry's metric (gws.metric); a gateway outside the subnets of the
// addresses (a /32 at a hoster) is on-link, as the validator announced. An
// IPv6 link-local gateway (fe80::1, a router's usual one) needs no such
// flag: the route's link is its zone.
//
// Another link's default route of the family may have the metric: one an
// earlier config set on a link this config does not list (which keeps it)
// moves behind, to the next free metric; this config's own, the kernel's
// or anyone else's keeps it, and this route takes the next free one.
func addDefaultRoute(link netlink.Link, gateway string, addrs []Lease, gws *gateways) error {
	gw := net.ParseIP(gateway)
	if gw == nil {
		return fmt.Errorf("gateway %q is not an IP address", gateway)
	}
	family := netlink.FAMILY_V6
	if gw.To4() != nil {
		family = netlink.FAMILY_V4
	}
	routes, err := dump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("listing the default routes for gateway %s on %s: %w", gw, link.Attrs().Name, err)
	}
	taken := map[int]*netlink.Route{}
	for i, r := range routes {
		if isDefault(r) && r.LinkIndex != link.Attrs().Index {
			taken[r.Priority] = &routes[i]
		}
	}
	free := func(m int) int {
		for taken[m] != nil {
			m++
		}
		return m
	}
	metric := gws.metric
	for {
		r := taken[metric]
		if r == nil {
			break
		}
		if r.Protocol != protoStatic || gws.done[r.LinkIndex] {
			metric = free(metric)
			continue
		}
		// An earlier config's, on a link this one leaves as it is.
		moved := netlink.Route{LinkIndex: r.LinkIndex, Gw: r.Gw, Priority: free(metric + 1), Protocol: protoStatic,
			Table: unix.RT_TABLE_MAIN, Flags: r.Flags & int(netlink.FLAG_ONLINK)}
		if err := netlink.RouteAdd(&moved); err != nil {
			metric = free(metric) // it keeps its place
			continue
		}
		_ = netlink.RouteDel(r)
		delete(taken, metric)
		taken[moved.Priority] = &moved
	}
	rt := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw, Priority: metric, Protocol: protoStatic}
	onLink := gw.To4() == nil && gw.IsLinkLocalUnicast()
	for _, l := range addrs {
		onLink = onLink || l.Addr.Contains(gw)
	}
	if !onLink {
		rt.Flags = int(netlink.FLAG_ONLINK)
	}
	if err := netlink.RouteReplace(rt); err != nil {
		return fmt.Errorf("adding the default route via %s on %s (metric %d): %w", gw, link.Attrs().Name, metric, err)
	}
	return nil
}
