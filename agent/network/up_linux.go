package network

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/mount"
	"github.com/etoile-os/etoile/agent/safego"
)

// lateMetric (plus the link's index) is the default route's metric of a
// lease that came after Up collected its Result: behind the boot's (100 +
// index).
const lateMetric = 1000

// Config tunes Up.
type Config struct {
	Log *slog.Logger
	// CarrierWait bounds the wait for a cable to show carrier after the
	// link is set up.
	CarrierWait time.Duration
	// CarrierGrace is how long to keep waiting for other links once one
	// has carrier (a server's second port is often cabled too).
	CarrierGrace time.Duration
	// DHCPTimeout bounds the whole exchange on each link.
	DHCPTimeout time.Duration
	// LeaseGrace, once a link has a lease with a default route (counted
	// from that lease), bounds the wait for the other links' exchanges: a cabled port on a network
	// without DHCP (a storage network the machine config makes static)
	// must not hold the boot for DHCPTimeout. Those go on in the
	// background: a lease that comes is applied (its default route behind
	// the boot's), renewed and logged, and is in no Result (collected
	// once the waits for the leases end) — nor in resolv.conf or the NTP
	// servers. Zero: wait for every exchange.
	LeaseGrace time.Duration
	// EtcDir receives resolv.conf and hostname ("/etc").
	EtcDir string
	// Retry, when not zero, asks DHCP again on a link whose first
	// exchange got no lease (Up's, or Apply's for a dhcp: true entry):
	// Retry after it, then twice as long each time, up to RetryMax (a
	// minute when zero), until a lease comes (a DHCP server or switch port
	// that comes up after the machine: a rack powered on at once) or ctx
	// ends. Up does not wait for it: a lease that comes then is applied as
	// a late link's is (behind the boot's default routes, in no Result's
	// Leases but in AllLeases).
	Retry, RetryMax time.Duration
	// OnLateLease, when not nil, is called with each lease applied after
	// Up collected its Result (Retry's, a late link's), once it is in
	// AllLeases: the caller rewrites resolv.conf and may start what waited
	// for an address.
	OnLateLease func(Lease)
	// OnRenewed, when not nil, is called (in a goroutine of its own) with
	// a renewed lease whose address, name, search or NTP servers changed,
	// or with one without an address when a lease was lost: the caller
	// rewrites resolv.conf (AllLeases shows the renewed lease, and no
	// longer the lost one).
	OnRenewed func(Lease)
	// Renew keeps each lease alive in the background until ctx ends, as
	// RFC 2131 has it (lifecycle): renewed from its server at T1, from any
	// at T2; once it runs out, or a server refuses it (a NAK), its address
	// and routes go and DHCP is asked again, at once, then Retry later and
	// up to RetryMax; and asked again at once when the link gets its
	// carrier back after losing it (Up follows the links' carrier).
	// OnRenewed is told of each change, and of a lease lost (a Lease with
	// no address).
	Renew bool
	// Only names the links to configure; empty means every physical link
	// (the machine config will name interfaces; tests use a veth).
	Only []string
	// Settled, when not nil, is closed once the drivers have loaded: until
	// then new links may still appear, and Up keeps looking for them (while
	// running DHCP on those that have carrier).
	Settled <-chan struct{}
	// EarlyReturn lets Up return before Settled, once at least one link
	// has carrier and every link seen so far has it (or CarrierGrace has
	// passed since the first did), and one of them got a lease: the boot's
	// ready line then waits for the NICs there are, not for every other
	// driver. Links that appear later are set up, get DHCP and are logged
	// in the background until the drivers settle; they are not in the
	// Result. Without a lease from the early links, Up waits for Settled.
	EarlyReturn bool
	// NICWait bounds the wait, when the host name is generated (no DHCP
	// host name), for the NICs on the machine's buses to register their
	// interfaces: the name comes from the lowest of their MACs, which must
	// not depend on which driver probed first. Zero: no wait.
	NICWait time.Duration
	// HasDriver tells which NICs are worth that wait: those whose
	// modalias has a driver in the image (nil: every NIC).
	HasDriver func(modalias string) bool
	// DriversKnown, when not nil, is closed once HasDriver knows every
	// driver the boot can still load (the system image's own modules, an
	// extension's NIC driver, merged into the index). A generated host
	// name waits for it (DriversKnownWait at most), unless every NIC
	// already has its interface, then NICWait for the NICs with a driver:
	// otherwise a NIC driven only by an extension would count in some
	// boots and not in others, and the K3s node would change its name.
	DriversKnown     <-chan struct{}
	DriversKnownWait time.Duration
	// SysDir is where sysfs is ("/sys" when empty).
	SysDir string
	// SetHostname sets the kernel's host name; sethostname(2) when nil.
	// Tests replace it: a network namespace does not isolate the host name.
	SetHostname func(string) error
	// resendMin is the shortest wait between two REQUESTs of a renewal
	// (a minute when zero, RFC 2131's; tests shorten it).
	resendMin time.Duration
	// dhcpHook and applyHook, when not nil, stand in for dhcp and apply
	// where askDHCP and applyLease are used (tests).
	dhcpHook  func(context.Context, netlink.Link) (Lease, error)
	applyHook func(netlink.Link, Lease, int) error
}

// askDHCP runs DHCP on l (dhcp).
func (cfg Config) askDHCP(ctx context.Context, l netlink.Link) (Lease, error) {
	if cfg.dhcpHook != nil {
		return cfg.dhcpHook(ctx, l)
	}
	return dhcp(ctx, l, cfg)
}

// applyLease sets lease's address and routes on l (apply); what it set
// goes again when it fails part-way (a route the kernel refuses): no
// address is left on the link without a lease behind it.
func (cfg Config) applyLease(l netlink.Link, lease Lease, metric int) error {
	if cfg.applyHook != nil {
		return cfg.applyHook(l, lease, metric)
	}
	err := apply(l, lease, metric)
	if err != nil {
		dropOld(l, lease, Lease{}, metric)
	}
	return err
}

