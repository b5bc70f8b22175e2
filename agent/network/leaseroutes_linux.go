package network

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/vishvananda/netlink"
)

// leaseRoutes are a dhcp: true entry's IPv4 routes (routes:), which leave
// from the lease's address: added once it is on the link, each next hop
// judged against the lease's subnet (outside it, on-link, as for a static
// entry), made again whenever a renewal brings another address, and gone
// with the lease. They are marked proto static, as a static entry's are,
// beside the lease's own (proto dhcp, option 121).
type leaseRoutes struct {
	routes []config.Route // IPv4 ones
	metric int            // the entry's: a route's without its own
}

// leaseRoutesMu is held while a link's lease routes are set, from reading
// what they are to the kernel's last change, and while Apply forgets the
// earlier config's and removes their routes: the last setting, and the
// last config, decide what the links have.
var leaseRoutesMu sync.Mutex

// recordLeaseRoutes records the IPv4 routes the machine config gives link
// name beside its DHCP lease, which the link's renewal keeps from now on;
// none forgets them.
func (r *renewals) recordLeaseRoutes(name string, x leaseRoutes) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(x.routes) == 0 {
		delete(r.extra, name)
		return
	}
	if r.extra == nil {
		r.extra = map[string]leaseRoutes{}
	}
	r.extra[name] = x
}

// forgetLeaseRoutes forgets the routes every link keeps beside its lease:
// a machine config applied again gives them anew (recordLeaseRoutes). A link
// it does not list keeps the routes it has (until the next boot, as what
// an earlier config set does), which are not made again once its lease's
// loss took them. The caller holds leaseRoutesMu.
func (r *renewals) forgetLeaseRoutes() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.extra = nil
}

// leaseAddrLocked is the address link name's lease holds now (its
// renewal's: the boot's, a late lease's, or one a renewal brought), if it
// has one.
func (r *renewals) leaseAddrLocked(name string) (net.IPNet, bool) {
	rn := r.m[name]
	if rn == nil || rn.addr.IP == nil {
		return net.IPNet{}, false
	}
	return rn.addr, true
}

// leaseAddr is leaseAddrLocked, for a caller without r.mu (nil r: none).
func (r *renewals) leaseAddr(name string) (addr net.IPNet, ok bool) {
	if r == nil {
		return addr, false
	}
	locked(&r.mu, func() { addr, ok = r.leaseAddrLocked(name) })
	return addr, ok
}

// keepLeaseRoutes follows a lease applied on l, or lost: the routes the
// machine config gives l beside it (when it gives any) are set against the
// lease's address as it is now, none when it has none; what they could not
// get is logged.
func (r *renewals) keepLeaseRoutes(l netlink.Link, log *slog.Logger) {
	leaseRoutesMu.Lock()
	defer leaseRoutesMu.Unlock()
	var (
		x     leaseRoutes
		ok    bool
		addr  net.IPNet
		lease bool
	)
	locked(&r.mu, func() {
		x, ok = r.leaseRoutesLocked(l.Attrs().Name)
		addr, lease = r.leaseAddrLocked(l.Attrs().Name)
	})
	if !ok {
		return
	}
	var from []net.IPNet
	if lease {
		from = []net.IPNet{addr}
	}
	if _, errs := setLeaseRoutesLocked(l, x, from, log); len(errs) > 0 && log != nil {
		log.Warn("a route beside the DHCP lease was not added", "iface", l.Attrs().Name, "reason", errors.Join(errs...).Error())
	}
}

// leaseRoutesLocked returns link name's routes beside its lease, if the
// machine config gives it any.
func (r *renewals) leaseRoutesLocked(name string) (leaseRoutes, bool) {
	x, ok := r.extra[name]
	return x, ok
}

// setLeaseRoutes is setLeaseRoutesLocked under leaseRoutesMu.
func setLeaseRoutes(l netlink.Link, x leaseRoutes, lease []net.IPNet, log *slog.Logger) (shown []string, errs []error) {
	leaseRoutesMu.Lock()
	defer leaseRoutesMu.Unlock()
	return setLeaseRoutesLocked(l, x, lease, log)
}

// setLeaseRoutesLocked makes link l's IPv4 routes of the machine config
// (proto static, not a default route) those of x, judged against lease,
// the lease's address (the next hop of a route outside its subnet is
// on-link: said in a warning when such a route is added, as no config
// check can know the subnet); with no lease address (the lease lost, or not
// come yet), it has none. A route already there as it should be is left
// alone: a renewal that keeps its address changes nothing. It returns how
// the console shows the routes there, and why the others are not.
func setLeaseRoutesLocked(l netlink.Link, x leaseRoutes, lease []net.IPNet, log *slog.Logger) (shown []string, errs []error) {
	name := l.Attrs().Name
	have, err := dump(func() ([]netlink.Route, error) { return netlink.RouteList(l, netlink.FAMILY_V4) })
	if err != nil {
		return nil, []error{fmt.Errorf("listing the routes of %s: %w", name, err)}
	}
	var from []Lease
	for _, a := range lease {
		from = append(from, Lease{Iface: name, Addr: a})
	}
	type wanted struct {
		rt    *netlink.Route
		shown string
	}
	var want []wanted
	if len(from) > 0 {
		for _, r := range x.routes {
			rt, s, err := configRoute(l, r, from, x.metric)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if rt.Gw != nil && rt.Flags&int(netlink.FLAG_ONLINK) != 0 {
				s += " on-link"
			}
			want = append(want, wanted{rt, s})
		}
	}
	ours := slices.DeleteFunc(have, func(r netlink.Route) bool { return r.Protocol != protoStatic || isDefault(r) })
	for _, o := range ours {
		if !slices.ContainsFunc(want, func(w wanted) bool { return sameRoute(o, *w.rt) }) {
			_ = netlink.RouteDel(&o)
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(ours, func(o netlink.Route) bool { return sameRoute(o, *w.rt) }) {
			if err := routeAdd(l, w.rt, w.shown); err != nil {
				errs = append(errs, err)
				continue
			}
			if w.rt.Gw != nil && w.rt.Flags&int(netlink.FLAG_ONLINK) != 0 && log != nil {
				log.Warn("route beside the DHCP lease added on-link: its next hop is outside the lease's subnet",
					"iface", name, "route", w.shown, "lease", from[0].Addr.String(),
					"fix", "give a via on the subnet the DHCP server gives this interface, unless the router is reached on the link")
			}
		}
		shown = append(shown, w.shown)
	}
	return shown, errs
}

// sameRoute reports whether a route the kernel lists (have) is want, as
// configRoute made it: the same network, next hop, metric and on-link
// flag (the kernel adds flags of its own, such as linkdown).
func sameRoute(have, want netlink.Route) bool {
	onlink := func(r netlink.Route) bool { return r.Flags&int(netlink.FLAG_ONLINK) != 0 }
	return have.Dst != nil && want.Dst != nil && have.Dst.String() == want.Dst.String() &&
		have.Gw.Equal(want.Gw) && have.Priority == want.Priority && onlink(have) == onlink(want)
}

// splitRoutes separates a dhcp: true entry's routes: the IPv4 ones, which
// leave from the lease's address, and the IPv6 ones, from its static IPv6
// addresses.
func splitRoutes(routes []config.Route) (v4, v6 []config.Route) {
	for _, r := range routes {
		if r.Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	return v4, v6
}
