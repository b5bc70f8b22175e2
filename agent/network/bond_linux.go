package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultMIIMon is how often, in milliseconds, a bond checks its members'
// carrier when the machine config gives no miimon: the kernel's own
// default, 0, never notices a member that lost its link (active-backup would
// keep sending into a dead port).
const DefaultMIIMon = 100

// bondWanted is the bond an entry asks for, as netlink makes it.
func bondWanted(name string, b *config.Bond) (*netlink.Bond, error) {
	want := netlink.NewLinkBond(netlink.LinkAttrs{Name: name})
	mode, ok := netlink.StringToBondModeMap[b.Mode]
	if !ok {
		return nil, fmt.Errorf("bond mode %q is not one of %s", b.Mode, strings.Join(BondModes(), ", "))
	}
	want.Mode = mode
	want.Miimon = b.MIIMon
	if want.Miimon == 0 {
		want.Miimon = DefaultMIIMon
	}
	if b.LACPRate != "" {
		r, ok := netlink.StringToBondLacpRateMap[b.LACPRate]
		if !ok {
			return nil, fmt.Errorf("bond lacp_rate %q is not slow or fast", b.LACPRate)
		}
		want.LacpRate = r
	}
	if b.XmitHashPolicy != "" {
		p, ok := netlink.StringToBondXmitHashPolicyMap[b.XmitHashPolicy]
		if !ok {
			return nil, fmt.Errorf("bond xmit_hash_policy %q is not a policy the kernel has", b.XmitHashPolicy)
		}
		want.XmitHashPolicy = p
	}
	return want, nil
}

// bondCarrierWait bounds the wait for a bond's carrier before its first
// DHCP exchange: its members have just been set down and up (their links
// negotiate again) and, in 802.3ad, the switch must answer LACP first.
// Without carrier by then DHCP is asked all the same, and again in the
// background.
var bondCarrierWait = 10 * time.Second

// isBond reports whether l is a bond.
func isBond(l netlink.Link) bool {
	_, ok := l.(*netlink.Bond)
	return ok
}

