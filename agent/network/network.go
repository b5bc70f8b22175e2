// Package network brings a node's network up at boot: every physical link is
// set up, those with carrier ask DHCP for an address in parallel, and the
// answers become addresses, routes, /etc/resolv.conf and the hostname.
//
// The machine config's interfaces (static addresses, VLANs, MTU) are
// applied over that by Apply once the config is read: Lease is the common
// currency, whichever way an address was obtained.
package network

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Route is one route a lease asks for; Dst nil is the default route.
type Route struct {
	Dst     *net.IPNet
	Gateway net.IP
}

// Lease is the configuration for one link.
type Lease struct {
	Iface    string
	MAC      net.HardwareAddr
	Addr     net.IPNet
	Routes   []Route
	DNS      []net.IP
	NTP      []net.IP // option 42
	Search   []string
	Hostname string
	Lifetime time.Duration
	// Server is the DHCP server that gave the lease (option 54), which
	// its renewals ask first.
	Server net.IP
	// T1 and T2 are when, after the lease came, it is renewed from Server
	// and then from any server (options 58 and 59; zero when the server
	// did not say: times gives RFC 2131's defaults).
	T1, T2 time.Duration
	// MTU is the link's MTU the server gives (option 26), 0 when it
	// gives none or one outside 68..65535, raised to 576 when below (as
	// systemd-networkd does: offeredMTU is then what the server said);
	// the machine config's mtu for the link wins over it, and setMTU
	// keeps a link with IPv6 at 1280 at least.
	MTU        int
	offeredMTU int
	// lifetimeIssue says what was wrong with the server's lease time
	// (option 51) when Lifetime is not the server's: missing, malformed
	// or 0 ("" when it was used as given); noteLease warns of it.
	lifetimeIssue string
	// asked is when the REQUEST that got the lease was first sent (zero
	// when not known): its T1, T2 and end count from then.
	asked time.Time
	// static: not from DHCP, but the machine config's static address
	// (Apply), which no renewal keeps.
	static bool
}

// infinite reports whether the lease never runs out: 0xffffffff seconds,
// as RFC 2131 spells "infinity" (LeaseFromACK gives no other lease a
// lifetime of 0 or less; a Lease made otherwise, a static address's, has
// none to run out).
func (l Lease) infinite() bool {
	return l.Lifetime <= 0 || l.Lifetime == infiniteLease
}

const (
	// infiniteLease is option 51's "infinity" (RFC 2131 §3.3).
	infiniteLease = time.Duration(^uint32(0)) * time.Second
	// defaultLease is the lease time of an ACK without a valid option
	// 51: finite, so that the address is renewed and a server that
	// forgot the machine is noticed (RFC 2131 has the server send it).
	defaultLease = time.Hour
	// minLease is the lease time of an ACK whose option 51 says 0: the
	// shortest lease whose renewal (T1, half of it) is the 10 s the
	// renewals wait at least, rather than an address that is gone before
	// it is used and a DHCP exchange as fast as the server answers.
	minLease = 20 * time.Second
)

// times returns when the lease is renewed (T1) and rebound (T2), counted
// from when it came: the server's when they make sense, else half and seven
// eighths of the lease time (RFC 2131 §4.4.5). T1 is 10 s at least (half a
// shorter lease): a server's T1 of a second does not make a renewal a
// second.
func (l Lease) times() (t1, t2 time.Duration) {
	t1, t2 = l.T1, l.T2
	if t1 <= 0 || t1 >= l.Lifetime {
		t1 = l.Lifetime / 2
	}
	t1 = max(t1, min(10*time.Second, l.Lifetime/2))
	if t2 <= t1 || t2 >= l.Lifetime {
		t2 = l.Lifetime * 7 / 8
		if t2 <= t1 {
			t2 = t1 + (l.Lifetime-t1)/2
		}
	}
	return t1, t2
}

// hasDefaultRoute reports whether the lease routes everything through a
// gateway (a Route with no Dst): what K3s needs to pick its node address.
func (l Lease) hasDefaultRoute() bool {
	return slices.ContainsFunc(l.Routes, func(r Route) bool {
		return r.Dst == nil && r.Gateway != nil && !r.Gateway.IsUnspecified()
	})
}

