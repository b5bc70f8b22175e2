package network

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/config"
)

// TestApplyStaticRoutes: a static interface's routes: are added with the
// agent's mark (proto static) and the entry's metric, or their own: through
// a router on the subnet, on the link itself, through a next hop outside the
// subnets (on-link, as a hoster's /32 gateway) and through an IPv6 router's
// link-local address. A later config's routes replace them; someone else's
// route to the same network with the same metric is left alone and the
// error says what to do.
func TestApplyStaticRoutes(t *testing.T) {
	_, cli, exe := dhcpNamespaces(t)
	first, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.77/24", "2001:db8::77/64"}, Gateway: "10.99.0.1",
		Routes: []config.Route{
			{To: "10.20.0.0/16", Via: "10.99.0.254"},
			{To: "198.51.100.0/24"},
			{To: "203.0.113.0/24", Via: "192.0.2.1"},
			{To: "10.30.0.0/16", Via: "10.99.0.253", Metric: 300},
			{To: "2001:db8:20::/48", Via: "fe80::1"},
		}}})
	second, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.77/24"}, Gateway: "10.99.0.1",
		Routes: []config.Route{{To: "10.21.0.0/16", Via: "10.99.0.254"}}}})
	routes := func(family string) string {
		return strings.TrimSpace(ipCmd(t, "-n", cli, family, "route", "show", "proto", "static"))
	}

	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(first))
	if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.77" {
		t.Fatalf("after Apply: %q, error %q; want 10.99.0.77\n%s", r.IPAfterApply, r.ApplyErr, stderr)
	}
	want4 := "default via 10.99.0.1 dev vc metric 50 \n" +
		"10.20.0.0/16 via 10.99.0.254 dev vc metric 50 \n" +
		"10.30.0.0/16 via 10.99.0.253 dev vc metric 300 \n" +
		"198.51.100.0/24 dev vc scope link metric 50 \n" +
		"203.0.113.0/24 via 192.0.2.1 dev vc metric 50 onlink"
	if got := routes("-4"); got != want4 {
		t.Errorf("IPv4 routes of the config:\n%s\nwant\n%s", got, want4)
	}
	if got := routes("-6"); !strings.Contains(got, "2001:db8:20::/48 via fe80::1 dev vc metric 50") || strings.Contains(got, "onlink") {
		t.Errorf("IPv6 routes of the config:\n%s\nwant 2001:db8:20::/48 via fe80::1, not onlink", got)
	}

	// A later config: its routes only.
	r, stderr = runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(second))
	if r.ApplyErr != "" {
		t.Fatalf("the second config: %s\n%s", r.ApplyErr, stderr)
	}
	if got, want := routes("-4"), "default via 10.99.0.1 dev vc metric 50 \n10.21.0.0/16 via 10.99.0.254 dev vc metric 50"; got != want {
		t.Errorf("IPv4 routes after the second config:\n%s\nwant\n%s", got, want)
	}
	if got := routes("-6"); got != "" {
		t.Errorf("IPv6 routes after a config without them:\n%s", got)
	}

	// Someone else's route to the network, with the metric this one
	// takes: said, and left alone; the entry's other route, its address
	// and its name server stay.
	ipCmd(t, "-n", cli, "route", "del", "10.21.0.0/16", "proto", "static")
	ipCmd(t, "-n", cli, "route", "add", "10.21.0.0/16", "via", "10.99.0.250", "dev", "vc", "metric", "50")
	third, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.77/24"}, Gateway: "10.99.0.1", DNS: []string{"10.99.0.53"},
		Routes: []config.Route{{To: "10.21.0.0/16", Via: "10.99.0.254"}, {To: "10.22.0.0/16", Via: "10.99.0.254"}}}})
	etc := t.TempDir()
	r, stderr = runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+etc, "ETOILE_NETTEST_APPLY="+string(third))
	if !strings.Contains(r.ApplyErr, "a route to 10.21.0.0/16 with metric 50 is there already") || !strings.Contains(r.ApplyErr, "give this route another metric") {
		t.Errorf("a route in the way: error %q\n%s", r.ApplyErr, stderr)
	}
	if got := ipCmd(t, "-n", cli, "-4", "route", "show", "10.21.0.0/16"); !strings.Contains(got, "via 10.99.0.250") {
		t.Errorf("the other route was not left alone:\n%s", got)
	}
	if got := routes("-4"); !strings.Contains(got, "10.22.0.0/16 via 10.99.0.254 dev vc metric 50") {
		t.Errorf("the entry's other route is missing after the refused one:\n%s", got)
	}
	if r.IPAfterApply != "10.99.0.77" {
		t.Errorf("after a refused route the machine's address is %q, want the entry's 10.99.0.77", r.IPAfterApply)
	}
	if b, _ := os.ReadFile(filepath.Join(etc, "resolv.conf")); !strings.Contains(string(b), "nameserver 10.99.0.53") {
		t.Errorf("after a refused route resolv.conf lacks the entry's name server:\n%s", b)
	}
}

