package network

import (
	"cmp"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLeaseFromACK(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	_, dst, _ := net.ParseCIDR("192.168.50.0/24")
	tests := []struct {
		name       string
		ack        *dhcpv4.DHCPv4
		addr       string
		routes     []string
		dns        []string
		search     []string
		hostname   string
		lifetime   time.Duration
		mtu        int
		wantErrStr string
	}{
		{
			name: "QEMU user networking",
			ack: ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)),
				dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3)), dhcpv4.WithLeaseTime(86400)),
			addr: "10.0.2.15/24", routes: []string{"default via 10.0.2.2"}, dns: []string{"10.0.2.3"}, lifetime: 24 * time.Hour,
		},
		{
			name: "classless routes replace the router option (RFC 3442)",
			ack: ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(10, 0, 2, 99)),
				dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(
					&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: net.IPv4(10, 0, 2, 1)},
					&dhcpv4.Route{Dest: dst, Router: net.IPv4(10, 0, 2, 254)},
				))),
			addr: "10.0.2.15/24", routes: []string{"default via 10.0.2.1", "192.168.50.0/24 via 10.0.2.254"},
		},
		{
			name: "host name, domain and search list",
			ack: ack(t, dhcpv4.WithOption(dhcpv4.OptHostName("Rack3-Node07.site.example")),
				dhcpv4.WithOption(dhcpv4.OptDomainName("site.example")),
				dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"site.example", "example"}}))),
			addr: "10.0.2.15/8", hostname: "rack3-node07", search: []string{"site.example", "example"},
		},
		{
			// RFC 2132 §2: trailing NULs are the receiver's to delete.
			name: "NUL-terminated domain name",
			ack: ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithOption(dhcpv4.OptHostName("node4\x00")),
				dhcpv4.WithOption(dhcpv4.OptDomainName("site.test\x00\x00"))),
			addr: "10.0.2.15/24", hostname: "node4", search: []string{"site.test"},
		},
		{
			// They are written to resolv.conf: a line break would add a
			// name server of the DHCP answer's choosing.
			name: "invalid domain names dropped",
			ack: ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithOption(dhcpv4.OptDomainName("site.test\nnameserver 192.0.2.66")),
				dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"bad name.example", "ok.example.", "-x.example", "_srv.example"}}))),
			addr: "10.0.2.15/24", search: []string{"ok.example", "_srv.example"},
		},
		{
			name: "interface MTU",
			ack: ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(1400)})),
			addr: "10.0.2.15/24", mtu: 1400,
		},
		{
			name: "interface MTU below IPv4's 68 ignored",
			ack: ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(67)})),
			addr: "10.0.2.15/24",
		},
		{
			name:     "invalid host name dropped",
			ack:      ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithOption(dhcpv4.OptHostName("bad_name;rm -rf"))),
			addr:     "10.0.2.15/24",
			hostname: "",
		},
		{
			name:       "no address",
			ack:        ack(t, dhcpv4.WithYourIP(net.IPv4zero)),
			wantErrStr: "no IPv4 address",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := LeaseFromACK("eth0", mac, tt.ack)
			if tt.wantErrStr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrStr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErrStr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Addr.String(); got != tt.addr {
				t.Errorf("addr %s, want %s", got, tt.addr)
			}
			var routes []string
			for _, r := range l.Routes {
				if r.Dst == nil {
					routes = append(routes, "default via "+r.Gateway.String())
				} else {
					routes = append(routes, r.Dst.String()+" via "+r.Gateway.String())
				}
			}
			if strings.Join(routes, ",") != strings.Join(tt.routes, ",") {
				t.Errorf("routes %q, want %q", routes, tt.routes)
			}
			var dns []string
			for _, d := range l.DNS {
				dns = append(dns, d.String())
			}
			if strings.Join(dns, ",") != strings.Join(tt.dns, ",") {
				t.Errorf("dns %q, want %q", dns, tt.dns)
			}
			if strings.Join(l.Search, ",") != strings.Join(tt.search, ",") {
				t.Errorf("search %q, want %q", l.Search, tt.search)
			}
			if l.Hostname != tt.hostname {
				t.Errorf("hostname %q, want %q", l.Hostname, tt.hostname)
			}
			if want := cmp.Or(tt.lifetime, defaultLease); l.Lifetime != want { // no option 51: an hour
				t.Errorf("lifetime %s, want %s", l.Lifetime, want)
			}
			if l.MTU != tt.mtu {
				t.Errorf("mtu %d, want %d", l.MTU, tt.mtu)
			}
		})
	}
}