// LeaseFromACK turns a DHCP ACK into a Lease. Following RFC 3442, a
// classless static routes option replaces the router option.
func LeaseFromACK(iface string, mac net.HardwareAddr, ack *dhcpv4.DHCPv4) (Lease, error) {
	if ack == nil || ack.YourIPAddr == nil || ack.YourIPAddr.To4() == nil || ack.YourIPAddr.IsUnspecified() {
		return Lease{}, fmt.Errorf("DHCP answer on %s carries no IPv4 address", iface)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		// RFC 2131 lets a server omit it; the classful default is the
		// historic answer, and /24 what most site networks use.
		mask = ack.YourIPAddr.DefaultMask()
	}
	if err := checkMask(mask); err != nil {
		// The kernel (and the netlink library, which panics on one)
		// cannot take it: the lease is not used, and DHCP is asked again.
		server := "unknown"
		if s := serverID(ack); s != nil {
			server = s.String()
		} else if s := ack.ServerIPAddr; s != nil && !s.IsUnspecified() {
			server = s.String()
		}
		return Lease{}, &MaskError{Iface: iface, Server: server, Addr: ack.YourIPAddr.String(), Mask: maskString(mask), reason: err.Error()}
	}
	l := Lease{
		Iface:    iface,
		MAC:      mac,
		Addr:     net.IPNet{IP: ack.YourIPAddr.To4(), Mask: mask},
		DNS:      ack.DNS(),
		NTP:      ack.NTPServers(),
		Hostname: cleanHostname(ack.HostName()),
		Server:   serverID(ack),
		T1:       ack.IPAddressRenewalTime(0),
		T2:       ack.IPAddressRebindingTime(0),
	}
	l.Lifetime, l.lifetimeIssue = leaseTime(ack)
	if routes := ack.ClasslessStaticRoute(); len(routes) > 0 {
		for _, r := range routes {
			rt := Route{Gateway: r.Router}
			if ones, _ := r.Dest.Mask.Size(); ones > 0 {
				// Bits past the prefix (10.0.15.0/20, a server's typo
				// for 10.0.0.0/20) are dropped, as other clients do:
				// the kernel refuses such a route, and the lease with it.
				rt.Dst = &net.IPNet{IP: r.Dest.IP.Mask(r.Dest.Mask), Mask: r.Dest.Mask}
			}
			l.Routes = append(l.Routes, rt)
		}
	} else if gw := ack.Router(); len(gw) > 0 && !gw[0].IsUnspecified() {
		l.Routes = []Route{{Gateway: gw[0]}}
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, ack.Options); err == nil && mtu >= minMTU {
		l.MTU = int(mtu) // RFC 2132 §5.1: 68 at least
		if l.MTU < minDHCPMTU {
			l.MTU, l.offeredMTU = minDHCPMTU, int(mtu)
		}
	}
	if d := cleanDomain(ack.DomainName()); d != "" {
		l.Search = append(l.Search, d)
	}
	if ds := ack.DomainSearch(); ds != nil {
		for _, d := range ds.Labels {
			if d = cleanDomain(d); d != "" && !slices.Contains(l.Search, d) {
				l.Search = append(l.Search, d)
			}
		}
	}
	return l, nil
}

// minMTU is the smallest MTU an IPv4 link may have (RFC 791, RFC 2132 §5.1).
const minMTU = 68

// minDHCPMTU is the smallest MTU a DHCP lease sets: the datagram every
// IPv4 host must take (RFC 791), which a DHCP message itself may need
// (RFC 2131 §2); smaller ones are raised to it, as systemd-networkd does.
// ipv6MinMTU is IPv6's (RFC 8200 §5): under it the kernel drops the
// link's IPv6 addresses.
const (
	minDHCPMTU = 576
	ipv6MinMTU = 1280
)

// leaseTime is the ACK's lease time (option 51), and what was wrong with
// it when it is not the server's: none or a malformed one is defaultLease,
// 0 is minLease; only 0xffffffff is infinite.
func leaseTime(ack *dhcpv4.DHCPv4) (time.Duration, string) {
	v := ack.Options.Get(dhcpv4.OptionIPAddressLeaseTime)
	switch {
	case v == nil:
		return defaultLease, fmt.Sprintf("gives no lease time (option 51): %s is used", defaultLease)
	case len(v) != 4:
		return defaultLease, fmt.Sprintf("gives a malformed lease time (option 51, %d bytes, not 4): %s is used", len(v), defaultLease)
	}
	d := time.Duration(uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3])) * time.Second
	if d == 0 {
		return minLease, fmt.Sprintf("gives a lease time of 0 s (option 51): %s is used", minLease)
	}
	return d, ""
}

// cleanDomain keeps a domain name from DHCP (option 15, or one of option
// 119's) only if it is a valid DNS name, since it is written to
// /etc/resolv.conf: trailing NULs, which some servers send and RFC 2132
// §2 has a receiver delete, go, and so does a final dot; a name with a
// space, a control character or another byte a host name cannot have, an
// empty label or one over 63 bytes, or over 253 bytes in all, is dropped
// ("" is returned).
func cleanDomain(d string) string {
	d = strings.TrimSuffix(strings.TrimRight(d, "\x00"), ".")
	if d == "" || len(d) > 253 {
		return ""
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return ""
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return ""
			}
		}
	}
	return d
}

// MaskError is a DHCP answer refused for its subnet mask (option 1).
type MaskError struct {
	Iface, Server, Addr, Mask string
	reason                    string
}

func (e *MaskError) Error() string {
	return fmt.Sprintf("DHCP server %s offers %s on %s with subnet mask %s, which %s: the lease is refused (fix the DHCP server's subnet mask for this network)",
		e.Server, e.Addr, e.Iface, e.Mask, e.reason)
}