// Result is what Up configured.
type Result struct {
	Leases     []Lease
	Hostname   string
	PrimaryMAC net.HardwareAddr
	// Links lists the physical links seen, with carrier or not.
	Links []string

	renew *renewals // the DHCP renewals, stopped when a link turns static (Apply)
	// names are the machine config's name servers for DHCP links (Apply),
	// ahead of the leases' in resolv.conf.
	names []Lease
	// bonds are the bonds Apply made: one a later config no longer lists
	// is removed, its ports given back to the boot's DHCP.
	bonds []string
}

// AllLeases is what the machine's links have now: the Result's leases (as
// their renewals last got them), then those that came after it was
// collected (late links', leases got by asking again), which give name and
// NTP servers too.
// A lease that ran out is in none until it comes again.
func (r Result) AllLeases() []Lease {
	all := append(r.renew.current(r.Leases), r.renew.lateLeases()...)
	return slices.DeleteFunc(all, func(l Lease) bool { return l.Addr.IP == nil })
}

// HasBonds reports whether an applied machine config made bonds: a later
// config without any must still be applied, to remove them.
func (r Result) HasBonds() bool { return len(r.bonds) > 0 }

// resolvLeases are the sources of resolv.conf, in order.
func (r Result) resolvLeases() []Lease {
	return append(slices.Clone(r.names), r.AllLeases()...)
}

// dump runs a netlink dump again while a change the kernel made meanwhile
// interrupts it (netlink.ErrDumpInterrupted), five times at most.
func dump[T any](list func() ([]T, error)) ([]T, error) {
	out, err := list()
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
		out, err = list()
	}
	return out, err
}

// physicalLinks lists the links to configure: those named in only, or
// every physical Ethernet link.
func physicalLinks(only []string) ([]netlink.Link, error) {
	// A NIC that registers during the dump interrupts it: drivers probe
	// while the boot looks.
	all, err := dump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing network links: %w", err)
	}
	var links []netlink.Link
	for _, l := range all {
		if ours(l, only) {
			links = append(links, l)
		}
	}
	return links, nil
}

// ours reports whether l is a link to configure: named in only, or (only
// empty) a physical Ethernet link — no bridges, tunnels or veths that
// something else made.
func ours(l netlink.Link, only []string) bool {
	a := l.Attrs()
	if len(only) > 0 {
		return slices.Contains(only, a.Name)
	}
	return l.Type() == "device" && a.Flags&net.FlagLoopback == 0 && len(a.HardwareAddr) == 6
}

