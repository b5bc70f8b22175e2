package main

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
)

// The errors of Kubernetes' ChooseHostInterface
// (k8s.io/apimachinery/pkg/util/net), with which K3s stops when it must
// pick the node's address itself: no default route, or none through an
// interface with a global address.
var (
	errNoDefaultRoute = errors.New(`unable to find suitable network address: no default routes found in "/proc/net/route" or "/proc/net/ipv6_route"`)
	//lint:ignore ST1005 Kubernetes' wording, which log readers match
	errNoRouteAddress = errors.New("unable to find suitable network address: unable to select an IP from default routes.")
)

// checkHostAddress does what K3s does when neither node-ip nor
// advertise-address nor bind-address names the node's address: it takes
// a global address of an interface that carries a default route, IPv4 or
// IPv6, as Kubernetes' ChooseHostInterface reads them from procNet
// (/proc/net), and stops when there is none. addrs lists an interface's
// addresses (nil: the machine's).
func checkHostAddress(o *options, procNet string, addrs func(iface string) ([]net.IP, error)) error {
	for _, k := range []string{"node-ip", "advertise-address", "bind-address"} {
		if len(o.list(k)) > 0 {
			return nil
		}
	}
	if addrs == nil {
		addrs = interfaceAddrs
	}
	// /proc/net/route: Iface Destination Gateway …; every IPv4 route to
	// 0.0.0.0 counts. /proc/net/ipv6_route: dst dst_len src src_len
	// next_hop metric refcnt use flags iface; a route to :: through a
	// gateway counts.
	v4 := defaultRouteIfaces(procNet+"/route", func(f []string) (string, bool) {
		return f[0], len(f) > 2 && f[1] == "00000000"
	})
	v6 := defaultRouteIfaces(procNet+"/ipv6_route", func(f []string) (string, bool) {
		return f[len(f)-1], len(f) >= 10 && f[0] == strings.Repeat("0", 32) && f[4] != strings.Repeat("0", 32)
	})
	if len(v4)+len(v6) == 0 {
		return errNoDefaultRoute
	}
	for _, fam := range []struct {
		ifaces []string
		v4     bool
	}{{v4, true}, {v6, false}} {
		for _, iface := range fam.ifaces {
			ips, err := addrs(iface)
			if err != nil {
				continue
			}
			for _, ip := range ips {
				if ip.IsGlobalUnicast() && (ip.To4() != nil) == fam.v4 {
					return nil
				}
			}
		}
	}
	return errNoRouteAddress
}

// defaultRouteIfaces returns the interfaces of a /proc/net route table's
// default routes, as match finds them in each row's fields.
func defaultRouteIfaces(path string, match func(fields []string) (iface string, ok bool)) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 0 {
			if iface, ok := match(fields); ok {
				out = append(out, iface)
			}
		}
	}
	return out
}

func interfaceAddrs(name string) ([]net.IP, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	as, err := ifc.Addrs()
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}
	return ips, nil
}
