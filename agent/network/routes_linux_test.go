package network

import (
	"encoding/json"
	"strings"
	"testing"

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

	// Someone else's route to the network, with the metric this one takes.
	ipCmd(t, "-n", cli, "route", "del", "10.21.0.0/16", "proto", "static")
	ipCmd(t, "-n", cli, "route", "add", "10.21.0.0/16", "via", "10.99.0.250", "dev", "vc", "metric", "50")
	r, stderr = runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(second))
	if !strings.Contains(r.ApplyErr, "a route to 10.21.0.0/16 with metric 50 is there already") || !strings.Contains(r.ApplyErr, "give this route another metric") {
		t.Errorf("a route in the way: error %q\n%s", r.ApplyErr, stderr)
	}
	if got := ipCmd(t, "-n", cli, "-4", "route", "show", "10.21.0.0/16"); !strings.Contains(got, "via 10.99.0.250") {
		t.Errorf("the other route was not left alone:\n%s", got)
	}
}