// Up brings every physical link up, runs DHCP on those with carrier in
// parallel, and applies the leases. Links without carrier or without an
// answer are logged and left up without an address; only having no physical
// link at all, or the loopback failing, is an error (a node without an
// address is still reachable on the console and is worth booting).
func Up(ctx context.Context, cfg Config) (Result, error) {
	res := Result{renew: &renewals{}}
	if cfg.Renew {
		res.renew.watchCarrier(ctx, cfg.Log)
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return res, fmt.Errorf("bringing up the loopback: %w", err)
	}
	// Links are listed again and again while waiting for carrier: a NIC
	// whose driver loads (or probes) meanwhile is set up and waited for
	// too, and each link's DHCP starts as soon as it has carrier.
	var (
		mu     sync.Mutex
		leases = map[int]Lease{} // by link index
		asking = map[string]bool{}
		// collected: the Result's leases are taken; a lease after is in none.
		collected bool
		// pending counts the exchanges Up waits for (not late links');
		// routedAt is when the first lease with a default route came.
		pending  int
		routedAt time.Time
		// begun: the links whose DHCP goroutine runs, by index (the boot's
		// watch, the late links' and the cable watch may each find one).
		begun = map[int]bool{}
	)
	// late: a link that the late links' watch found (after the boot's
	// watch ended); nothing waits for it.
	startDHCP := func(l netlink.Link, late bool) {
		// A lease that comes after the Result was taken gets a default
		// route behind every boot lease's: the route K3s chose its address
		// by, and the ready line's ip=, stay the machine's way out.
		metric := func() int { // under res.renew.mu
			mu.Lock()
			defer mu.Unlock()
			if late || collected {
				return lateMetric + l.Attrs().Index
			}
			return 100 + l.Attrs().Index
		}
		name, idx := l.Attrs().Name, l.Attrs().Index
		already := false
		locked(&mu, func() {
			if already = begun[idx]; already {
				return
			}
			begun[idx] = true
			asking[name] = true
			if !late {
				pending++
			}
		})
		if already {
			return
		}
		go func() {
			defer locked(&mu, func() { delete(begun, idx) })
			// done: Up no longer waits for this link (its first exchange
			// ended); asking again goes on in the background.
			waited := true
			done := func() {
				mu.Lock()
				defer mu.Unlock()
				delete(asking, name)
				if !late && waited {
					pending--
				}
				waited = false
			}
			defer done()
			defer safego.Recover(cfg.Log, "DHCP on "+name)
			unused := late                 // a lease in no Result
			applied := func(lease Lease) { // under res.renew.mu
				mu.Lock()
				defer mu.Unlock()
				unused = unused || collected
				if unused {
					res.renew.setLateLocked(lease)
					return
				}
				leases[l.Attrs().Index] = lease
				if lease.hasDefaultRoute() && routedAt.IsZero() {
					routedAt = time.Now()
				}
			}
			// The boot's exchange: its link's carrier just came, and the
			// link watch may tell so while it runs. The retries' share a
			// kick: a carrier that comes back during one ends the wait
			// after it.
			lease, err := res.renew.exchange(ctx, l, nil, metric, applied, cfg)
			kick := make(chan struct{}, 1)
			tries := 1
			for wait := cfg.Retry; err != nil && !errors.Is(err, errStopped) && wait > 0 && ctx.Err() == nil; tries++ {
				if tries == 1 {
					cfg.Log.Warn("no DHCP lease; asking again in the background", "iface", name, "reason", err.Error(),
						"fix", "check the cable, the switch port (spanning tree can hold a port for 30 s) and that a DHCP server serves this network, or make the link static in the machine config")
					done()
				} else {
					cfg.Log.Debug("no DHCP lease yet", "iface", name, "tries", tries, "reason", err.Error(), "next_in", wait)
				}
				if linkGone(l, cfg.Log) {
					return
				}
				kicked := res.renew.waitRetry(ctx, l, wait, kick, cfg.Log)
				if ctx.Err() != nil {
					return
				}
				if kicked {
					wait = cfg.Retry // a port that does not forward yet fails this try: the next comes soon
				} else {
					wait = cfg.nextRetry(wait)
				}
				if linkGone(l, cfg.Log) {
					return
				}
				lease, err = res.renew.exchange(ctx, l, kick, metric, applied, cfg)
			}
			switch {
			case errors.Is(err, errStopped):
				cfg.Log.Info("DHCP stopped", "iface", name, "reason", err.Error())
				return
			case err != nil && ctx.Err() != nil:
				return
			case err != nil:
				cfg.Log.Warn("no DHCP lease", "iface", name, "reason", err.Error())
				return
			}
			attrs := leaseAttrs(lease)
			if tries > 1 {
				attrs = append(attrs, "tries", tries)
			}
			cfg.Log.Info("dhcp lease", attrs...)
			if unused && cfg.OnLateLease != nil {
				cfg.OnLateLease(lease)
			}
			if unused && lease.Hostname != "" {
				// The machine was named without it: a name that depends on
				// which DHCP server answers first would rename the K3s node.
				cfg.Log.Warn("DHCP host name not used", "iface", name, "hostname", lease.Hostname,
					"why", "it came after the boot's network step had named the machine",
					"fix", "set hostname: in the machine config for a name that does not depend on DHCP's timing")
			}
		}()
	}
	// watchAfter: from the end of Up, a link that gets its cable (or a NIC
	// that appears) is asked for a lease then, a late one. Those that
	// registered or got carrier since the boot's last look are seen to now.
	watchAfter := func() {
		if !cfg.Renew {
			return
		}
		res.renew.watchCables(cfg.Only, func(l netlink.Link) {
			cfg.Log.Info("link has carrier: asking DHCP", "iface", l.Attrs().Name)
			startDHCP(l, true)
		})
		now, err := physicalLinks(cfg.Only)
		if err != nil {
			return
		}
		for _, l := range now {
			switch {
			case l.Attrs().Flags&net.FlagUp == 0:
				res.renew.appeared(l, cfg.Log)
			case hasCarrier(l.Attrs().Name):
				res.renew.cabled(l)
			}
		}
	}
	w := &linkWatch{cfg: cfg, onCarrier: func(l netlink.Link) { startDHCP(l, false) }, early: cfg.EarlyReturn,
		set: map[int]bool{}, started: map[int]bool{}}
	links, withCarrier, settled, err := w.wait(ctx)
	// waitLeases waits for the exchanges Up waits for: all of them, or,
	// LeaseGrace after the first lease with a default route, none (the
	// others go on in the background). Until the drivers settle it keeps
	// looking at the links meanwhile (the watch's early mode returns after
	// one look), so that a NIC that registers or gets carrier while the
	// first ones ask (a silent port found first) starts its DHCP at once.
	told := false
	waitLeases := func(watch bool) {
		for ctx.Err() == nil {
			var (
				n     int
				at    time.Time
				still []string
			)
			locked(&mu, func() {
				n, at = pending, routedAt
				still = slices.Sorted(maps.Keys(asking))
			})
			if n == 0 {
				return
			}
			if cfg.LeaseGrace > 0 && !at.IsZero() && time.Since(at) >= cfg.LeaseGrace {
				if !told {
					told = true
					cfg.Log.Info("DHCP goes on in the background", "links", strings.Join(still, ","),
						"why", "a link has a default route; a lease that comes later is applied then")
				}
				return
			}
			if watch && !settled && err == nil {
				l, c, st, werr := w.wait(ctx)
				switch {
				case werr == nil:
					links, withCarrier, settled = l, c, st
				case ctx.Err() != nil:
					err = werr
				default:
					// The links seen so far stay; the late links' watch
					// looks again.
					cfg.Log.Warn("looking at the network links failed", "reason", werr.Error())
					watch = false
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if err == nil && !settled {
		// Returning early is worth it only with an address: if the links
		// there are got no lease, wait for the drivers (and later NICs).
		waitLeases(true)
		got := false
		locked(&mu, func() { got = len(leases) > 0 })
		if err == nil && !settled && !got {
			w.early = false
			links, withCarrier, settled, err = w.wait(ctx)
		}
	}
	if err == nil && !settled {
		seen := len(links)
		go func() {
			defer safego.Recover(cfg.Log, "watching for late network links")
			// From here on, wait for Settled, and CarrierGrace from then.
			w.early, w.firstSeen = false, time.Time{}
			w.onCarrier = func(l netlink.Link) { startDHCP(l, true) }
			late, _, _, err := w.wait(ctx)
			if err != nil && ctx.Err() == nil {
				cfg.Log.Warn("watching for late network links stopped", "reason", err.Error())
			}
			if n := len(late) - seen; n > 0 {
				cfg.Log.Info("network links that appeared after the boot's network step", "links", n)
			}
		}()
	}
	for _, l := range links {
		res.Links = append(res.Links, l.Attrs().Name)
	}
	if err != nil {
		for { // the exchanges end with ctx
			n := 0
			locked(&mu, func() { n = pending })
			if n == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Asking again may go on (the error was not ctx's): what comes
		// then is a late lease, in AllLeases.
		locked(&res.renew.mu, func() {
			locked(&mu, func() {
				collected = true
				for _, idx := range slices.Sorted(maps.Keys(leases)) { // applied and renewed: in AllLeases
					res.renew.setLateLocked(leases[idx])
				}
			})
		})
		return res, err
	}
	if len(links) == 0 {
		watchAfter() // a USB NIC plugged in later is set up and asked
		return res, errors.New("no network interface found (is the NIC's driver in the image? see the hardware drivers line above)")
	}
	cfg.Log.Debug("carrier", "links", len(withCarrier))
	// The watch is the late links' from here.
	waitLeases(false)
	// Late links' DHCP may still write; an exchange applies its lease and
	// says so under res.renew.mu: a lease is in the Result with the boot's
	// metric, or in none with a late one.
	locked(&res.renew.mu, func() {
		locked(&mu, func() {
			for _, l := range links {
				if lease, ok := leases[l.Attrs().Index]; ok {
					res.Leases = append(res.Leases, lease)
				}
			}
			collected = true
		})
	})

	if dhcpNamed(res.Leases) {
		res.PrimaryMAC = primaryMAC(cfg.sysDir(), nicAddrs(links))
	} else {
		// The name is generated from a MAC: see primary.go.
		res.PrimaryMAC = generatedNameMAC(ctx, cfg, links)
	}
	res.Hostname = Hostname(res.Leases, res.PrimaryMAC)
	set := cfg.SetHostname
	if set == nil {
		set = func(h string) error { return unix.Sethostname([]byte(h)) }
	}
	if err := set(res.Hostname); err != nil {
		cfg.Log.Warn("setting the hostname failed", "hostname", res.Hostname, "reason", err.Error())
	}
	if cfg.EtcDir != "" {
		WriteEtc(cfg.EtcDir, res, cfg.Log)
	}
	watchAfter()
	return res, nil
}

// WriteEtc writes what Up learnt into dir ("/etc"): hostname, and
// resolv.conf when a lease gave one (WriteResolv). Failures are logged: a
// node without them still boots.
func WriteEtc(dir string, res Result, log *slog.Logger) {
	if err := writeFile(filepath.Join(dir, "hostname"), []byte(res.Hostname+"\n")); err != nil {
		log.Warn("writing hostname failed", "reason", err.Error())
	}
	WriteResolv(dir, res, log)
}

// WriteResolv writes dir/resolv.conf from the machine config's name servers
// and every lease, those that came after the boot's network step included,
// when there is any.
func WriteResolv(dir string, res Result, log *slog.Logger) {
	if all := res.resolvLeases(); len(all) > 0 {
		writeResolv(dir, all, log)
	}
}

// RewriteResolv is WriteResolv after a lease was lost: with no lease left,
// resolv.conf is written without name servers (the lost lease's are not
// the machine's any more).
func RewriteResolv(dir string, res Result, log *slog.Logger) {
	writeResolv(dir, res.resolvLeases(), log)
}

func writeResolv(dir string, leases []Lease, log *slog.Logger) {
	if err := writeResolvConf(filepath.Join(dir, "resolv.conf"), leases, log); err != nil {
		log.Warn("writing resolv.conf failed", "reason", err.Error())
	}
}

// writeResolvConf writes path from leases (ResolvConf), warning once of
// each name server a lease gives that cannot be one (left out).
func writeResolvConf(path string, leases []Lease, log *slog.Logger) error {
	b, skipped := resolvConf(leases)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, s := range skipped {
		attrs := []any{"iface", s.iface, "dns", s.addr, "why", s.why,
			"fix", "give this network's DHCP server (option 6) or the machine config (dns:) the address of a name server on the network"}
		if once("dns " + s.iface + " " + s.addr) {
			log.Warn("name server not written to resolv.conf", attrs...)
		} else {
			log.Debug("name server not written to resolv.conf", attrs...)
		}
	}
	return writeFile(path, b)
}

// warned holds the warnings given once (once).
var warned sync.Map

// once reports whether key is seen for the first time in this process: a
// warning that each renewal would repeat is given once.
func once(key string) bool {
	_, seen := warned.LoadOrStore(key, true)
	return !seen
}

// writeFile replaces path with b (mode 0644) at once, as rename(2) does:
// a reader (a resolver reading resolv.conf) sees the old file or the new
// one, never none or part of one, and a failed write leaves the old file.
// A symlink at path (resolv.conf may be a dangling link into /run in a
// system image) is replaced by the file.
func writeFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644) // CreateTemp's is 0600
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// linkWatch sets every physical link up as it appears and calls onCarrier
// once for each link as it gets carrier.
type linkWatch struct {
	cfg       Config
	onCarrier func(netlink.Link)
	early     bool // may return before Settled (cfg.EarlyReturn; the first wait only)
	started   map[int]bool
	set       map[int]bool
	deadline  time.Time
	firstSeen time.Time
}

// wait returns the links (in index order) and those with carrier, looking
// again every 20 ms until the drivers have settled (cfg.Settled) and then
// all links have carrier, or CarrierGrace after the first did; or
// CarrierWait has passed since the drivers settled. With EarlyReturn it
// may return before Settled (see Config); settled tells which. Links are
// listed again on every look: a NIC that appears meanwhile is set up and
// waited for too.
func (w *linkWatch) wait(ctx context.Context) (links, withCarrier []netlink.Link, settled bool, err error) {
	cfg := w.cfg
	for {
		settled = cfg.Settled == nil
		if !settled {
			select {
			case <-cfg.Settled:
				settled = true
			default:
			}
		}
		now := time.Now()
		if settled && w.deadline.IsZero() {
			w.deadline = now.Add(cfg.CarrierWait)
		}
		links, err = physicalLinks(cfg.Only)
		if err != nil {
			return nil, nil, settled, err
		}
		slices.SortFunc(links, func(a, b netlink.Link) int { return a.Attrs().Index - b.Attrs().Index })
		withCarrier = withCarrier[:0]
		for _, l := range links {
			i := l.Attrs().Index
			if !w.set[i] {
				w.set[i] = true
				if err := netlink.LinkSetUp(l); err != nil {
					cfg.Log.Warn("link up failed", "iface", l.Attrs().Name, "reason", err.Error())
				}
				cfg.Log.Debug("link up, waiting for carrier", "iface", l.Attrs().Name)
			}
			if hasCarrier(l.Attrs().Name) {
				withCarrier = append(withCarrier, l)
				if !w.started[i] {
					w.started[i] = true
					w.onCarrier(l)
				}
			}
		}
		if len(withCarrier) > 0 && w.firstSeen.IsZero() {
			w.firstSeen = now
		}
		carrierDone := (len(links) > 0 && len(withCarrier) == len(links)) ||
			(!w.firstSeen.IsZero() && now.Sub(w.firstSeen) >= cfg.CarrierGrace)
		if (settled && (carrierDone || now.After(w.deadline))) || (w.early && len(withCarrier) > 0 && carrierDone) || ctx.Err() != nil {
			for _, l := range links {
				if settled && !slices.Contains(withCarrier, l) {
					cfg.Log.Info("no carrier", "iface", l.Attrs().Name)
				}
			}
			return links, withCarrier, settled, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasCarrier(name string) bool {
	defer mount.HoldAPI()()
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "carrier"))
	return err == nil && len(b) > 0 && b[0] == '1'
}

func dhcp(ctx context.Context, l netlink.Link, cfg Config) (Lease, error) {
	return dhcpWant(ctx, l, cfg, nil)
}

// dhcpWant is dhcp asking for the address want (a renewal's).
func dhcpWant(ctx context.Context, l netlink.Link, cfg Config, want net.IP) (Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.DHCPTimeout)
	defer cancel()
	name := l.Attrs().Name
	cfg.Log.Debug("dhcp starting", "iface", name)
	defer cfg.Log.Debug("dhcp done", "iface", name)
	c, err := nclient4.New(name, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3),
		nclient4.WithLogger(dhcpLogger{cfg.Log.With("iface", name)}))
	if err != nil {
		return Lease{}, fmt.Errorf("opening a DHCP socket on %s: %w", name, err)
	}
	defer c.Close()
	ack, asked, err := dora(ctx, c, l.Attrs().HardwareAddr, want)
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP on %s: %w", name, err)
	}
	lease, err := LeaseFromACK(name, l.Attrs().HardwareAddr, ack)
	refused(cfg.Log, err)
	noteLease(cfg.Log, lease, err)
	lease.asked = asked
	return lease, err
}

// noteLease warns, once for each link and server, of a lease whose lease
// time (option 51) was not used as the server gave it.
func noteLease(log *slog.Logger, lease Lease, err error) {
	if log == nil || err != nil || lease.lifetimeIssue == "" {
		return
	}
	server := "unknown"
	if lease.Server != nil {
		server = lease.Server.String()
	}
	attrs := []any{"iface", lease.Iface, "server", server, "addr", lease.Addr.String(), "lease", lease.Lifetime, "why", lease.lifetimeIssue,
		"fix", "give the DHCP server a lease time (option 51) for this network; 0xffffffff is an infinite lease"}
	if once("lease time " + lease.Iface + " " + server) {
		log.Warn("DHCP server's lease time not used", attrs...)
	} else {
		log.Debug("DHCP server's lease time not used", attrs...)
	}
}

// refused logs an answer refused for its subnet mask, each time: the
// caller may show its error only at debug level while it asks again.
func refused(log *slog.Logger, err error) {
	var me *MaskError
	if log != nil && errors.As(err, &me) {
		log.Warn("DHCP answer refused: its subnet mask is not valid", "iface", me.Iface, "server", me.Server,
			"addr", me.Addr, "mask", me.Mask, "fix", "fix the subnet mask (option 1) the DHCP server gives this network; DHCP is asked again")
	}
}

// apply sets the address and routes. metric keeps default routes from two
// DHCP links apart (the first link's wins). The address lives as long as
// the lease has left (the kernel removes it then, should its renewal have
// died; a renewal's apply extends it), an infinite lease's for ever. A
// lease apply fails on leaves what it set so far: the caller undoes it
// (dropOld with no next lease, or its own).
func apply(l netlink.Link, lease Lease, metric int) error {
	if err := checkMask(lease.Addr.Mask); err != nil {
		// The netlink library panics on a mask that is not contiguous.
		return fmt.Errorf("adding %s to %s: subnet mask %s %s", lease.Addr.IP, lease.Iface, maskString(lease.Addr.Mask), err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: lease.Addr.IP, Mask: lease.Addr.Mask}}
	if left := lease.left(); left > 0 {
		addr.ValidLft, addr.PreferedLft = left, left
	}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", lease.Addr.String(), lease.Iface, err)
	}
	for _, r := range lease.Routes {
		if err := netlink.RouteReplace(leaseRoute(l, lease, r, metric)); err != nil {
			return fmt.Errorf("adding route %v via %v on %s: %w", r.Dst, r.Gateway, lease.Iface, err)
		}
	}
	return nil
}

// left is the address's lifetime in whole seconds (rounded up, 1 at
// least): what the lease has left, counted from its REQUEST; 0 for an
// infinite lease (the address stays for ever).
func (l Lease) left() int {
	if l.infinite() {
		return 0
	}
	d := l.Lifetime
	if !l.asked.IsZero() {
		d -= time.Since(l.asked)
	}
	return max(1, int((d+time.Second-1)/time.Second))
}

// leaseRoute is route r of lease as the kernel gets it on link l: through
// no gateway, a link-scope route; through a gateway outside the lease's
// subnet (a /32 lease, as hosters give, or a relay's odd subnet), an
// on-link one, which the kernel refuses otherwise (ENETUNREACH).
func leaseRoute(l netlink.Link, lease Lease, r Route, metric int) *netlink.Route {
	rt := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: r.Dst, Gw: r.Gateway, Priority: metric, Protocol: protoDHCP}
	switch {
	case r.Gateway == nil || r.Gateway.IsUnspecified():
		rt.Gw, rt.Scope = nil, netlink.SCOPE_LINK
	case !lease.Addr.Contains(r.Gateway):
		rt.Flags = int(netlink.FLAG_ONLINK)
	}
	return rt
}

// setMTU sets the MTU lease gives (option 26) on link l before its
// address is applied, unless the machine config sets the link's (fixed):
// one the link cannot take is warned about, and the lease kept. On a link
// with IPv6 addresses (its own link-local one, or the machine config's) an
// MTU under 1280 would make the kernel drop them all: 1280 is used, and
// the offered one named in a warning (so is one under 576, raised to it by
// LeaseFromACK). The link's MTU before DHCP first changed it is kept
// (dhcpMTUs): a lease without option 26 after one with it, or the lease's
// loss (restoreMTU), puts it back, as systemd-networkd does.
//
// undo puts back the MTU (and its record) from before: the caller's when
// the lease cannot be applied, which leaves the link as it was.
func setMTU(l netlink.Link, lease Lease, fixed bool, log *slog.Logger) (undo func()) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name, index := l.Attrs().Name, l.Attrs().Index
	if fixed {
		dhcpMTUs.forget(index) // the machine config's MTU is not DHCP's to undo
		if lease.MTU != 0 {
			log.Debug("DHCP's MTU not used: the machine config sets the link's", "iface", name, "mtu", lease.MTU)
		}
		return func() {}
	}
	was := currentMTU(l)
	rec, had := dhcpMTUs.get(index)
	undo = func() {
		if now := currentMTU(l); now != was {
			if err := netlink.LinkSetMTU(l, was); err != nil {
				log.Warn("putting the link's MTU back failed after its lease could not be applied", "iface", name, "mtu", was,
					"link_mtu", now, "reason", err.Error(), "fix", "set mtu: for the link in the machine config")
				return
			}
			log.Info("MTU back: the lease could not be applied", "iface", name, "mtu", was, "was", now)
		}
		if had {
			dhcpMTUs.set(index, rec)
		} else {
			dhcpMTUs.forget(index)
		}
	}
	if lease.MTU == 0 {
		restoreMTU(l, log, "the lease gives no MTU")
		return undo
	}
	want := lease.MTU
	if want < ipv6MinMTU && hasIPv6(l) {
		want = ipv6MinMTU
	}
	if was == want {
		return undo
	}
	if offered := cmp.Or(lease.offeredMTU, lease.MTU); offered != want {
		why := "an MTU under 576 is one every IPv4 host must take, and DHCP's own messages may not fit"
		if want == ipv6MinMTU {
			why = "the link has IPv6 addresses, which the kernel drops under IPv6's minimum MTU of 1280"
		}
		server := "unknown"
		if lease.Server != nil {
			server = lease.Server.String()
		}
		log.Warn("DHCP's MTU raised", "iface", name, "offered", offered, "mtu", want, "server", server, "why", why,
			"fix", "give this network a valid MTU in the DHCP server's option 26 (576 at least, 1280 where links have IPv6), or set mtu: for the link in the machine config")
	}
	if err := netlink.LinkSetMTU(l, want); err != nil {
		log.Warn("setting the MTU DHCP gives failed; the lease is used with the link's", "iface", name, "mtu", want,
			"link_mtu", was, "reason", err.Error(), "fix", "give the link an MTU it can take in the DHCP server's option 26, or set mtu: for it in the machine config")
		return undo
	}
	dhcpMTUs.keep(index, was)
	log.Info("MTU from DHCP", "iface", name, "mtu", want, "was", was)
	return undo
}