// TestApplyRouteMovesToAnEarlierEntry: a route that moves, in a later
// config, to an entry listed before its old one (so with the metric its
// old one had) is added there, and gone from its old link.
func TestApplyRouteMovesToAnEarlierEntry(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	silentPort(t, srv, cli)
	first, _ := json.Marshal([]config.Interface{
		{Name: "vc2", Addresses: []string{"10.98.0.7/24"}, Routes: []config.Route{{To: "10.20.0.0/16", Via: "10.98.0.254"}}},
		{Name: "vc", Addresses: []string{"10.99.0.77/24"}},
	})
	second, _ := json.Marshal([]config.Interface{
		{Name: "vc", Addresses: []string{"10.99.0.77/24"}, Routes: []config.Route{{To: "10.20.0.0/16", Via: "10.99.0.254"}}},
		{Name: "vc2", Addresses: []string{"10.98.0.7/24"}},
	})
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_DHCP_TIMEOUT=1s",
		"ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(first), "ETOILE_NETTEST_APPLY2="+string(second))
	if r.ApplyErr != "" {
		t.Errorf("the second config: %s\n%s", r.ApplyErr, stderr)
	}
	if got, want := strings.TrimSpace(ipCmd(t, "-n", cli, "-4", "route", "show", "10.20.0.0/16")), "10.20.0.0/16 via 10.99.0.254 dev vc proto static metric 50"; got != want {
		t.Errorf("the route to 10.20.0.0/16:\n%s\nwant\n%s", got, want)
	}
}

// TestApplyIPv6RoutesBesideALease: a dhcp: true entry (DHCPv4) with static
// IPv6 addresses gets its IPv6 routes beside the lease (DHCP's option 121
// carries IPv4 routes only).
func TestApplyIPv6RoutesBesideALease(t *testing.T) {
	_, cli, exe := dhcpNamespaces(t)
	spec, _ := json.Marshal([]config.Interface{{Name: "vc", DHCP: true, Addresses: []string{"2001:db8::77/64"},
		Routes: []config.Route{{To: "2001:db8:30::/48", Via: "2001:db8::1"}, {To: "2001:db8:31::/48", Via: "fe80::1", Metric: 200}}}})
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(spec))
	if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.50" {
		t.Fatalf("after Apply: %q, error %q; want the lease's 10.99.0.50\n%s", r.IPAfterApply, r.ApplyErr, stderr)
	}
	got := ipCmd(t, "-n", cli, "-6", "route", "show", "proto", "static")
	for _, want := range []string{"2001:db8:30::/48 via 2001:db8::1 dev vc metric 50", "2001:db8:31::/48 via fe80::1 dev vc metric 200"} {
		if !strings.Contains(got, want) {
			t.Errorf("IPv6 routes beside the lease:\n%s\nwant %s", got, want)
		}
	}
}

// TestApplyIPv6RoutesWithoutALease: a dhcp: true entry whose DHCPv4 gets
// no answer (asked again in the background) still gets its static IPv6
// addresses, gateway6 and IPv6 routes at once: they do not wait for IPv4.
func TestApplyIPv6RoutesWithoutALease(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	silentPort(t, srv, cli)
	spec, _ := json.Marshal([]config.Interface{{Name: "vc2", DHCP: true, Addresses: []string{"2001:db8::77/64"}, Gateway6: "2001:db8::1",
		Routes: []config.Route{{To: "2001:db8:30::/48", Via: "2001:db8::1"}}}})
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_DHCP_TIMEOUT=1s", "ETOILE_NETTEST_RETRY=1s",
		"ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(spec))
	if !strings.Contains(r.ApplyErr, "asking again in the background") {
		t.Fatalf("Apply: %q, want DHCP asked again in the background\n%s", r.ApplyErr, stderr)
	}
	if got := ipCmd(t, "-n", cli, "-6", "route", "show", "proto", "static"); !strings.Contains(got, "2001:db8:30::/48 via 2001:db8::1 dev vc2 metric 50") {
		t.Errorf("IPv6 routes without a DHCPv4 lease:\n%s", got)
	}
}

