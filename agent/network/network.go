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
	// gives none or one outside 68..65535; the machine config's mtu for
	// the link wins over it.
	MTU int
	// asked is when the REQUEST that got the lease was first sent (zero
	// when not known): its T1, T2 and end count from then.
	asked time.Time
	// static: not from DHCP, but the machine config's static address
	// (Apply), which no renewal keeps.
	static bool
}

// infinite reports whether the lease never runs out (no lease time, or
// 0xffffffff seconds as RFC 2131 spells "infinity").
func (l Lease) infinite() bool {
	return l.Lifetime <= 0 || l.Lifetime == time.Duration(^uint32(0))*time.Second
}

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
		Lifetime: ack.IPAddressLeaseTime(0),
		Server:   serverID(ack),
		T1:       ack.IPAddressRenewalTime(0),
		T2:       ack.IPAddressRebindingTime(0),
	}
	if routes := ack.ClasslessStaticRoute(); len(routes) > 0 {
		for _, r := range routes {
			rt := Route{Gateway: r.Router}
			if ones, _ := r.Dest.Mask.Size(); ones > 0 {
				rt.Dst = r.Dest
			}
			l.Routes = append(l.Routes, rt)
		}
	} else if gw := ack.Router(); len(gw) > 0 && !gw[0].IsUnspecified() {
		l.Routes = []Route{{Gateway: gw[0]}}
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, ack.Options); err == nil && mtu >= minMTU {
		l.MTU = int(mtu) // RFC 2132 §5.1: 68 at least
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
// order without repeats (the resolver reads at most three), search domains likewise.
func ResolvConf(leases []Lease) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by etoile-agent, from DHCP and the machine config.\n")
	var search []string
	var servers []netip.Addr
	for _, l := range leases {
		for _, s := range l.Search {
			if !slices.Contains(search, s) {
				search = append(search, s)
			}
		}
		for _, ip := range l.DNS {
			if a, ok := netip.AddrFromSlice(ip); ok && !slices.Contains(servers, a.Unmap()) {
				servers = append(servers, a.Unmap())
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
	return b.Bytes()
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