// TestResolvConfNULTerminatedDomain: a domain name (option 15) sent with
// a trailing NUL, as some servers do, is written to resolv.conf without it.
func TestResolvConfNULTerminatedDomain(t *testing.T) {
	l, err := LeaseFromACK("eth0", nil, ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithOption(dhcpv4.OptDomainName("site.test\x00"))))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(ResolvConf([]Lease{l})); !strings.Contains(got, "\nsearch site.test\n") {
		t.Errorf("resolv.conf:\n%q\nwant search site.test, without the NUL", got)
	}
}

func TestHostname(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}
	tests := []struct {
		leases []Lease
		mac    net.HardwareAddr
		want   string
	}{
		{nil, mac, "etoile-abcdef"},
		{[]Lease{{Hostname: ""}, {Hostname: "node7"}}, mac, "node7"},
		{nil, nil, "etoile"},
	}
	for _, tt := range tests {
		if got := Hostname(tt.leases, tt.mac); got != tt.want {
			t.Errorf("Hostname = %q, want %q", got, tt.want)
		}
	}
}

func TestResolvConf(t *testing.T) {
	leases := []Lease{
		{DNS: []net.IP{net.IPv4(10, 0, 0, 1), net.IPv4(10, 0, 0, 2)}, Search: []string{"site.example"}},
		{DNS: []net.IP{net.IPv4(10, 0, 0, 2), net.IPv4(10, 0, 0, 3), net.IPv4(10, 0, 0, 4)}, Search: []string{"site.example", "lab.example"}},
	}
	want := "# Written by etoile-agent, from DHCP and the machine config.\nsearch site.example lab.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
	if got := string(ResolvConf(leases)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := FirstIPv4([]Lease{{Addr: net.IPNet{IP: net.IPv4(10, 0, 2, 15), Mask: net.CIDRMask(24, 32)}}}); got != "10.0.2.15" {
		t.Errorf("FirstIPv4 = %s", got)
	}
	if got := FirstIPv4(nil); got != "none" {
		t.Errorf("FirstIPv4(nil) = %s, want none", got)
	}
}

// FuzzLeaseFromACK feeds raw DHCP packets (what a hostile server could send)
// through the parser and the lease conversion: nothing may panic, and a
// lease, when made, must carry an IPv4 address and a valid host name.
func FuzzLeaseFromACK(f *testing.F) {
	f.Add(ack(&testing.T{}, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)), dhcpv4.WithOption(dhcpv4.OptHostName("n1"))).ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		l, err := LeaseFromACK("eth0", nil, m)
		if err != nil {
			return
		}
		if l.Addr.IP.To4() == nil {
			t.Fatalf("lease without IPv4: %+v", l)
		}
		if l.Hostname != "" && l.Hostname != cleanHostname(l.Hostname) {
			t.Fatalf("unclean hostname %q", l.Hostname)
		}
		_ = ResolvConf([]Lease{l})
	})
}

func TestNTPServersFromLeases(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	a := ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptNTPServers(net.IPv4(10, 0, 0, 123), net.IPv4(10, 0, 0, 124))))
	l1, err := LeaseFromACK("eth0", mac, a)
	if err != nil {
		t.Fatal(err)
	}
	b := ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithOption(dhcpv4.OptNTPServers(net.IPv4(10, 0, 0, 124), net.IPv4(192, 0, 2, 1))))
	l2, err := LeaseFromACK("eth1", mac, b)
	if err != nil {
		t.Fatal(err)
	}
	got := NTPServers([]Lease{l1, l2})
	if want := []string{"10.0.0.123", "10.0.0.124", "192.0.2.1"}; !slices.Equal(got, want) {
		t.Errorf("NTPServers = %v, want %v (option 42, in lease order, each once)", got, want)
	}
	if NTPServers(nil) != nil {
		t.Error("no leases: want none")
	}
}

