package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/schema"
)

// routesOn is a network section of one static dual-stack entry, eth0 on
// 10.0.0.2/24 and 2001:db8::2/64, with the routes given (a YAML flow list's
// items).
func routesOn(routes string) string {
	return "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24, '2001:db8::2/64'], gateway: 10.0.0.1, routes: [" + routes + "]}]}\n"
}

// TestRouteRejections: each rule of network.interfaces[].routes refuses at
// its field, showing the bad value and saying what to write instead.
func TestRouteRejections(t *testing.T) {
	v4only := func(routes string) string {
		return "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], routes: [" + routes + "]}]}\n"
	}
	for _, tc := range []struct {
		name string
		body string // after the header and server
		path string
		want []string // substrings of that field's message
	}{
		// 1. Beside DHCP: IPv4 routes leave from the lease's address,
		// IPv6 ones from the entry's static IPv6 addresses.
		{"IPv6 route with dhcp and IPv4 addresses alone", "network: {interfaces: [{name: eth0, dhcp: true, addresses: [10.0.0.2/24], routes: [{to: '2001:db8:20::/48', via: '2001:db8::1'}]}]}\n",
			"network.interfaces[0].routes[0]", []string{`an IPv6 route (to "2001:db8:20::/48") with dhcp: true`, "no static IPv6 address", "list an IPv6 address"}},
		{"IPv6 route with dhcp and no addresses", "network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: 10.20.0.0/16, via: 10.0.0.1}, {via: '2001:db8::1'}]}]}\n",
			"network.interfaces[0].routes[1]", []string{`an IPv6 route (via "2001:db8::1") with dhcp: true`, "DHCP (DHCPv4) gives only the IPv4 address"}},
		{"IPv4 route with dhcp via loopback", "network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: 10.20.0.0/16, via: 127.0.0.1}]}]}\n",
			"network.interfaces[0].routes[0].via", []string{`"127.0.0.1" is a loopback address`, "a router on the subnet DHCP gives this interface"}},
		{"IPv4 route with dhcp via the limited broadcast", "network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: 10.20.0.0/16, via: 255.255.255.255}]}]}\n",
			"network.interfaces[0].routes[0].via", []string{`"255.255.255.255" is the limited broadcast address`}},
		{"IPv4 route with dhcp via another entry's address", "network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: 10.20.0.0/16, via: 10.1.0.2}]}, {name: eth1, addresses: [10.1.0.2/24]}]}\n",
			"network.interfaces[0].routes[0].via", []string{`"10.1.0.2" is the address of network.interfaces[1] (network.interfaces[1].addresses[0])`, "put the route on network.interfaces[1], via a router on its subnet 10.1.0.0/24"}},
		{"IPv4 route with dhcp via another entry's subnet", "network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: 10.20.0.0/16, via: 10.1.0.1}]}, {name: eth1, addresses: [10.1.0.2/24]}]}\n",
			"network.interfaces[0].routes[0].via", []string{"10.1.0.1 is on the subnet 10.1.0.0/24 of network.interfaces[1]", "put the route on network.interfaces[1]"}},
		{"IPv4 route with dhcp, IPv6 via", "network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64'], routes: [{to: 10.20.0.0/16, via: '2001:db8::1'}]}]}\n",
			"network.interfaces[0].routes[0].via", []string{"is an IPv6 address and to (10.20.0.0/16) an IPv4 network"}},
		{"IPv4 route with dhcp to bad network", "network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: 10.20.0.1/16, via: 10.0.0.1}]}]}\n",
			"network.interfaces[0].routes[0].to", []string{"write 10.20.0.0/16"}},
		{"IPv4 routes with dhcp twice", "network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: 10.20.0.0/16, via: 10.0.0.1}, {to: 10.20.0.0/16}]}]}\n",
			"network.interfaces[0].routes[1].to", []string{"10.20.0.0/16 with metric 50", "one route per network and metric"}},
		{"IPv6 route with dhcp via the entry's own address", "network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64'], routes: [{to: '2001:db8:20::/48', via: '2001:db8::2'}]}]}\n",
			"network.interfaces[0].routes[0].via", []string{`"2001:db8::2" is this interface's own address (network.interfaces[0].addresses[0])`}},
		{"IPv6 route with dhcp to bad network", "network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64'], routes: [{to: '2001:db8:20::1/48', via: '2001:db8::1'}]}]}\n",
			"network.interfaces[0].routes[0].to", []string{"write 2001:db8:20::/48"}},

		// 2. A bond that only carries VLANs has no address to leave from.
		{"routes on an addressless bond", "network: {interfaces: [{name: bond0, bond: {members: [eth0, eth1], mode: 802.3ad}, routes: [{to: 10.20.0.0/16, via: 10.0.0.1}]}, {name: bond0, vlan: 7, addresses: [10.0.0.2/24]}]}\n",
			"network.interfaces[0].routes", []string{"given on bond0, which has no addresses", "put the routes on the entry that has the addresses", "name: bond0, vlan: 100"}},

		// 4. to.
		{"to missing", routesOn("{via: 10.0.0.1}"), "network.interfaces[0].routes[0].to", []string{"missing", "CIDR form"}},
		{"to not a network", routesOn("{to: lan, via: 10.0.0.1}"), "network.interfaces[0].routes[0].to", []string{`"lan" is not a network in CIDR form`, "10.20.0.0/16"}},
		{"to without prefix length", routesOn("{to: 10.20.0.5, via: 10.0.0.1}"), "network.interfaces[0].routes[0].to", []string{`"10.20.0.5" has no prefix length`, "10.20.0.5/32 for a route to this one host"}},
		{"to IPv6 without prefix length", routesOn("{to: '2001:db8:20::5', via: '2001:db8::1'}"), "network.interfaces[0].routes[0].to", []string{"2001:db8:20::5/128"}},
		{"to with a zone", routesOn("{to: 'fe80::%eth0/64'}"), "network.interfaces[0].routes[0].to", []string{`"fe80::%eth0/64" has a zone`, "leave it out"}},
		{"to with host bits", routesOn("{to: 10.20.0.5/16, via: 10.0.0.1}"), "network.interfaces[0].routes[0].to", []string{`"10.20.0.5/16" has host bits set`, "write 10.20.0.0/16", "10.20.0.5/32"}},
		{"to IPv6 with host bits", routesOn("{to: '2001:db8:20::1/48', via: '2001:db8::1'}"), "network.interfaces[0].routes[0].to", []string{"write 2001:db8:20::/48"}},
		{"to the IPv4 default route", routesOn("{to: 0.0.0.0/0, via: 10.0.0.1}"), "network.interfaces[0].routes[0].to", []string{`"0.0.0.0/0" is the default route`, "as this interface's gateway"}},
		{"to the IPv6 default route", routesOn("{to: '::/0', via: '2001:db8::1'}"), "network.interfaces[0].routes[0].to", []string{`"::/0" is the default route`, "gateway6"}},
		{"to IPv4-mapped", routesOn("{to: '::ffff:10.20.0.0/112', via: 10.0.0.1}"), "network.interfaces[0].routes[0].to", []string{`"::ffff:10.20.0.0/112" is an IPv4-mapped IPv6 network`, "write 10.20.0.0/16"}},
		{"to twice on an entry", routesOn("{to: 10.20.0.0/16, via: 10.0.0.1}, {to: 10.20.0.0/16, via: 10.0.0.254}"), "network.interfaces[0].routes[1].to",
			[]string{"10.20.0.0/16 with metric 50 (its metric left out: network.interfaces[0]'s own, 50 + the entry's index)", "network.interfaces[0].routes[0] with metric 50 (its metric left out too)", "one route per network and metric", "another metric"}},
		{"to twice on an entry with a metric", routesOn("{to: 10.20.0.0/16, via: 10.0.0.1, metric: 10}, {to: 10.20.0.0/16, metric: 10}"), "network.interfaces[0].routes[1].to",
			[]string{"10.20.0.0/16 with metric 10", "network.interfaces[0].routes[0]"}},
		// A metric left out is the entry's own, 50 + its index, as the
		// node adds it: a metric given may be the same.
		{"to on an entry with its own metric, given", routesOn("{to: 10.20.0.0/16, via: 10.0.0.1}, {to: 10.20.0.0/16, via: 10.0.0.254, metric: 50}"), "network.interfaces[0].routes[1].to",
			[]string{"10.20.0.0/16 with metric 50 is already routed at network.interfaces[0].routes[0] with metric 50 (its metric left out: network.interfaces[0]'s own", "give one of them another metric"}},
		{"to on two entries, the first's own metric given by the second", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.0.0.1}]}, {name: eth1, addresses: [10.1.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.1.0.1, metric: 50}]}]}\n",
			"network.interfaces[1].routes[0].to", []string{"10.20.0.0/16 with metric 50 is already routed at network.interfaces[0].routes[0] with metric 50 (its metric left out: network.interfaces[0]'s own", "whichever link", "another metric"}},
		{"to on two entries, the second's own metric given by the first", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.0.0.1, metric: 51}]}, {name: eth1, addresses: [10.1.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.1.0.1}]}]}\n",
			"network.interfaces[1].routes[0].to", []string{"10.20.0.0/16 with metric 51 (its metric left out: network.interfaces[1]'s own, 50 + the entry's index) is already routed at network.interfaces[0].routes[0] with metric 51:", "whichever link", "another metric"}},
		{"to on a dhcp entry with another's metric", "network: {interfaces: [{name: eth0, addresses: ['2001:db8::2/64'], routes: [{to: '2001:db8:20::/48', via: '2001:db8::1', metric: 51}]}, {name: eth1, dhcp: true, addresses: ['2001:db8:1::2/64'], routes: [{to: '2001:db8:20::/48', via: '2001:db8:1::1'}]}]}\n",
			"network.interfaces[1].routes[0].to", []string{"2001:db8:20::/48 with metric 51 (its metric left out: network.interfaces[1]'s own", "network.interfaces[0].routes[0]"}},
		{"to on two entries with one metric", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.0.0.1, metric: 5}]}, {name: eth1, addresses: [10.1.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.1.0.1, metric: 5}]}]}\n",
			"network.interfaces[1].routes[0].to", []string{"10.20.0.0/16 with metric 5 is already routed at network.interfaces[0].routes[0]", "whichever link", "another metric"}},

		// 5. via.
		{"via not an address", routesOn("{to: 10.20.0.0/16, via: router}"), "network.interfaces[0].routes[0].via", []string{`"router" is not an IP address`}},
		{"via a prefix", routesOn("{to: 10.20.0.0/16, via: 10.0.0.1/24}"), "network.interfaces[0].routes[0].via", []string{`"10.0.0.1/24" is a prefix`, "via: 10.0.0.1"}},
		{"via with a zone", routesOn("{to: '2001:db8:20::/48', via: 'fe80::1%eth0'}"), "network.interfaces[0].routes[0].via", []string{`"fe80::1%eth0" has a zone`, "via: fe80::1", "the interface is the zone"}},
		{"via IPv4-mapped", routesOn("{to: 10.20.0.0/16, via: '::ffff:10.0.0.1'}"), "network.interfaces[0].routes[0].via", []string{"IPv4-mapped", "write the IPv4 address, 10.0.0.1"}},
		{"via of the other family", routesOn("{to: 10.20.0.0/16, via: 'fe80::1'}"), "network.interfaces[0].routes[0].via", []string{`"fe80::1" is an IPv6 address and to (10.20.0.0/16) an IPv4 network`, "give an IPv4 router's address"}},
		{"via IPv4 for an IPv6 network", routesOn("{to: '2001:db8:20::/48', via: 10.0.0.1}"), "network.interfaces[0].routes[0].via", []string{"IPv4 address", "IPv6 network"}},
		{"via the entry's own address", routesOn("{to: 10.20.0.0/16, via: 10.0.0.2}"), "network.interfaces[0].routes[0].via", []string{`"10.0.0.2" is this interface's own address (network.interfaces[0].addresses[0])`}},
		{"via the network address", routesOn("{to: 10.20.0.0/16, via: 10.0.0.0}"), "network.interfaces[0].routes[0].via", []string{`"10.0.0.0" is the network address of 10.0.0.0/24`, "from 10.0.0.1 to 10.0.0.254"}},
		{"via the broadcast address", routesOn("{to: 10.20.0.0/16, via: 10.0.0.255}"), "network.interfaces[0].routes[0].via", []string{"broadcast address of 10.0.0.0/24"}},
		{"via unspecified", routesOn("{to: '2001:db8:20::/48', via: '::'}"), "network.interfaces[0].routes[0].via", []string{"unspecified", "not a router's address"}},
		{"via multicast", routesOn("{to: 10.20.0.0/16, via: 224.0.0.1}"), "network.interfaces[0].routes[0].via", []string{"multicast"}},
		{"via loopback", routesOn("{to: 10.20.0.0/16, via: 127.0.0.1}"), "network.interfaces[0].routes[0].via", []string{"loopback"}},
		// A next hop on another entry belongs to that entry: as its own
		// address, the kernel refuses it (EINVAL); on its subnet, it
		// would be added on-link, out the wrong link.
		{"via another entry's address", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.1.0.2}]}, {name: eth1, addresses: [10.1.0.2/24]}]}\n",
			"network.interfaces[0].routes[0].via", []string{`"10.1.0.2" is the address of network.interfaces[1] (network.interfaces[1].addresses[0]), another interface`, "refuses", "put the route on network.interfaces[1], via a router on its subnet 10.1.0.0/24"}},
		{"via an earlier entry's IPv6 address", "network: {interfaces: [{name: eth0, addresses: ['2001:db8:1::2/64']}, {name: eth1, addresses: ['2001:db8::2/64'], routes: [{to: '2001:db8:20::/48', via: '2001:db8:1::2'}]}]}\n",
			"network.interfaces[1].routes[0].via", []string{"network.interfaces[0] (network.interfaces[0].addresses[0])", "put the route on network.interfaces[0]"}},
		{"via another entry's address on this one's subnet too", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/16], routes: [{to: 10.20.0.0/16, via: 10.0.1.2}]}, {name: eth1, addresses: [10.0.1.2/24]}]}\n",
			"network.interfaces[0].routes[0].via", []string{`"10.0.1.2" is the address of network.interfaces[1]`}},
		{"via on another entry's subnet", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.1.0.1}]}, {name: eth1, addresses: [10.1.0.2/24]}]}\n",
			"network.interfaces[0].routes[0].via", []string{"10.1.0.1 is on the subnet 10.1.0.0/24 of network.interfaces[1] (its address 10.1.0.2/24, network.interfaces[1].addresses[0]), another interface", "on-link", "put the route on network.interfaces[1]"}},
		{"via on a dhcp entry's IPv6 subnet", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24, '2001:db8::2/64'], routes: [{to: '2001:db8:20::/48', via: '2001:db8:1::1'}]}, {name: eth1, dhcp: true, addresses: ['2001:db8:1::2/64']}]}\n",
			"network.interfaces[0].routes[0].via", []string{"2001:db8:1::1 is on the subnet 2001:db8:1::/64 of network.interfaces[1]", "put the route on network.interfaces[1]"}},
		{"via of a family this entry lacks, on another entry's subnet", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], routes: [{to: '2001:db8:20::/48', via: '2001:db8:1::1'}]}, {name: eth1, addresses: ['2001:db8:1::2/64']}]}\n",
			"network.interfaces[0].routes[0].via", []string{"2001:db8:1::1 has no address of its family", "on the subnet 2001:db8:1::/64 of network.interfaces[1]", "put the route on network.interfaces[1]"}},
		{"gateway on another entry's subnet", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], gateway: 10.1.0.1}, {name: eth1, addresses: [10.1.0.2/24]}]}\n",
			"network.interfaces[0].gateway", []string{"10.1.0.1 is on the subnet 10.1.0.0/24 of network.interfaces[1]", "give network.interfaces[1] the gateway instead"}},
		{"gateway6 another entry's address", "network: {interfaces: [{name: eth0, addresses: ['2001:db8::2/64']}, {name: eth1, dhcp: true, addresses: ['2001:db8:1::2/64'], gateway6: '2001:db8::2'}]}\n",
			"network.interfaces[1].gateway6", []string{`"2001:db8::2" is the address of network.interfaces[0] (network.interfaces[0].addresses[0])`, "give network.interfaces[0] the gateway6 instead, a router on its subnet 2001:db8::/64"}},
		{"via without an address of its family", v4only("{to: '2001:db8:20::/48', via: 'fe80::1'}"), "network.interfaces[0].routes[0].via", []string{"fe80::1 has no address of its family"}},

		// 6. On the link, from an address of the network's family.
		{"on-link without an address of its family", v4only("{to: '2001:db8:20::/48'}"), "network.interfaces[0].routes[0]", []string{"2001:db8:20::/48 is on the link (no via)", "no IPv6 address"}},

		// 7. metric.
		{"metric negative", routesOn("{to: 10.20.0.0/16, via: 10.0.0.1, metric: -1}"), "network.interfaces[0].routes[0].metric", []string{"-1 is negative", "1 to 4294967295", "leave metric out"}},
		{"metric too large", routesOn("{to: 10.20.0.0/16, via: 10.0.0.1, metric: 4294967296}"), "network.interfaces[0].routes[0].metric", []string{"4294967296 is out of range", "1 to 4294967295"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRefused(t, header+server+tc.body, tc.path, tc.want)
		})
	}
}