// waitLowerUp waits until link l has carrier (IFF_LOWER_UP), at most d.
func waitLowerUp(ctx context.Context, l netlink.Link, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if now, err := netlink.LinkByIndex(l.Attrs().Index); err != nil || now.Attrs().RawFlags&unix.IFF_LOWER_UP != 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BondModes are the bonding modes, in the kernel's order (mode 0 to 6).
func BondModes() []string {
	out := make([]string, 0, len(netlink.StringToBondModeMap))
	for m := netlink.BOND_MODE_BALANCE_RR; m < netlink.BOND_MODE_UNKNOWN; m++ {
		out = append(out, m.String())
	}
	return out
}

// sameBond reports whether the existing bond have has the options want
// sets (those want leaves at -1 are the kernel's to choose) and its primary
// (the kernel reports none as 0).
func sameBond(have, want *netlink.Bond) bool {
	return have.Mode == want.Mode && have.Miimon == want.Miimon &&
		(want.LacpRate < 0 || have.LacpRate == want.LacpRate) &&
		(want.XmitHashPolicy < 0 || have.XmitHashPolicy == want.XmitHashPolicy) &&
		have.Primary == max(want.Primary, 0)
}

// findMember finds a bond member the config names: by name, or by MAC —
// the port's permanent address, since a bond gives its members its own
// (they all show the first member's once enslaved).
func findMember(m string) (netlink.Link, error) {
	if _, err := net.ParseMAC(m); err == nil {
		return findLink(config.Interface{MAC: m}) // by its own MAC first
	}
	return findLink(config.Interface{Name: m})
}

// ownMAC is the port's own address: its permanent one (the NIC's), else
// the one a bond kept of it when it enslaved it (a NIC that reports none,
// a veth), else the one it has.
func ownMAC(l netlink.Link) net.HardwareAddr {
	a := l.Attrs()
	if len(a.PermHWAddr) > 0 {
		return a.PermHWAddr
	}
	if s, ok := a.Slave.(*netlink.BondSlave); ok && len(s.PermHardwareAddr) > 0 {
		return s.PermHardwareAddr
	}
	return a.HardwareAddr
}

// makeBond makes the bond entry ifc asks for, or finds it made by an earlier
// apply with the same options (one with other options is made again: its
// members leave it for a moment), and enslaves its members: each is taken
// from the boot's DHCP first — its exchange or renewal stopped, the lease's
// address and routes removed — and set down, as the kernel wants a member
// to be. Members an earlier apply gave the bond and this one does not list
// are released. A member that cannot be found or enslaved is in the error;
// the bond is made with the others, and is returned unless it has no
// member at all.
func makeBond(ifc config.Interface, res *Result, log *slog.Logger) (netlink.Link, error) {
	name := ifc.Name
	want, err := bondWanted(name, ifc.Bond)
	if err != nil {
		return nil, err
	}
	var members []netlink.Link
	var errs []error
	for _, m := range ifc.Bond.Members {
		l, err := findMember(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("bond %s member %s: %w", name, m, err))
			continue
		}
		if l.Attrs().Name == name {
			errs = append(errs, fmt.Errorf("bond %s member %s is the bond itself", name, m))
			continue
		}
		members = append(members, l)
	}
	if ifc.Bond.Primary != "" {
		if p, err := findMember(ifc.Bond.Primary); err == nil {
			want.Primary = p.Attrs().Index
		}
	}

	var bond *netlink.Bond
	if l, err := netlink.LinkByName(name); err == nil {
		have, ok := l.(*netlink.Bond)
		switch {
		case !ok:
			return nil, errors.Join(append(errs, fmt.Errorf("a link named %s exists and is not a bond (it is a %s): name the bond otherwise", name, l.Type()))...)
		case sameBond(have, want):
			bond = have
		default:
			// Made with other options: by an earlier apply, or by the
			// bonding module itself (bond0, balance-rr, when loaded
			// without max_bonds=0). Mode and LACP rate change only on a
			// bond without members that is down: made again.
			log.Info("bond made again with the machine config's options", "iface", name, "mode", want.Mode.String(), "was", have.Mode.String())
			if err := delBond(have, res); err != nil {
				return nil, errors.Join(append(errs, fmt.Errorf("removing bond %s to make it again: %w", name, err))...)
			}
		}
	}
	if bond == nil {
		if err := netlink.LinkAdd(want); err != nil {
			return nil, errors.Join(append(errs, fmt.Errorf("making bond %s (%s): %w", name, want.Mode, err))...)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil, errors.Join(append(errs, err)...)
		}
		var ok bool
		if bond, ok = l.(*netlink.Bond); !ok {
			return nil, errors.Join(append(errs, fmt.Errorf("%s was made as a bond and reads as a %s", name, l.Type()))...)
		}
	}
	idx := bond.Attrs().Index
	// Read again: a bond deleted above released its members (and closed them).
	for i, l := range members {
		if now, err := netlink.LinkByIndex(l.Attrs().Index); err == nil {
			members[i] = now
		}
	}

	// Members an earlier apply gave the bond that this one does not list.
	if all, err := netlink.LinkList(); err == nil {
		for _, l := range all {
			if l.Attrs().MasterIndex != idx || slices.ContainsFunc(members, func(m netlink.Link) bool { return m.Attrs().Index == l.Attrs().Index }) {
				continue
			}
			if err := release(l, bond, res); err != nil {
				errs = append(errs, fmt.Errorf("releasing %s from bond %s: %w", l.Attrs().Name, name, err))
				continue
			}
			log.Info("bond member released", "iface", l.Attrs().Name, "bond", name, "why", "the machine config no longer lists it")
		}
	}

	enslaved := 0
	for _, l := range members {
		mname := l.Attrs().Name
		switch master := l.Attrs().MasterIndex; master {
		case idx:
			enslaved++
			continue
		case 0:
		default:
			owner := fmt.Sprint(master)
			if o, err := netlink.LinkByIndex(master); err == nil {
				owner = o.Attrs().Name
			}
			errs = append(errs, fmt.Errorf("bond %s member %s is already enslaved to %s: release it there first", name, mname, owner))
			continue
		}
		takeOver(l, res)
		if err := netlink.LinkSetDown(l); err != nil {
			errs = append(errs, fmt.Errorf("setting bond %s member %s down: %w", name, mname, err))
			giveBack(l, res)
			continue
		}
		if err := netlink.LinkSetMasterByIndex(l, idx); err != nil {
			// A NIC that refuses the bond's MAC (a VF its PF does not
			// trust): it goes back to the boot's DHCP, not left bare.
			errs = append(errs, fmt.Errorf("adding %s to bond %s: %w", mname, name, err))
			giveBack(l, res)
			continue
		}
		if err := netlink.LinkSetUp(l); err != nil {
			errs = append(errs, fmt.Errorf("setting bond %s member %s up: %w", name, mname, err))
		}
		enslaved++
		log.Info("bond member added", "iface", mname, "bond", name, "mode", want.Mode.String())
	}
	if err := netlink.LinkSetUp(bond); err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("setting bond %s up: %w", name, err))...)
	}
	if enslaved == 0 {
		return nil, errors.Join(append(errs, fmt.Errorf("bond %s has no member: check the members' names or MACs against `ip link` on the machine", name))...)
	}
	// A member whose NIC appears later, or appears again (a USB NIC
	// plugged back in), joins then (renewals.appeared; Apply gave res its
	// renewals).
	for _, m := range ifc.Bond.Members {
		res.renew.addPending(m, name, m == ifc.Bond.Primary)
	}
	if len(errs) > 0 {
		// The bond works with the members it has: said, not fatal to it.
		log.Warn("bond is missing members", "iface", name, "reason", errors.Join(errs...).Error(),
			"fix", "check the members' names or MACs against `ip link` on the machine; a member whose NIC appears later (a driver that loads late, a NIC plugged in) joins the bond then")
	}
	return bond, nil
}