// TestLeaseTimesAndServer: a lease's renewal times come from options 58 and
// 59 when they make sense, else RFC 2131's half and seven eighths; a
// second's T1 is not followed; option 54 names the server renewals go to.
func TestLeaseTimesAndServer(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	opt := func(code dhcpv4.OptionCode, d time.Duration) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.Option{Code: code, Value: dhcpv4.Duration(d)})
	}
	for _, tc := range []struct {
		name     string
		mods     []dhcpv4.Modifier
		t1, t2   time.Duration
		server   string
		infinite bool
	}{
		{"defaults", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(3600)}, 1800 * time.Second, 3150 * time.Second, "10.0.2.2", false},
		{"the server's", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(3600), opt(dhcpv4.OptionRenewTimeValue, 600*time.Second),
			opt(dhcpv4.OptionRebindingTimeValue, 3000*time.Second)}, 600 * time.Second, 3000 * time.Second, "10.0.2.2", false},
		{"T1 of a second", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(3600), opt(dhcpv4.OptionRenewTimeValue, time.Second)},
			10 * time.Second, 3150 * time.Second, "10.0.2.2", false},
		{"T2 before T1", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(3600), opt(dhcpv4.OptionRenewTimeValue, 3400*time.Second),
			opt(dhcpv4.OptionRebindingTimeValue, 100*time.Second)}, 3400 * time.Second, 3500 * time.Second, "10.0.2.2", false},
		{"T1 past the lease", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(100), opt(dhcpv4.OptionRenewTimeValue, 200*time.Second)},
			50 * time.Second, 87500 * time.Millisecond, "10.0.2.2", false},
		{"a short lease", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(4)}, 2 * time.Second, 3500 * time.Millisecond, "10.0.2.2", false},
		{"no server identifier", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(3600),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4zero))}, 1800 * time.Second, 3150 * time.Second, "<nil>", false},
		{"infinite", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(0xffffffff)}, 0, 0, "10.0.2.2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods := append([]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 2)))}, tc.mods...)
			l, err := LeaseFromACK("eth0", mac, ack(t, mods...))
			if err != nil {
				t.Fatal(err)
			}
			if l.infinite() != tc.infinite || l.Server.String() != tc.server {
				t.Errorf("infinite=%v server=%s, want %v %s", l.infinite(), l.Server, tc.infinite, tc.server)
			}
			if tc.infinite {
				return
			}
			if t1, t2 := l.times(); t1 != tc.t1 || t2 != tc.t2 {
				t.Errorf("T1 %s T2 %s, want %s %s", t1, t2, tc.t1, tc.t2)
			}
		})
	}
}

// TestLeaseFromACKRefusesAnInvalidSubnetMask: a subnet mask that is not a
// run of ones then zeros (255.0.255.0) cannot be an address's prefix; the
// netlink library panics on one (an index out of range), which in PID 1
// panics the kernel. The lease is refused, naming the server and the mask.
func TestLeaseFromACKRefusesAnInvalidSubnetMask(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	for _, tt := range []struct {
		mask net.IPMask
		want string
	}{
		{net.IPv4Mask(255, 0, 255, 0), "subnet mask 255.0.255.0, which is not contiguous"},
		{net.IPv4Mask(255, 255, 255, 1), "subnet mask 255.255.255.1, which is not contiguous"},
		{net.IPv4Mask(0, 0, 0, 0), "subnet mask 0.0.0.0, which makes every address a neighbour"},
	} {
		a := ack(t, dhcpv4.WithNetmask(tt.mask), dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 2))))
		l, err := LeaseFromACK("eth0", mac, a)
		if err == nil {
			t.Errorf("mask %s: lease %+v accepted", net.IP(tt.mask), l)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "DHCP server 10.0.2.2 offers 10.0.2.15 on eth0 with "+tt.want) || !strings.Contains(msg, "refused") {
			t.Errorf("mask %s: error %q", net.IP(tt.mask), msg)
		}
	}
	// Valid masks, /32 and /31 among them, are taken.
	for _, ones := range []int{8, 24, 31, 32} {
		if l, err := LeaseFromACK("eth0", mac, ack(t, dhcpv4.WithNetmask(net.CIDRMask(ones, 32)))); err != nil {
			t.Errorf("/%d refused: %v", ones, err)
		} else if got, _ := l.Addr.Mask.Size(); got != ones {
			t.Errorf("/%d: lease has /%d", ones, got)
		}
	}
}

// TestLeaseFromACKMasksClasslessRouteHostBits: a classless static route
// (option 121) whose destination has bits past its prefix (10.0.15.0/20,
// a server's typo) becomes its network (10.0.0.0/20): the kernel refuses
// the route as given, and with it the whole lease.
func TestLeaseFromACKMasksClasslessRouteHostBits(t *testing.T) {
	l, err := LeaseFromACK("eth0", nil, ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(
			&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: net.IPv4(10, 0, 2, 1)},
			&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4(10, 0, 15, 0).To4(), Mask: net.CIDRMask(20, 32)}, Router: net.IPv4(10, 0, 2, 254)},
			&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4(192, 168, 7, 9).To4(), Mask: net.CIDRMask(23, 32)}, Router: net.IPv4(10, 0, 2, 254)},
		))))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range l.Routes {
		if r.Dst != nil {
			got = append(got, r.Dst.String())
		}
	}
	if want := []string{"10.0.0.0/20", "192.168.6.0/23"}; !slices.Equal(got, want) {
		t.Errorf("routes to %v, want %v (the destinations masked to their prefixes)", got, want)
	}
}

