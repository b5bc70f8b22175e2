package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Route tables as the kernel writes them (/proc/net/route, ipv6_route).
const (
	v4Header  = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	v4Default = "eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
	v4Subnet  = "eth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
	// The kernel's unreachable IPv6 default (a reject route on lo, no gateway) is no default route.
	v6Reject  = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
	v6Default = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n"
	v6Link    = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
)

func TestCheckHostAddress(t *testing.T) {
	v4Addr := []net.IP{net.ParseIP("10.0.2.15"), net.ParseIP("fe80::1")}
	v6Addr := []net.IP{net.ParseIP("fd00::15"), net.ParseIP("fe80::1")}
	for _, tc := range []struct {
		name, v4, v6 string
		addrs        []net.IP // eth0's
		flags        []string
		want         error
	}{
		{"IPv4 default route", v4Header + v4Subnet + v4Default, v6Reject + v6Link, v4Addr, nil, nil},
		{"IPv6 default route only", v4Header + v4Subnet, v6Reject + v6Default, v6Addr, nil, nil},
		{"no default route", v4Header + v4Subnet, v6Reject + v6Link, v4Addr, nil, errNoDefaultRoute},
		{"no address at all", v4Header, v6Reject, nil, nil, errNoDefaultRoute},
		{"default route, link-local address only", v4Header + v4Default, v6Reject, []net.IP{net.ParseIP("fe80::1")}, nil, errNoRouteAddress},
		{"node-ip given", v4Header, v6Reject, nil, []string{"--node-ip", "10.0.2.15"}, nil},
		{"bind-address given", v4Header, v6Reject, nil, []string{"--bind-address", "10.0.2.15"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "route"), []byte(tc.v4), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "ipv6_route"), []byte(tc.v6), 0o644); err != nil {
				t.Fatal(err)
			}
			o, err := parseOptions("server", tc.flags, dir, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			addrs := func(iface string) ([]net.IP, error) {
				if iface != "eth0" {
					t.Errorf("addresses of %s asked for", iface)
				}
				return tc.addrs, nil
			}
			if err := checkHostAddress(o, dir, addrs); err != tc.want {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}