// pendingMember is a bond member the config lists: one that was not there
// when the bond was made, or that goes and comes back, joins the bond when
// its link appears.
type pendingMember struct {
	bond    string
	primary bool
}

// addPending records spec (a name or MAC) as a member of bond, for the
// links that appear until the next apply.
func (r *renewals) addPending(spec, bond string, primary bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string]pendingMember{}
	}
	r.pending[spec] = pendingMember{bond: bond, primary: primary}
}

// clearPending forgets the members an earlier apply waited for: each apply
// records its own.
func (r *renewals) clearPending() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = nil
}

// takePending returns the member l is: by name, or by its own MAC (or the
// one it shows) for a NIC (findLink's kinds: a VLAN or bond showing the
// same MAC is not one).
func (r *renewals) takePending(l netlink.Link) (pendingMember, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for spec, p := range r.pending {
		match := spec == l.Attrs().Name
		if hw, err := net.ParseMAC(spec); err == nil {
			match = (l.Type() == "device" || l.Type() == "veth") &&
				(slices.Equal(hw, ownMAC(l)) || slices.Equal(hw, l.Attrs().HardwareAddr))
		}
		if match {
			return p, true
		}
	}
	return pendingMember{}, false
}

// joinPending enslaves l, a link that appeared after the config was applied,
// to its bond when the config lists it as a member that was missing then,
// and reports whether it did: it is not the boot's DHCP's then. A member
// that cannot join is left to the boot's DHCP, and said.
func (r *renewals) joinPending(l netlink.Link, log *slog.Logger) bool {
	// Not while an apply makes its bonds: it may be dropping this member.
	r.bondMu.Lock()
	defer r.bondMu.Unlock()
	p, ok := r.takePending(l)
	if !ok {
		return false
	}
	name := l.Attrs().Name
	if now, err := netlink.LinkByIndex(l.Attrs().Index); err == nil {
		l = now
	}
	if m := l.Attrs().MasterIndex; m != 0 {
		if b, err := netlink.LinkByName(p.bond); err == nil && b.Attrs().Index == m {
			return true // in its bond already
		}
		return false // another master's: left as it is
	}
	fail := func(err error) bool {
		log.Warn("a bond member that appeared could not join its bond", "iface", name, "bond", p.bond, "reason", err.Error(),
			"fix", "apply the machine config again (etoile-agent config apply), or check the NIC")
		r.unconfigure(name)
		_ = netlink.LinkSetUp(l)
		return false
	}
	bl, err := netlink.LinkByName(p.bond)
	if err != nil {
		return fail(err)
	}
	if !isBond(bl) {
		return fail(fmt.Errorf("%s is no longer a bond", p.bond))
	}
	r.configure(name) // no DHCP of its own
	if err := netlink.LinkSetDown(l); err != nil {
		return fail(err)
	}
	if err := netlink.LinkSetMasterByIndex(l, bl.Attrs().Index); err != nil {
		return fail(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		log.Warn("a bond member that joined its bond could not be set up", "iface", name, "bond", p.bond, "reason", err.Error())
	}
	if p.primary {
		if err := os.WriteFile(filepath.Join("/sys/class/net", p.bond, "bonding", "primary"), []byte(name), 0); err != nil {
			log.Warn("a bond's primary that appeared is not its primary", "iface", name, "bond", p.bond, "reason", err.Error())
		}
	}
	log.Info("bond member appeared: added", "iface", name, "bond", p.bond, "primary", p.primary)
	return true
}

// delBond deletes bond b (made by an earlier apply with other options, or
// one the config no longer lists): the DHCP of the bond and of the VLANs on
// it (which the kernel deletes with it) stops and their leases go from res,
// so that the bond made again asks DHCP afresh.
func delBond(b netlink.Link, res *Result) error {
	names := []string{b.Attrs().Name}
	if all, err := netlink.LinkList(); err == nil {
		for _, l := range all {
			if v, ok := l.(*netlink.Vlan); ok && v.ParentIndex == b.Attrs().Index {
				names = append(names, v.Name)
			}
		}
	}
	if err := netlink.LinkDel(b); err != nil {
		return err
	}
	for _, n := range names {
		res.renew.stop(n)
		res.Leases = slices.DeleteFunc(res.Leases, func(l Lease) bool { return l.Iface == n })
	}
	return nil
}

// dropBond removes bond name, which an earlier config made and the one
// applied now no longer lists: its ports go back to the boot's DHCP.
func dropBond(name string, res *Result, log *slog.Logger) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil // gone already
	}
	if !isBond(l) {
		return nil // not ours any more
	}
	var members []netlink.Link
	if all, err := netlink.LinkList(); err == nil {
		for _, m := range all {
			if m.Attrs().MasterIndex == l.Attrs().Index {
				members = append(members, m)
			}
		}
	}
	if err := delBond(l, res); err != nil {
		return fmt.Errorf("removing bond %s, which the machine config no longer lists: %w", name, err)
	}
	var ports []string
	for _, m := range members {
		giveBack(m, res)
		ports = append(ports, m.Attrs().Name)
	}
	log.Info("bond removed", "iface", name, "ports", strings.Join(ports, ","), "why", "the machine config no longer lists it")
	return nil
}