// TestLeaseFromACKRaisesASmallMTU: an interface MTU (option 26) under 576
// is raised to it, as systemd-networkd does, the offered one kept for the
// warning; one from 576 up is the server's (setMTU keeps a link with IPv6
// at 1280).
func TestLeaseFromACKRaisesASmallMTU(t *testing.T) {
	for _, tc := range []struct{ offered, mtu, noted int }{{68, 576, 68}, {500, 576, 500}, {576, 576, 0}, {1000, 1000, 0}, {67, 0, 0}} {
		l, err := LeaseFromACK("eth0", nil, ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(uint16(tc.offered))})))
		if err != nil {
			t.Fatal(err)
		}
		if l.MTU != tc.mtu || l.offeredMTU != tc.noted {
			t.Errorf("option 26 = %d: MTU %d (offered %d), want %d (offered %d)", tc.offered, l.MTU, l.offeredMTU, tc.mtu, tc.noted)
		}
	}
}

// TestResolvConfSkipsWhatCannotBeANameServer: a DHCP server's name
// servers that nothing answers at (0.0.0.0, loopback, the broadcast
// address, multicast) do not take the resolver's three places; they are
// reported (the caller logs them).
func TestResolvConfSkipsWhatCannotBeANameServer(t *testing.T) {
	leases := []Lease{{Iface: "eth0", DNS: []net.IP{net.IPv4zero, net.IPv4(127, 0, 0, 53), net.IPv4bcast, net.IPv4(224, 0, 0, 251),
		net.ParseIP("::1"), net.ParseIP("fe80::1"), net.IPv4(10, 0, 0, 1), net.IPv4(10, 0, 0, 2), net.IPv4(10, 0, 0, 3)}}}
	b, skipped := resolvConf(leases)
	if got := strings.Join(strings.Split(string(b), "\n")[1:], "\n"); got != "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n" {
		t.Errorf("resolv.conf:\n%s\nwant 10.0.0.1, 10.0.0.2 and 10.0.0.3 only", b)
	}
	var names []string
	for _, s := range skipped {
		if s.iface != "eth0" || s.why == "" {
			t.Errorf("skipped %+v: want the link and why", s)
		}
		names = append(names, s.addr)
	}
	if want := []string{"0.0.0.0", "127.0.0.53", "255.255.255.255", "224.0.0.251", "::1", "fe80::1"}; !slices.Equal(names, want) {
		t.Errorf("skipped %v, want %v", names, want)
	}
	if got := string(ResolvConf(leases)); got != string(b) {
		t.Errorf("ResolvConf = %q, want %q", got, b)
	}
}

// TestLeaseTimeMissingMalformedOrZero: only 0xffffffff in option 51 is an
// infinite lease; an ACK without option 51, or with one that is not 4
// bytes, gets an hour (renewed, and running out), and one of 0 s the
// shortest lease the renewals take (20 s), each noted for a warning.
func TestLeaseTimeMissingMalformedOrZero(t *testing.T) {
	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 2)))
	for _, tc := range []struct {
		name     string
		mods     []dhcpv4.Modifier
		lifetime time.Duration
		infinite bool
		issue    string
	}{
		{"missing", nil, time.Hour, false, "gives no lease time (option 51): 1h0m0s is used"},
		{"malformed", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionIPAddressLeaseTime, Value: dhcpv4.OptionGeneric{Data: []byte{0, 1}}})},
			time.Hour, false, "gives a malformed lease time (option 51, 2 bytes, not 4): 1h0m0s is used"},
		{"zero", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(0)}, 20 * time.Second, false, "gives a lease time of 0 s (option 51): 20s is used"},
		{"infinite", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(0xffffffff)}, infiniteLease, true, ""},
		{"an hour", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(3600)}, time.Hour, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := LeaseFromACK("eth0", nil, ack(t, append([]dhcpv4.Modifier{sid, dhcpv4.WithNetmask(net.CIDRMask(24, 32))}, tc.mods...)...))
			if err != nil {
				t.Fatal(err)
			}
			if l.Lifetime != tc.lifetime || l.infinite() != tc.infinite || l.lifetimeIssue != tc.issue {
				t.Errorf("lifetime %s infinite %v issue %q, want %s %v %q", l.Lifetime, l.infinite(), l.lifetimeIssue, tc.lifetime, tc.infinite, tc.issue)
			}
			if !tc.infinite {
				if t1, t2 := l.times(); t1 <= 0 || t2 <= t1 || t2 >= l.Lifetime {
					t.Errorf("T1 %s T2 %s for a lease of %s", t1, t2, l.Lifetime)
				}
				if l.left() <= 0 {
					t.Errorf("the address's lifetime is %d s: for ever", l.left())
				}
			}
		})
	}
}