// besideALease is a dhcp: true entry on vc with IPv4 routes: through a
// router on the lease's subnet (10.99.0.0/24), on the link, through a next
// hop outside the subnet (on-link), and with a metric of its own.
var besideALease = []config.Interface{{Name: "vc", DHCP: true, Routes: []config.Route{
	{To: "10.20.0.0/16", Via: "10.99.0.254"},
	{To: "198.51.100.0/24"},
	{To: "203.0.113.0/24", Via: "192.0.2.1"},
	{To: "10.30.0.0/16", Via: "10.99.0.253", Metric: 300},
}}}

// besideALeaseRoutes is how ip shows besideALease's routes on vc, as the
// first entry's (metric 50).
const besideALeaseRoutes = "10.20.0.0/16 via 10.99.0.254 dev vc metric 50 \n" +
	"10.30.0.0/16 via 10.99.0.253 dev vc metric 300 \n" +
	"198.51.100.0/24 dev vc scope link metric 50 \n" +
	"203.0.113.0/24 via 192.0.2.1 dev vc metric 50 onlink"

// staticRoutes4 is what ip shows of the client's IPv4 routes marked proto
// static (the machine config's).
func staticRoutes4(t *testing.T, cli string) string {
	t.Helper()
	return strings.TrimSpace(ipCmd(t, "-n", cli, "-4", "route", "show", "proto", "static"))
}

// waitRoutes4 waits up to d for the client's config routes to be want, and
// returns what they were last.
func waitRoutes4(t *testing.T, cli, want string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := staticRoutes4(t, cli)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestApplyIPv4RoutesBesideALease: a dhcp: true entry's IPv4 routes are
// added once the lease is on the link (here the boot's), judged against
// its subnet: a next hop outside it is on-link. They sit beside the
// lease's own default route (proto dhcp, left alone), show on the applied
// line, and a later config's replace them.
func TestApplyIPv4RoutesBesideALease(t *testing.T) {
	_, cli, exe := dhcpNamespaces(t)
	spec, _ := json.Marshal(besideALease)
	second, _ := json.Marshal([]config.Interface{{Name: "vc", DHCP: true, Routes: []config.Route{{To: "10.21.0.0/16", Via: "10.99.0.254"}}}})
	// The first config alone, then both (the second as applied later
	// through the local API).
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(spec))
	if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.50" {
		t.Fatalf("after Apply: %q, error %q; want the lease's 10.99.0.50\n%s", r.IPAfterApply, r.ApplyErr, stderr)
	}
	if got := staticRoutes4(t, cli); got != besideALeaseRoutes {
		t.Errorf("IPv4 routes beside the lease:\n%s\nwant\n%s", got, besideALeaseRoutes)
	}
	wantShown := []string{"10.20.0.0/16 via 10.99.0.254", "198.51.100.0/24 on-link", "203.0.113.0/24 via 192.0.2.1 on-link", "10.30.0.0/16 via 10.99.0.253"}
	if len(r.Applied) != 1 || strings.Join(r.Applied[0].Routes, ", ") != strings.Join(wantShown, ", ") {
		t.Errorf("applied: %+v; want the routes %q", r.Applied, wantShown)
	}
	// The next hop outside the lease's subnet is said: no config check
	// could know it.
	if !strings.Contains(stderr, `msg="route beside the DHCP lease added on-link: its next hop is outside the lease's subnet" iface=vc route="203.0.113.0/24 via 192.0.2.1 on-link" lease=10.99.0.50/24`) ||
		strings.Count(stderr, "route beside the DHCP lease added on-link") != 1 {
		t.Errorf("the on-link route is not said once:\n%s", stderr)
	}
	if got := ipCmd(t, "-n", cli, "-4", "route", "show", "default"); !strings.Contains(got, "default via 10.99.0.1 dev vc proto dhcp") {
		t.Errorf("the lease's default route:\n%s", got)
	}

	r, stderr = runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(spec), "ETOILE_NETTEST_APPLY2="+string(second))
	if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.50" {
		t.Fatalf("after the second config: %q, error %q\n%s", r.IPAfterApply, r.ApplyErr, stderr)
	}
	if got, want := staticRoutes4(t, cli), "10.21.0.0/16 via 10.99.0.254 dev vc metric 50"; got != want {
		t.Errorf("IPv4 routes after the second config:\n%s\nwant\n%s", got, want)
	}
}