// hasIPv6 reports whether link l has an IPv6 address (its link-local one
// included), which an MTU under 1280 would make the kernel drop.
func hasIPv6(l netlink.Link) bool {
	addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_V6) })
	return err == nil && len(addrs) > 0
}

// raiseForIPv6 raises link l's MTU to 1280 when DHCP lowered it below (the
// link had no IPv6 address then), before the machine config's IPv6
// addresses are added: the kernel refuses them under it.
func raiseForIPv6(l netlink.Link, log *slog.Logger) error {
	if _, ok := dhcpMTUs.get(l.Attrs().Index); !ok {
		return nil
	}
	was := currentMTU(l)
	if was >= ipv6MinMTU {
		return nil
	}
	if err := netlink.LinkSetMTU(l, ipv6MinMTU); err != nil {
		return fmt.Errorf("raising %s's MTU %d (DHCP's) to IPv6's 1280 for its IPv6 addresses: %w (set mtu: for the link)", l.Attrs().Name, was, err)
	}
	if log != nil {
		log.Warn("DHCP's MTU raised", "iface", l.Attrs().Name, "offered", was, "mtu", ipv6MinMTU,
			"why", "the machine config gives the link IPv6 addresses, which the kernel refuses under IPv6's minimum MTU of 1280",
			"fix", "give this network an MTU of 1280 or more in the DHCP server's option 26, or set mtu: for the link in the machine config")
	}
	return nil
}