// TestRouteBound: over maxRoutes, one error for the list, its routes not
// judged one by one; at the bound, they are.
func TestRouteBound(t *testing.T) {
	routes := func(n int, to string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf("{to: '"+to+"', via: 10.0.0.1}", i)
		}
		return strings.Join(items, ", ")
	}
	_, _, err := Check([]byte(header + server + routesOn(routes(65, "10.%d.0.5/16"))))
	if fe := findField(err, "network.interfaces[0].routes"); fe == nil || !strings.Contains(fe.Msg, "65 routes, more than the 64 allowed") {
		t.Fatalf("no bound error:\n%.3000v", err)
	}
	if es := err.(schema.Errors); len(es) != 1 {
		t.Errorf("%d errors, want the bound's alone:\n%.3000v", len(es), err)
	}
	if _, w, err := Check([]byte(header + server + routesOn(routes(64, "10.%d.0.0/16")))); err != nil || len(w) != 0 {
		t.Errorf("64 routes: warnings %q, err %v", w, err)
	}
}

// TestRoutesOnlyTheirOwnErrors: a route's mistake is reported once, at its
// field, and an entry already refused is not refused again for its routes.
func TestRoutesOnlyTheirOwnErrors(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string // the paths of the errors, each once
	}{
		// Static without addresses: the entry's own error, not its routes'.
		{"network: {interfaces: [{name: eth0, routes: [{to: 10.20.0.0/16, via: 10.0.0.1}]}]}\n", []string{"network.interfaces[0]"}},
		// DHCP: an IPv4 route is judged field by field.
		{"network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: 10.20.0.5/16, via: x, metric: -1}]}]}\n",
			[]string{"network.interfaces[0].routes[0].to", "network.interfaces[0].routes[0].via", "network.interfaces[0].routes[0].metric"}},
		// DHCP without IPv6 addresses: one error for an IPv6 route, whatever it holds.
		{"network: {interfaces: [{name: eth0, dhcp: true, routes: [{to: '2001:db8::5/48', via: x, metric: -1}]}]}\n", []string{"network.interfaces[0].routes[0]"}},
		// A bad to: the via is still judged (fine here), its family not.
		{routesOn("{to: 10.20.0.5/16, via: 10.0.0.1}"), []string{"network.interfaces[0].routes[0].to"}},
		{routesOn("{to: 10.20.0.5/16, via: 'fe80::1'}"), []string{"network.interfaces[0].routes[0].to"}},
		// A bad metric: each is refused, and not also as a duplicate.
		{routesOn("{to: 10.20.0.0/16, via: 10.0.0.1, metric: -1}, {to: 10.20.0.0/16, via: 10.0.0.1, metric: -1}"),
			[]string{"network.interfaces[0].routes[0].metric", "network.interfaces[0].routes[1].metric"}},
	} {
		_, _, err := Check([]byte(header + server + tc.body))
		es, _ := err.(schema.Errors)
		ok := len(es) == len(tc.want)
		for _, p := range tc.want {
			ok = ok && findField(err, p) != nil
		}
		if !ok {
			t.Errorf("%s: want errors at %q alone; got:\n%v", strings.TrimSpace(tc.body), tc.want, err)
		}
	}
}

func TestRouteWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string // substrings of the one warning
	}{
		{"IPv4 via outside the subnets", routesOn("{to: 10.20.0.0/16, via: 10.9.0.1}"),
			[]string{"network.interfaces[0].routes[0].via: ", "10.9.0.1 is outside every subnet of this interface: it will be added as an on-link route"}},
		{"IPv6 via outside the subnets", routesOn("{to: '2001:db8:20::/48', via: '2001:db8:9::1'}"),
			[]string{"network.interfaces[0].routes[0].via: ", "2001:db8:9::1 is outside every subnet", "on-link"}},
		{"a route to the entry's own subnet", routesOn("{to: 10.0.0.0/24, via: 10.0.0.1}"),
			[]string{"network.interfaces[0].routes[0].to: ", "10.0.0.0/24 is the subnet of this interface's address 10.0.0.2 (network.interfaces[0].addresses[0])", "already routes it", "remove this route"}},
		// A next hop on a dhcp: true entry's IPv4 subnet, which only the
		// lease says, cannot be told from one outside every subnet.
		{"via beside a dhcp entry", "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], routes: [{to: 10.20.0.0/16, via: 10.1.0.1}]}, {name: eth1, dhcp: true}]}\n",
			[]string{"network.interfaces[0].routes[0].via: ", "10.1.0.1 is outside every subnet of this interface: it will be added as an on-link route"}},
		{"IPv6 via outside the subnets on a dhcp entry", "network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64'], routes: [{to: '2001:db8:20::/48', via: '2001:db8:9::1'}]}]}\n",
			[]string{"network.interfaces[0].routes[0].via: ", "2001:db8:9::1 is outside every subnet"}},
		{"an on-link route to the entry's own IPv6 subnet", routesOn("{to: '2001:db8::/64'}"),
			[]string{"network.interfaces[0].routes[0].to: ", "2001:db8::/64 is the subnet", "network.interfaces[0].addresses[1]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantOneWarning(t, header+server+tc.body, tc.want)
		})
	}
}