// TestIPv4RoutesBesideALeaseFollowIt: the server refuses the lease's
// renewal and gives another address; the old one's going takes every
// IPv4 route through the link (the kernel's doing), and the config's come
// back with the new lease. A route someone deleted comes back at the next
// renewal.
func TestIPv4RoutesBesideALeaseFollowIt(t *testing.T) {
	spec, _ := json.Marshal(besideALease)
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_LEASE=4", "ETOILE_NETTEST_SRV_MOVE=1"}, "ETOILE_NETTEST_APPLY="+string(spec))
	if !waitLog(rt.client, "etoile-test: renewed iface=vc addr=10.99.0.51/24", 15*time.Second) {
		t.Fatalf("no new address:\n%s", rt.client.String())
	}
	if !strings.Contains(rt.client.String(), "etoile-test: renewed iface=vc addr=<nil>") {
		t.Errorf("the refused address was not dropped first:\n%s", rt.client.String())
	}
	if got := waitRoutes4(t, rt.cli, besideALeaseRoutes, 5*time.Second); got != besideALeaseRoutes {
		t.Fatalf("IPv4 routes beside the new lease:\n%s\nwant\n%s\n%s", got, besideALeaseRoutes, rt.client.String())
	}
	onlyAddress(t, rt.cli, "10.99.0.51/24", "10.99.0.1", "after the new lease")

	ipCmd(t, "-n", rt.cli, "route", "del", "10.20.0.0/16", "proto", "static")
	if got := waitRoutes4(t, rt.cli, besideALeaseRoutes, 8*time.Second); got != besideALeaseRoutes {
		t.Errorf("a deleted route did not come back with the renewal:\n%s\nwant\n%s", got, besideALeaseRoutes)
	}
}

// TestIPv4RoutesBesideALateLease: a dhcp: true entry whose server does not
// answer yet is asked again in the background; its IPv4 routes come with
// the lease, when it comes.
func TestIPv4RoutesBesideALateLease(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	spec, _ := json.Marshal(besideALease)
	_, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_DHCP_TIMEOUT=2s", "ETOILE_NETTEST_RETRY=1s",
		"ETOILE_NETTEST_LINGER=20s", "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(spec))
	if !strings.Contains(r.ApplyErr, "asking again in the background") {
		t.Errorf("Apply without a DHCP server: error %q, want it asking again\n%s", r.ApplyErr, stderr.String())
	}
	if got := staticRoutes4(t, cli); got != "" {
		t.Errorf("IPv4 routes without a lease:\n%s", got)
	}
	startServer(t, srv, exe)
	if !waitLog(stderr, "etoile-test: late lease iface=vc addr=10.99.0.50/24", 20*time.Second) {
		t.Fatalf("no late lease:\n%s", stderr.String())
	}
	if got := waitRoutes4(t, cli, besideALeaseRoutes, 5*time.Second); got != besideALeaseRoutes {
		t.Errorf("IPv4 routes beside the late lease:\n%s\nwant\n%s", got, besideALeaseRoutes)
	}
}

// TestIPv4RoutesBesideALeaseGoWithIt: the lease runs out (its server gone)
// on a link that has another address too (a /32 a load balancer put
// there): the config's routes go with the lease, not left to leave from
// the other address, and come back with the next lease.
func TestIPv4RoutesBesideALeaseGoWithIt(t *testing.T) {
	spec, _ := json.Marshal(besideALease)
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_LEASE=4"}, "ETOILE_NETTEST_APPLY="+string(spec), "ETOILE_NETTEST_LINGER=30s")
	if got := waitRoutes4(t, rt.cli, besideALeaseRoutes, 5*time.Second); got != besideALeaseRoutes {
		t.Fatalf("IPv4 routes beside the lease:\n%s\nwant\n%s\n%s", got, besideALeaseRoutes, rt.client.String())
	}
	ipCmd(t, "-n", rt.cli, "addr", "add", "192.0.2.99/32", "dev", "vc")
	rt.stopServer()
	if !waitLog(rt.client, "DHCP lease ran out", 15*time.Second) {
		t.Fatalf("the lease did not run out:\n%s", rt.client.String())
	}
	if got := waitRoutes4(t, rt.cli, "", 5*time.Second); got != "" {
		t.Errorf("IPv4 routes beside a lease that ran out:\n%s", got)
	}
	if addrs := ipCmd(t, "-n", rt.cli, "-4", "addr", "show", "vc"); !strings.Contains(addrs, "192.0.2.99/32") {
		t.Errorf("the other address went too:\n%s", addrs)
	}
	startServer(t, rt.srv, rt.exe, "ETOILE_NETTEST_SRV_LEASE=4")
	if got := waitRoutes4(t, rt.cli, besideALeaseRoutes, 20*time.Second); got != besideALeaseRoutes {
		t.Errorf("IPv4 routes beside the lease that came back:\n%s\nwant\n%s\n%s", got, besideALeaseRoutes, rt.client.String())
	}
}