// restoreMTU puts back link l's MTU from before DHCP changed it, if it did.
func restoreMTU(l netlink.Link, log *slog.Logger, why string) {
	index := l.Attrs().Index
	orig, ok := dhcpMTUs.get(index)
	if !ok {
		return
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	was := currentMTU(l)
	if was != orig {
		if err := netlink.LinkSetMTU(l, orig); err != nil {
			log.Warn("putting the link's MTU back from DHCP's failed", "iface", l.Attrs().Name, "mtu", orig, "link_mtu", was, "reason", err.Error())
			return
		}
		log.Info("MTU back from DHCP's", "iface", l.Attrs().Name, "mtu", orig, "was", was, "why", why)
	}
	dhcpMTUs.forget(index)
}

// currentMTU is link l's MTU now (l's own record when the kernel's cannot
// be read).
func currentMTU(l netlink.Link) int {
	if cur, err := netlink.LinkByIndex(l.Attrs().Index); err == nil {
		return cur.Attrs().MTU
	}
	return l.Attrs().MTU
}

// dhcpMTUs are the links' MTUs from before DHCP changed them, by index.
var dhcpMTUs mtuRecord

type mtuRecord struct {
	mu sync.Mutex
	m  map[int]int
}

// keep records index's MTU before DHCP's first change (later changes keep
// the first record).
func (r *mtuRecord) keep(index, mtu int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[int]int{}
	}
	if _, ok := r.m[index]; !ok {
		r.m[index] = mtu
	}
}