// TestRoutesAccepted: routes the checks must not refuse, nor warn about.
func TestRoutesAccepted(t *testing.T) {
	for _, body := range []string{
		// IPv4 and IPv6 routes through routers on the subnets, an IPv6
		// router's link-local address, networks on the link itself, a host
		// route, metrics (the largest the kernel takes), and one network
		// twice with different metrics (a backup route).
		routesOn("{to: 10.20.0.0/16, via: 10.0.0.1}, " +
			"{to: 10.30.0.0/16, via: 10.0.0.254, metric: 10}, " +
			"{to: 10.30.0.0/16, via: 10.0.0.253, metric: 4294967295}, " +
			"{to: 10.30.0.0/16, via: 10.0.0.252}, " +
			"{to: 192.0.2.7/32, via: 10.0.0.1}, " +
			"{to: 198.51.100.0/24}, " +
			"{to: '2001:db8:20::/48', via: '2001:db8::1'}, " +
			"{to: '2001:db8:30::/48', via: 'fe80::1', metric: 100}, " +
			"{to: '2001:db8:40::/64'}"),
		// Routes on a VLAN, on a bond with addresses and on a VLAN on a
		// bond; one network from two entries, each with its own metric
		// (left out) or different ones.
		"network: {interfaces: [" +
			"{mac: '52:54:00:00:00:01', vlan: 42, addresses: [192.0.2.10/24, '2001:db8:42::10/64'], gateway: 192.0.2.1, routes: [{to: 198.51.100.0/24, via: 192.0.2.254}, {to: '2001:db8:20::/48', via: 'fe80::1'}, {to: 203.0.113.0/24, metric: 7}]}, " +
			"{name: bond0, addresses: [10.0.0.2/24], bond: {members: [eth1, eth2], mode: 802.3ad}, routes: [{to: 198.51.100.0/24, via: 10.0.0.1}, {to: 203.0.113.0/24, via: 10.0.0.1, metric: 8}]}, " +
			"{name: bond0, vlan: 100, addresses: [10.100.0.2/24], routes: [{to: 10.200.0.0/16, via: 10.100.0.1}]}]}\n",
		// An IPv6-only entry: IPv6 routes alone, its gateway given as gateway.
		"network: {interfaces: [{name: eth0, addresses: ['2001:db8::2/64'], gateway: 'fe80::1', routes: [{to: 'fd00:20::/48', via: 'fe80::2'}]}]}\n",
		// IPv6 routes on a dhcp: true entry, beside its static IPv6
		// addresses; one network from it and a static entry, each with
		// its own metric.
		"network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64'], gateway6: 'fe80::1', routes: [{to: '2001:db8:20::/48', via: '2001:db8::1'}, {to: 'fd00:20::/48', via: 'fe80::1', metric: 100}, {to: '2001:db8:40::/64'}]}, " +
			"{name: eth1, addresses: ['2001:db8:1::2/64'], routes: [{to: '2001:db8:20::/48', via: '2001:db8:1::1'}, {to: '2001:db8:30::/48', via: '2001:db8:1::1', metric: 50}]}]}\n",
		// One network from an entry's own metric (left out) and a
		// metric given next to it.
		routesOn("{to: 10.20.0.0/16, via: 10.0.0.1}, {to: 10.20.0.0/16, via: 10.0.0.254, metric: 51}"),
		// An IPv6 link-local next hop is on the link, whatever other
		// entries hold.
		"network: {interfaces: [{name: eth0, addresses: ['2001:db8::2/64'], routes: [{to: 'fd00:20::/48', via: 'fe80::1'}]}, {name: eth1, addresses: ['2001:db8:1::2/64'], gateway6: 'fe80::1'}]}\n",
		// An empty list is no routes.
		"network: {interfaces: [{name: eth0, dhcp: true, routes: []}]}\n",
		// IPv4 routes beside a DHCP lease (on a VLAN too): through a
		// router whose subnet only the lease will tell, on the link, with
		// a metric; IPv6 ones beside the entry's IPv6 address.
		"network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64'], routes: [{to: 10.20.0.0/16, via: 10.0.0.1}, {to: 198.51.100.0/24}, {to: 10.30.0.0/16, via: 192.0.2.1, metric: 7}, {to: '2001:db8:20::/48', via: 'fe80::1'}]}, " +
			"{name: eth0, vlan: 7, dhcp: true, routes: [{to: 10.20.0.0/16, via: 10.7.0.1}]}]}\n",
	} {
		if _, w, err := Check([]byte(header + server + body)); err != nil || len(w) != 0 {
			t.Errorf("%s: warnings %q, err %v", strings.TrimSpace(body), w, err)
		}
	}
	// The commented-out routes in the example validate once uncommented,
	// on the entry they are written under.
	doc := exampleWith("      ", "routes:")
	if !strings.Contains(doc, "\n      mtu: 1500\n") || !strings.Contains(doc, "\n      routes:\n        - to: ") {
		t.Fatalf("the example's routes were not found to uncomment:\n%s", doc)
	}
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 {
		t.Fatalf("the example with its routes: warnings %q, err %v", w, err)
	}
	if r := c.Network.Interfaces[1].Routes; len(r) != 1 || r[0].To == "" || r[0].Via == "" {
		t.Errorf("the example's routes decoded as %+v on %+v", r, c.Network.Interfaces[1])
	}
}