// release takes port l out of bond (a member the config no longer lists):
// it is set up again (the kernel closes a released port) and goes back to
// the boot's DHCP, as a link the config does not list. A bond left with the
// released port's address takes a remaining member's own (two ports of the
// network would otherwise share one MAC).
func release(l, bond netlink.Link, res *Result) error {
	if err := netlink.LinkSetNoMaster(l); err != nil {
		return err
	}
	if b, err := netlink.LinkByIndex(bond.Attrs().Index); err == nil && slices.Equal(b.Attrs().HardwareAddr, ownMAC(l)) {
		if all, err := netlink.LinkList(); err == nil {
			for _, m := range all {
				if m.Attrs().MasterIndex == b.Attrs().Index {
					_ = netlink.LinkSetHardwareAddr(b, ownMAC(m))
					break
				}
			}
		}
	}
	giveBack(l, res)
	return nil
}

// giveBack returns port l, which is no bond's member after all, to the
// boot's DHCP: set up, no longer counted as configured by the machine
// config, and told to the network's cable watch (which asks DHCP once it
// has carrier). A later entry of the same config that lists it configures
// it again, which ends that DHCP.
func giveBack(l netlink.Link, res *Result) {
	_ = netlink.LinkSetUp(l)
	if res.renew == nil {
		return
	}
	res.renew.unconfigure(l.Attrs().Name)
	if now, err := netlink.LinkByIndex(l.Attrs().Index); err == nil && now.Attrs().RawFlags&unix.IFF_LOWER_UP != 0 {
		res.renew.cabled(now)
	}
}

// takeOver ends what the boot's network step did on link l, which becomes a
// bond's member: its DHCP (the first exchange or the renewal) stops and does
// not start again, and the addresses the agent gave it go with their routes
// (a member carries no address of its own: the bond does).
func takeOver(l netlink.Link, res *Result) {
	name := l.Attrs().Name
	if res.renew == nil {
		res.renew = &renewals{}
	}
	res.renew.configure(name)
	var gone []net.IPNet
	if addr := res.renew.stop(name); addr != nil {
		gone = append(gone, *addr)
	}
	for _, old := range res.Leases {
		if old.Iface == name && old.Addr.IP != nil {
			gone = append(gone, old.Addr)
		}
	}
	_ = delRoutes(l, true, 100+l.Attrs().Index, lateMetric+l.Attrs().Index)
	for _, g := range gone {
		_ = netlink.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: g.IP, Mask: g.Mask}})
	}
	res.Leases = slices.DeleteFunc(res.Leases, func(x Lease) bool { return x.Iface == name })
	restoreMTU(l, nil, "the link is a bond's member now")
}