// set records index's MTU before DHCP changed it (undo puts a record back).
func (r *mtuRecord) set(index, mtu int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[int]int{}
	}
	r.m[index] = mtu
}

func (r *mtuRecord) get(index int) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mtu, ok := r.m[index]
	return mtu, ok
}

func (r *mtuRecord) forget(index int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, index)
}

// leaseAttrs are a lease's log line's attributes.
func leaseAttrs(lease Lease) []any {
	attrs := []any{"iface", lease.Iface, "addr", lease.Addr.String(), "routes", len(lease.Routes), "dns", len(lease.DNS)}
	if lease.MTU != 0 {
		attrs = append(attrs, "mtu", lease.MTU)
	}
	return attrs
}

// dhcpLogger shows nclient4's exchanges at debug level (etoile.debug).
type dhcpLogger struct{ log *slog.Logger }

func (l dhcpLogger) Printf(format string, v ...interface{}) {
	l.log.Debug("dhcp: " + fmt.Sprintf(format, v...))
}

func (l dhcpLogger) PrintMessage(prefix string, m *dhcpv4.DHCPv4) {
	l.log.Debug("dhcp: "+prefix, "type", m.MessageType().String(), "xid", m.TransactionID.String(), "yiaddr", m.YourIPAddr.String())
}