// checkMask refuses an IPv4 subnet mask an address cannot have: one that
// is not a run of ones then zeros (255.0.255.0), not 4 bytes long, or 0.0.0.0
// (every address on the link).
func checkMask(m net.IPMask) error {
	ones, bits := m.Size()
	switch {
	case len(m) != net.IPv4len:
		return fmt.Errorf("is %d bytes long, not 4", len(m))
	case bits == 0:
		return errors.New("is not contiguous (ones, then zeros)")
	case ones == 0:
		return errors.New("makes every address a neighbour")
	}
	return nil
}

// maskString shows a mask as people write it: 255.255.255.0.
func maskString(m net.IPMask) string {
	if len(m) == net.IPv4len {
		return net.IP(m).String()
	}
	return fmt.Sprintf("%x", []byte(m))
}

// serverID is the ACK's server identifier (option 54), nil when it has
// none a renewal could be sent to.
func serverID(ack *dhcpv4.DHCPv4) net.IP {
	ip := ack.ServerIdentifier().To4()
	if ip == nil || ip.IsUnspecified() || ip.Equal(net.IPv4bcast) {
		return nil
	}
	return ip
}

// cleanHostname keeps a DHCP host name only if it is a valid one (RFC 1123
// label), since it is written to /etc/hostname and shown to people.
func cleanHostname(h string) string {
	h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
	if i := strings.IndexByte(h, '.'); i >= 0 {
		h = h[:i] // the short name; the domain goes to the search list
	}
	if h == "" || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return ""
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return ""
		}
	}
	return h
}

// dhcpNamed reports whether a lease gives the host name (else Hostname
// generates one from a MAC).
func dhcpNamed(leases []Lease) bool {
	return slices.ContainsFunc(leases, func(l Lease) bool { return l.Hostname != "" })
}

// Hostname picks the node's name: the first lease's DHCP host name, else
// etoile-<last three bytes of the primary MAC>, else "etoile".
func Hostname(leases []Lease, primaryMAC net.HardwareAddr) string {
	for _, l := range leases {
		if l.Hostname != "" {
			return l.Hostname
		}
	}
	if len(primaryMAC) >= 3 {
		m := primaryMAC[len(primaryMAC)-3:]
		return fmt.Sprintf("etoile-%02x%02x%02x", m[0], m[1], m[2])
	}
	return "etoile"
}

// NTPServers lists the NTP servers the leases give, in lease order, each once.
func NTPServers(leases []Lease) []string {
	var out []string
	for _, l := range leases {
		for _, ip := range l.NTP {
			if s := ip.String(); !ip.IsUnspecified() && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// ResolvConf renders /etc/resolv.conf from the leases: name servers in lease
// order without repeats (the resolver reads at most three), search domains
// likewise. A name server that cannot be one (nameServerProblem) is left
// out: it would take one of the resolver's three places.
func ResolvConf(leases []Lease) []byte {
	b, _ := resolvConf(leases)
	return b
}

// skippedDNS is a lease's name server that resolv.conf leaves out, and why.
type skippedDNS struct {
	iface, addr, why string
}

// resolvConf is ResolvConf, also returning the name servers left out.
func resolvConf(leases []Lease) ([]byte, []skippedDNS) {
	var b bytes.Buffer
	b.WriteString("# Written by etoile-agent, from DHCP and the machine config.\n")
	var search []string
	var servers []netip.Addr
	var skipped []skippedDNS
	for _, l := range leases {
		for _, s := range l.Search {
			if !slices.Contains(search, s) {
				search = append(search, s)
			}
		}
		for _, ip := range l.DNS {
			a, ok := netip.AddrFromSlice(ip)
			if !ok {
				continue
			}
			a = a.Unmap()
			if why := nameServerProblem(a); why != "" {
				skipped = append(skipped, skippedDNS{l.Iface, a.String(), why})
				continue
			}
			if !slices.Contains(servers, a) {
				servers = append(servers, a)
			}
		}
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for i, s := range servers {
		if i == 3 {
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	return b.Bytes(), skipped
}

// nameServerProblem says why a cannot be a name server in resolv.conf (""
// when it can), as the machine config's validator refuses one for dns::
// nothing answers DNS at an unspecified, loopback, broadcast or multicast
// address, and an IPv6 link-local one needs a zone resolv.conf does not get.
func nameServerProblem(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "is the unspecified address"
	case a.IsLoopback():
		return "is a loopback address: nothing answers DNS on the node's loopback (and K3s would give the pods 8.8.8.8 instead)"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address"
	case a.IsMulticast():
		return "is a multicast address"
	case a.Is6() && a.IsLinkLocalUnicast():
		return "is an IPv6 link-local address, which needs a zone resolv.conf does not get"
	}
	return ""
}

// FirstIPv4 is the address the ready line shows ("none" without one).
func FirstIPv4(leases []Lease) string {
	for _, l := range leases {
		if ip := l.Addr.IP.To4(); ip != nil {
			return ip.String()
		}
	}
	return "none"
}
