package network

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/config"
)

// TestApplyDualStackStatic: a static interface with an IPv4 and an IPv6
// address gets both, and a default route of each family (gateway and
// gateway6, the static metric 50); a router's link-local gateway6 is
// reached on the link, with no onlink flag.
func TestApplyDualStackStatic(t *testing.T) {
	for _, tc := range []struct{ name, gw6, want6 string }{
		{"global gateway6", "2001:db8::1", "default via 2001:db8::1 dev vc proto static metric 50"},
		{"link-local gateway6", "fe80::1", "default via fe80::1 dev vc proto static metric 50"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cli, exe := dhcpNamespaces(t)
			spec, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.77/24", "2001:db8::77/64"}, Gateway: "10.99.0.1", Gateway6: tc.gw6}})
			r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(spec))
			if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.77" {
				t.Fatalf("after Apply: %q, error %q; want 10.99.0.77\n%s", r.IPAfterApply, r.ApplyErr, stderr)
			}
			onlyAddress(t, cli, "10.99.0.77/24", "10.99.0.1", "after a dual-stack static config")
			if addrs := ipCmd(t, "-n", cli, "-6", "addr", "show", "vc"); !strings.Contains(addrs, "inet6 2001:db8::77/64") {
				t.Errorf("vc's IPv6 addresses:\n%s\nwant 2001:db8::77/64", addrs)
			}
			if route := ipCmd(t, "-n", cli, "-4", "route", "show", "default"); !strings.Contains(route, "default via 10.99.0.1 dev vc proto static metric 50") {
				t.Errorf("IPv4 default route:\n%s", route)
			}
			route := strings.TrimSpace(ipCmd(t, "-n", cli, "-6", "route", "show", "default"))
			if !strings.Contains(route, tc.want6) || strings.Contains(route, "onlink") || strings.Count(route, "default") != 1 {
				t.Errorf("IPv6 default route:\n%s\nwant %q, once, not onlink", route, tc.want6)
			}
		})
	}
}

// TestApplyDHCPWithStaticIPv6: dhcp: true (DHCPv4) with a static IPv6
// address and gateway6: the link keeps its lease (no second exchange) and
// gets the IPv6 address and default route beside it; a later config that
// lists another IPv6 address and no gateway6 replaces the address and
// drops the route, the lease staying; a static config after that leaves
// none of them.
func TestApplyDHCPWithStaticIPv6(t *testing.T) {
	_, cli, exe := dhcpNamespaces(t)
	first, _ := json.Marshal([]config.Interface{{Name: "vc", DHCP: true, Addresses: []string{"2001:db8::77/64"}, Gateway6: "2001:db8::1"}})
	second, _ := json.Marshal([]config.Interface{{Name: "vc", DHCP: true, Addresses: []string{"2001:db8::88/64"}}})
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(first))
	if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.50" || len(r.Applied) != 1 {
		t.Fatalf("after Apply: %q, applied %+v, error %q; want the lease's 10.99.0.50\n%s", r.IPAfterApply, r.Applied, r.ApplyErr, stderr)
	}
	if got := strings.Join(r.Applied[0].Addresses, ","); got != "10.99.0.50/24,2001:db8::77/64" || !r.Applied[0].DHCP {
		t.Errorf("applied addresses %q (dhcp %v), want the lease's and the static IPv6 one", got, r.Applied[0].DHCP)
	}
	onlyAddress(t, cli, "10.99.0.50/24", "10.99.0.1", "with dhcp: true and a static IPv6 address")
	if addrs := ipCmd(t, "-n", cli, "-6", "addr", "show", "vc"); !strings.Contains(addrs, "inet6 2001:db8::77/64") {
		t.Errorf("vc's IPv6 addresses:\n%s\nwant 2001:db8::77/64", addrs)
	}
	if route := ipCmd(t, "-n", cli, "-6", "route", "show", "default"); !strings.Contains(route, "default via 2001:db8::1 dev vc proto static metric 50") {
		t.Errorf("IPv6 default route:\n%s\nwant via 2001:db8::1, metric 50", route)
	}
	if n := strings.Count(stderr, `msg="dhcp done" iface=vc`); n != 1 {
		t.Errorf("%d DHCP exchanges, want the boot's alone (its lease kept)", n)
	}

	t.Run("then another IPv6 address, then static", func(t *testing.T) {
		_, cli, exe := dhcpNamespaces(t)
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(first), "ETOILE_NETTEST_APPLY2="+string(second))
		if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.50" || r.Leases != 2 {
			t.Fatalf("after the second apply: %q, %d leases, error %q; want the lease and one static IPv6 address\n%s", r.IPAfterApply, r.Leases, r.ApplyErr, stderr)
		}
		onlyAddress(t, cli, "10.99.0.50/24", "10.99.0.1", "after the second apply")
		if addrs := ipCmd(t, "-n", cli, "-6", "addr", "show", "vc"); !strings.Contains(addrs, "inet6 2001:db8::88/64") || strings.Contains(addrs, "2001:db8::77") {
			t.Errorf("vc's IPv6 addresses:\n%s\nwant 2001:db8::88/64, and ::77 gone", addrs)
		}
		if route := ipCmd(t, "-n", cli, "-6", "route", "show", "default"); strings.Contains(route, "2001:db8::1") {
			t.Errorf("IPv6 default route stays without gateway6:\n%s", route)
		}
		if n := strings.Count(stderr, `msg="dhcp done" iface=vc`); n != 1 {
			t.Errorf("%d DHCP exchanges, want the boot's alone (its lease kept)", n)
		}

		static, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.99/24"}, Gateway: "10.99.0.1"}})
		_, cli, exe = dhcpNamespaces(t)
		r, stderr = runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(first), "ETOILE_NETTEST_APPLY2="+string(static))
		if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.99" || r.Leases != 1 {
			t.Fatalf("after the static apply: %q, %d leases, error %q; want 10.99.0.99 alone\n%s", r.IPAfterApply, r.Leases, r.ApplyErr, stderr)
		}
		onlyAddress(t, cli, "10.99.0.99/24", "10.99.0.1", "after the static apply")
		if addrs := ipCmd(t, "-n", cli, "-6", "addr", "show", "vc"); strings.Contains(addrs, "2001:db8::77") {
			t.Errorf("the earlier config's IPv6 address stays:\n%s", addrs)
		}
		if route := ipCmd(t, "-n", cli, "-6", "route", "show", "default"); strings.Contains(route, "2001:db8::1") {
			t.Errorf("the earlier config's IPv6 default route stays:\n%s", route)
		}
	})
}