// watchCarrier follows the links' carrier until ctx ends: a link that gets
// it back after losing it, whose lease is renewed, is asked again at once.
// A subscription the kernel ends (its socket's buffer overrun in a burst of
// link events) is made again, and what changed in the gap is acted on as
// if it had been seen: a carrier that came back (or went and came back: the
// link's carrier_up_count grew), a NIC that went or came.
//
// A panic ends a subscription as the kernel would (safego.Loop): the watch
// starts again, with a first look.
func (r *renewals) watchCarrier(ctx context.Context, log *slog.Logger) {
	safego.Loop(ctx, log, "following the links' carrier", time.Second, func(ctx context.Context) {
		var seen map[int32]linkSeen // nil before the first subscription (or a first one that could not list the links)
		for wait := time.Second; ctx.Err() == nil; wait = min(wait*2, time.Minute) {
			began := time.Now()
			var err error
			seen, err = r.followCarrier(ctx, seen, log)
			if ctx.Err() != nil {
				return
			}
			if time.Since(began) > 10*time.Minute {
				wait = time.Second // an overrun now and then is not a storm: the gap stays short
			}
			log.Warn("following the links' carrier stopped; starting again: what changed meanwhile is looked at then",
				"reason", err.Error(), "in", wait)
			var timer <-chan time.Time
			resume := followResume
			if resume == nil {
				timer = time.After(wait)
			}
			select {
			case <-ctx.Done():
			case <-timer:
			case <-resume:
			}
		}
	})
}

// followEnd and followResume are tests' (nil otherwise): a send on
// followEnd ends the links' subscription, as the kernel does when its
// socket's buffer overruns, and watchCarrier then waits for a send on
// followResume rather than its second.
var followEnd, followResume chan struct{}

// linkSeen is what the links' watch last saw of a link.
type linkSeen struct {
	carrier bool
	ups     int64 // its carrier_up_count then: -1 when unknown
}

// carrierUps reads link name's carrier_up_count (how often its carrier
// came up since it registered; Linux 4.16 on), -1 when it cannot.
func carrierUps(name string) int64 {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "carrier_up_count"))
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// seenOf is what the watch records of link l now.
func seenOf(l netlink.Link) linkSeen {
	return linkSeen{carrier: l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0, ups: carrierUps(l.Attrs().Name)}
}

// followCarrier is one subscription of watchCarrier, until ctx ends or the
// subscription does; it returns what it saw last of the links, by index
// (nil when it never listed them). With before (what an earlier
// subscription saw), the links' differences from it are acted on first.
func (r *renewals) followCarrier(ctx context.Context, before map[int32]linkSeen, log *slog.Logger) (map[int32]linkSeen, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	var lastErr error
	var errMu sync.Mutex
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { locked(&errMu, func() { lastErr = err }) },
	}); err != nil {
		return before, err
	}
	defer func() {
		close(done)
		go func() { // the library's reader may be blocked sending: let it end
			for range updates {
			}
		}()
	}()
	seen := map[int32]linkSeen{}
	links, err := dump(netlink.LinkList)
	switch {
	case err != nil && before != nil:
		seen = before // the gap's changes are not known: the updates tell what comes
	case err == nil:
		for _, l := range links {
			seen[int32(l.Attrs().Index)] = seenOf(l)
		}
	}
	// A first subscription that could not list the links knows only what
	// updates came: the next one is a first one too, not a look at a gap.
	result := func() map[int32]linkSeen {
		if err != nil && before == nil {
			return nil
		}
		return seen
	}
	if err == nil && before != nil {
		for idx := range before {
			if _, ok := seen[idx]; !ok {
				r.gone(int(idx))
			}
		}
		for _, l := range links {
			idx := int32(l.Attrs().Index)
			was, known := before[idx]
			now := seen[idx]
			if known && was.carrier && now.carrier && was.ups >= 0 && now.ups > was.ups {
				was.carrier = false // it went and came back in the gap
			}
			r.carrierSeen(l, now.carrier, was.carrier, known, log)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return result(), ctx.Err()
		case <-followEnd:
			return result(), errors.New("ended by the test")
		case u, ok := <-updates:
			if !ok {
				errMu.Lock()
				defer errMu.Unlock()
				return result(), cmp.Or(lastErr, errors.New("the kernel ended the link updates"))
			}
			idx := u.Index
			if u.Header.Type == unix.RTM_DELLINK {
				delete(seen, idx)
				r.gone(int(idx))
				continue
			}
			if u.Link == nil {
				continue
			}
			was, known := seen[idx]
			now := seenOf(u.Link)
			now.carrier = u.IfInfomsg.Flags&unix.IFF_LOWER_UP != 0
			seen[idx] = now
			r.carrierSeen(u.Link, now.carrier, was.carrier, known, log)
		}
	}
}

// carrierSeen acts on link l's carrier now, which was was (seen: l was
// known): a NIC not known before that is down is set up (appeared); a link
// whose carrier came kicks its lease's renewal or retry, or, with no DHCP
// on it and not configured by the machine config, is asked for a lease
// (cabled).
func (r *renewals) carrierSeen(l netlink.Link, now, was, seen bool, log *slog.Logger) {
	if !seen && l.Attrs().Flags&net.FlagUp == 0 {
		r.appeared(l, log) // a NIC plugged in after the boot: set up, its cable then tells
	}
	if was || !now {
		return
	}
	idx := l.Attrs().Index
	var (
		rn         *renewal
		configured bool
	)
	locked(&r.mu, func() {
		rn = r.m[l.Attrs().Name]
		configured = r.configured[l.Attrs().Name]
	})
	switch {
	case rn != nil && rn.kick != nil && rn.index == idx:
		select {
		case rn.kick <- struct{}{}:
		default:
		}
	case !configured && (rn == nil || rn.index != idx):
		r.cabled(l) // no DHCP on it yet: its cable came after the boot's look
	}
}

// leaseChanged reports whether a renewal changed what the machine uses of
// a lease: its address, name servers, search domains or NTP servers.
func leaseChanged(old, next Lease) bool {
	ips := func(a, b []net.IP) bool {
		return slices.EqualFunc(a, b, func(x, y net.IP) bool { return x.Equal(y) })
	}
	return !old.Addr.IP.Equal(next.Addr.IP) || old.Addr.Mask.String() != next.Addr.Mask.String() ||
		!ips(old.DNS, next.DNS) || !ips(old.NTP, next.NTP) || !slices.Equal(old.Search, next.Search)
}

