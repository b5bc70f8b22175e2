package main

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
)

// errNoDefaultRoute is the error of Kubernetes' ChooseHostInterface
// (k8s.io/apimachinery/pkg/util/net), with which K3s stops when it must
// pick the node's address itself and the machine has no default route.
var errNoDefaultRoute = errors.New(`unable to find suitable network address: no default routes found in "/proc/net/route" or "/proc/net/ipv6_route"`)

// checkHostAddress does what K3s does when neither node-ip nor
// advertise-address nor bind-address names the node's address: it takes
// the address of an interface that carries a default route, IPv4 or IPv6,
// and stops when there is none. procNet is /proc/net.
func checkHostAddress(o *options, procNet string) error {
	for _, k := range []string{"node-ip", "advertise-address", "bind-address"} {
		if len(o.list(k)) > 0 {
			return nil
		}
	}
	// /proc/net/route: Iface Destination Gateway Flags … Mask …
	// /proc/net/ipv6_route: dst dst_len src src_len next_hop metric refcnt use flags iface
	if hasDefaultRoute(procNet+"/route", route{iface: 0, dst: 1, flags: 3, mask: 7, zero: "00000000", zeroMask: "00000000"}) ||
		hasDefaultRoute(procNet+"/ipv6_route", route{iface: 9, dst: 0, flags: 8, mask: 1, zero: strings.Repeat("0", 32), zeroMask: "00"}) {
		return nil
	}
	return errNoDefaultRoute
}

// route says where a /proc/net route table's fields are.
type route struct {
	iface, dst, flags, mask int
	zero, zeroMask          string
}

// hasDefaultRoute finds a usable default route in a /proc/net route table:
// destination and mask all zeros, up (RTF_UP), not a reject route
// (RTF_REJECT: the kernel's unreachable IPv6 default), not on the loopback.
func hasDefaultRoute(path string, r route) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) <= max(r.iface, r.dst, r.flags, r.mask) || fields[r.dst] != r.zero || fields[r.mask] != r.zeroMask || fields[r.iface] == "lo" {
			continue
		}
		const rtfUp, rtfReject = 0x1, 0x200
		if flags, err := strconv.ParseUint(fields[r.flags], 16, 32); err == nil && flags&rtfUp != 0 && flags&rtfReject == 0 {
			return true
		}
	}
	return false
}
