package network

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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

// leaseRoutesMu keeps two settings of a link's lease routes (Apply's, and
// a renewal's that applied another address meanwhile) from interleaving:
// the last one judges against the addresses the link has by then.
var leaseRoutesMu sync.Mutex

// setLeaseRoutes records the IPv4 routes the machine config gives link
// name beside its DHCP lease, which the link's renewal keeps from now on;
// none forgets them.
func (r *renewals) setLeaseRoutes(name string, x leaseRoutes) {
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
// a machine config applied again gives them anew (setLeaseRoutes); a link
// it does not list keeps those it has until its lease's address changes.
func (r *renewals) forgetLeaseRoutes() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.extra = nil
}

// leaseRoutesLocked returns link name's routes beside its lease, if the
// machine config gives it any.
func (r *renewals) leaseRoutesLocked(name string) (leaseRoutes, bool) {
	x, ok := r.extra[name]
	return x, ok
}

// keepLeaseRoutes follows a lease applied on l, or lost: logs what the
// routes the machine config gives l beside it (when it gives any) could
// not get.
func (r *renewals) keepLeaseRoutes(l netlink.Link, log *slog.Logger) {
	var (
		x  leaseRoutes
		ok bool
	)
	locked(&r.mu, func() { x, ok = r.leaseRoutesLocked(l.Attrs().Name) })
	if !ok {
		return
	}
	if _, errs := setLeaseRoutes(l, x); len(errs) > 0 && log != nil {
		log.Warn("a route beside the DHCP lease was not added", "iface", l.Attrs().Name, "reason", errors.Join(errs...).Error())
	}
}

// setLeaseRoutes makes link l's IPv4 routes of the machine config (proto
// static, not a default route) those of x, judged against the IPv4
// addresses the link has now (a lease's: the next hop of a route outside
// its subnet is on-link); with no IPv4 address on the link (the lease lost,
// or not come yet), it has none. A route already there as it should be is
// left alone: a renewal that keeps its address changes nothing. It returns
// how the console shows the routes there, and why the others are not.
func setLeaseRoutes(l netlink.Link, x leaseRoutes) (shown []string, errs []error) {
	leaseRoutesMu.Lock()
	defer leaseRoutesMu.Unlock()
	name := l.Attrs().Name
	addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_V4) })
	if err != nil {
		return nil, []error{fmt.Errorf("listing the addresses of %s: %w", name, err)}
	}
	have, err := dump(func() ([]netlink.Route, error) { return netlink.RouteList(l, netlink.FAMILY_V4) })
	if err != nil {
		return nil, []error{fmt.Errorf("listing the routes of %s: %w", name, err)}
	}
	var from []Lease
	for _, a := range addrs {
		if a.IPNet != nil && a.Scope == unix.RT_SCOPE_UNIVERSE {
			from = append(from, Lease{Iface: name, Addr: *a.IPNet})
		}
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