// dropOld removes from link l what lease old set and lease next does not:
// its address, and its routes (with the lease's metric).
func dropOld(l netlink.Link, old, next Lease, metric int) {
	for _, r := range old.Routes {
		if slices.ContainsFunc(next.Routes, func(n Route) bool {
			return n.Gateway.Equal(r.Gateway) && (n.Dst == nil) == (r.Dst == nil) && (n.Dst == nil || n.Dst.String() == r.Dst.String())
		}) {
			continue
		}
		// As apply added it: the kernel matches the scope.
		_ = netlink.RouteDel(leaseRoute(l, old, r, metric)) // a default route was replaced already
	}
	if !old.Addr.IP.Equal(next.Addr.IP) || old.Addr.Mask.String() != next.Addr.Mask.String() {
		// The same address with another prefix length is another entry.
		if checkMask(old.Addr.Mask) == nil { // else apply refused it: it is not on the link
			promoteSecondaries(l.Attrs().Name)
			_ = netlink.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: old.Addr.IP, Mask: old.Addr.Mask}})
		}
		// The routes through the link are the kernel's to redo, as the
		// address it leans on changes: make sure of the lease's.
		if next.Addr.IP != nil {
			_ = apply(l, next, metric)
		}
	}
}

// promoteSecondaries makes the kernel keep a link's other addresses in a
// subnet when the first one there goes (as systemd-networkd sets it): a new
// address in the old one's subnet is its secondary, which the kernel would
// otherwise delete with it.
func promoteSecondaries(link string) {
	_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+link+"/promote_secondaries", []byte("1"), 0o644)
}

// nextRetry is the wait after wait between two DHCP tries on a link
// without a lease: twice as long, up to RetryMax (a minute when zero).
func (cfg Config) nextRetry(wait time.Duration) time.Duration {
	return min(wait*2, cmp.Or(cfg.RetryMax, time.Minute))
}

// linkGone reports (and logs) that link l is no longer there under its
// name: the NIC went away, and one that comes back is a new link (asked for
// by the watch for late links while it runs, else by a machine config
// applied again).
func linkGone(l netlink.Link, log *slog.Logger) bool {
	name := l.Attrs().Name
	if cur, err := netlink.LinkByIndex(l.Attrs().Index); err == nil && cur.Attrs().Name == name {
		return false
	}
	log.Info("DHCP stopped", "iface", name, "reason", "the link is gone")
	return true
}

func (cfg Config) sysDir() string {
	if cfg.SysDir == "" {
		return "/sys"
	}
	return cfg.SysDir
}

func nicAddrs(links []netlink.Link) []nicAddr {
	var out []nicAddr
	for _, l := range links {
		out = append(out, nicAddr{l.Attrs().Name, l.Attrs().HardwareAddr})
	}
	return out
}

// generatedNameMAC returns the MAC the generated host name comes from: once
// the NICs on the buses have registered their interfaces (cfg.NICWait at
// most), the lowest of the links' that are not removable.
func generatedNameMAC(ctx context.Context, cfg Config, links []netlink.Link) net.HardwareAddr {
	if cfg.NICWait > 0 && len(cfg.Only) == 0 {
		start := time.Now()
		if missing := waitNamingNICs(ctx, namingConfig{cfg.sysDir(), cfg.HasDriver, cfg.DriversKnown, cfg.DriversKnownWait, cfg.NICWait}); len(missing) > 0 {
			cfg.Log.Warn("network controllers with a driver but no interface: the generated host name leaves them out, and may change once they come up",
				"devices", strings.Join(missing, ","), "waited", cfg.NICWait,
				"fix", "set hostname: in the machine config (or have DHCP give one); etoile.debug shows the drivers' loads")
		} else if waited := time.Since(start); waited > 20*time.Millisecond {
			cfg.Log.Debug("waited for the NICs before naming the machine", "took", waited.Round(time.Millisecond))
		}
		if all, err := physicalLinks(nil); err == nil {
			links = all
		}
	}
	return primaryMAC(cfg.sysDir(), nicAddrs(links))
}

// NodeAddress is the address K3s takes for its node when its config names
// none, as Kubernetes's ChooseHostInterface picks it: the first global
// IPv4 address of the (up) link that the IPv4 default route with the
// lowest metric leaves through; on a node without an IPv4 default route,
// the first global IPv6 address of the IPv6 default route's link. "" when
// there is no default route, or its link has no such address.
func NodeAddress() string {
	defer mount.HoldAPI()()
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if addr := defaultRouteAddress(family); addr != "" {
			return addr
		}
	}
	return ""
}

// NodeNetworks returns the networks of the machine's global addresses (IPv4
// and IPv6, not link-local, not loopback) on links that are up, each once,
// in CIDR form with the host bits cleared: what K3s's NO_PROXY must hold for
// the nodes to reach each other directly.
func NodeNetworks() []string {
	defer mount.HoldAPI()()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	up := map[int]bool{}
	for _, l := range links {
		// Not kube-proxy's kube-ipvs0 (down, one /32 per Service).
		up[l.Attrs().Index] = l.Attrs().Flags&net.FlagUp != 0
	}
	var out []string
	for _, a := range addrs {
		if !up[a.LinkIndex] {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Unmap().IsGlobalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		n := netip.PrefixFrom(ip.Unmap(), ones).Masked().String()
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// defaultRouteAddress is NodeAddress for one address family.
func defaultRouteAddress(family int) string {
	routes, err := dump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return ""
	}
	routes = slices.DeleteFunc(routes, func(r netlink.Route) bool {
		if r.Dst == nil {
			return false
		}
		ones, _ := r.Dst.Mask.Size()
		return ones != 0
	})
	slices.SortStableFunc(routes, func(a, b netlink.Route) int { return cmp.Compare(a.Priority, b.Priority) })
	for _, r := range routes {
		l, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, family) })
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if (a.IP.To4() != nil) == (family == netlink.FAMILY_V4) && a.IP.IsGlobalUnicast() {
				return a.IP.String()
			}
		}
	}
	return ""
}
