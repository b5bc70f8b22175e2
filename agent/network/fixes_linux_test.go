package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/internal/syncbuf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestApplyTwoStaticGateways: two links, each static with a gateway and
// a gateway6, keep a default route each (the kernel keys a default route
// by its metric, not its link: one metric for both made the second replace
// the first). The first listed leads (the lower metric), so the ready
// line's ip= and K3s's node address are the same; a later config that
// lists only the other link makes that one lead, the first keeping its
// routes behind.
func TestApplyTwoStaticGateways(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	silentPort(t, srv, cli)
	both, _ := json.Marshal([]config.Interface{
		{Name: "vc2", Addresses: []string{"10.98.0.7/24", "2001:db8:2::7/64"}, Gateway: "10.98.0.1", Gateway6: "2001:db8:2::1"},
		{Name: "vc", Addresses: []string{"10.99.0.77/24", "2001:db8:1::7/64"}, Gateway: "10.99.0.1", Gateway6: "2001:db8:1::1"},
	})
	routes := func(family string) string {
		return strings.TrimSpace(ipCmd(t, "-n", cli, family, "route", "show", "default"))
	}
	t.Run("both", func(t *testing.T) {
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_DHCP_TIMEOUT=1s",
			"ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(both))
		if r.ApplyErr != "" || r.IPAfterApply != "10.98.0.7" || r.NodeAddrAfterApply != "10.98.0.7" {
			t.Errorf("after Apply: ip=%s, K3s's node address %s, error %q; want 10.98.0.7 (the first listed) for both\n%s",
				r.IPAfterApply, r.NodeAddrAfterApply, r.ApplyErr, stderr)
		}
		if got, want := routes("-4"), "default via 10.98.0.1 dev vc2 proto static metric 50 \ndefault via 10.99.0.1 dev vc proto static metric 51"; got != want {
			t.Errorf("IPv4 default routes:\n%s\nwant\n%s", got, want)
		}
		if got, want := routes("-6"), "default via 2001:db8:2::1 dev vc2 proto static metric 50 pref medium\ndefault via 2001:db8:1::1 dev vc proto static metric 51 pref medium"; got != want {
			t.Errorf("IPv6 default routes:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("then vc alone", func(t *testing.T) {
		vc, _ := json.Marshal([]config.Interface{
			{Name: "vc", Addresses: []string{"10.99.0.77/24", "2001:db8:1::7/64"}, Gateway: "10.99.0.1", Gateway6: "2001:db8:1::1"},
		})
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_DHCP_TIMEOUT=1s",
			"ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(both), "ETOILE_NETTEST_APPLY2="+string(vc))
		if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.77" || r.NodeAddrAfterApply != "10.99.0.77" {
			t.Errorf("after the second config: ip=%s, K3s's node address %s, error %q; want 10.99.0.77 for both\n%s",
				r.IPAfterApply, r.NodeAddrAfterApply, r.ApplyErr, stderr)
		}
		if got, want := routes("-4"), "default via 10.99.0.1 dev vc proto static metric 50 \ndefault via 10.98.0.1 dev vc2 proto static metric 51"; got != want {
			t.Errorf("IPv4 default routes:\n%s\nwant\n%s", got, want)
		}
		if got, want := routes("-6"), "default via 2001:db8:1::1 dev vc proto static metric 50 pref medium\ndefault via 2001:db8:2::1 dev vc2 proto static metric 51 pref medium"; got != want {
			t.Errorf("IPv6 default routes:\n%s\nwant\n%s", got, want)
		}
	})
}

// TestUpClasslessRouteWithHostBits: a DHCP server whose classless static
// routes (option 121) hold a destination with bits past its prefix
// (10.0.15.0/20): the lease is applied, with the route to the network.
func TestUpClasslessRouteWithHostBits(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_CLASSLESS=10.0.15.0/20")
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_DHCP_TIMEOUT=3s", "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.IP != "10.99.0.50" {
		t.Fatalf("client got %+v, want the lease's 10.99.0.50\n%s", r, stderr)
	}
	if routes := ipCmd(t, "-n", cli, "-4", "route", "show", "dev", "vc"); !strings.Contains(routes, "10.0.0.0/20 via 10.99.0.1 proto dhcp") ||
		!strings.Contains(routes, "default via 10.99.0.1 proto dhcp") {
		t.Errorf("vc's routes:\n%s\nwant the default route and 10.0.0.0/20, both via 10.99.0.1", routes)
	}
}

// TestDHCPMTUKeepsIPv6: an interface MTU under 1280 from DHCP would make
// the kernel drop the link's IPv6 addresses: a link that has some (its
// link-local one) gets 1280, with a warning naming the offered MTU; a link
// without any gets the offered one, and raised to 1280 when the machine
// config then gives it IPv6 addresses, which the kernel refuses under it.
func TestDHCPMTUKeepsIPv6(t *testing.T) {
	mtuOf := func(t *testing.T, cli string) string {
		t.Helper()
		return regexp.MustCompile(`mtu \d+`).FindString(ipCmd(t, "-n", cli, "link", "show", "vc"))
	}
	t.Run("link-local address", func(t *testing.T) {
		srv, cli, exe := namespaces(t, false)
		startServer(t, srv, exe, "ETOILE_NETTEST_SRV_MTU=1000")
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir())
		if r.IP != "10.99.0.50" {
			t.Fatalf("client got %+v\n%s", r, stderr)
		}
		if got := mtuOf(t, cli); got != "mtu 1280" {
			t.Errorf("vc has %s, want IPv6's mtu 1280 (DHCP offered 1000)\n%s", got, stderr)
		}
		if !regexp.MustCompile(`msg="DHCP's MTU raised" iface=vc offered=1000 mtu=1280 .*fix=`).MatchString(stderr) {
			t.Errorf("no warning naming the link and the offered MTU:\n%s", stderr)
		}
		if addrs := ipCmd(t, "-n", cli, "-6", "addr", "show", "vc"); !strings.Contains(addrs, "inet6 fe80::") {
			t.Errorf("vc lost its IPv6 link-local address:\n%s", addrs)
		}
	})
	t.Run("the config's IPv6 address", func(t *testing.T) {
		srv, cli, exe := namespaces(t, false)
		ipCmd(t, "-n", cli, "link", "set", "vc", "addrgenmode", "none")
		ipCmd(t, "-n", cli, "-6", "addr", "flush", "dev", "vc")
		startServer(t, srv, exe, "ETOILE_NETTEST_SRV_MTU=1000")
		spec, _ := json.Marshal([]config.Interface{{Name: "vc", DHCP: true, Addresses: []string{"2001:db8::77/64"}}})
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(spec))
		if r.IP != "10.99.0.50" || r.ApplyErr != "" || r.IPAfterApply != "10.99.0.50" {
			t.Fatalf("client got %+v, want the lease kept and the IPv6 address added\n%s", r, stderr)
		}
		if !strings.Contains(stderr, `msg="MTU from DHCP" iface=vc mtu=1000 was=1500`) {
			t.Errorf("without IPv6 addresses the link did not get DHCP's 1000:\n%s", stderr)
		}
		if got := mtuOf(t, cli); got != "mtu 1280" {
			t.Errorf("vc has %s, want IPv6's mtu 1280 for the config's IPv6 address\n%s", got, stderr)
		}
		if addrs := ipCmd(t, "-n", cli, "-6", "addr", "show", "vc"); !strings.Contains(addrs, "inet6 2001:db8::77/64") {
			t.Errorf("vc's IPv6 addresses:\n%s\nwant 2001:db8::77/64", addrs)
		}
	})
}

// TestApplyKeepsTheKernelsRoutes: on a link whose index is 156, a lease's
// metric (100 + the index) is 256, the kernel's for an IPv6 prefix route:
// making the link static removes the lease's routes, not the prefix
// routes of its IPv6 addresses (its link-local one, the config's).
func TestApplyKeepsTheKernelsRoutes(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	ipCmd(t, "-n", cli, "link", "add", "vc2", "index", "156", "type", "veth", "peer", "name", "vs2", "netns", srv)
	ipCmd(t, "-n", srv, "addr", "add", "10.98.0.1/24", "dev", "vs2")
	ipCmd(t, "-n", srv, "link", "set", "vs2", "up")
	cableUp(t, cli, "vc2", srv, "vs2")
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_IFACE=vs2", "ETOILE_NETTEST_SRV_NET=98")
	spec, _ := json.Marshal([]config.Interface{{Name: "vc2", Addresses: []string{"10.98.0.7/24", "2001:db8::7/64"}, Gateway: "10.98.0.1"}})
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc2", "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(spec))
	if r.IP != "10.98.0.50" || r.ApplyErr != "" || r.IPAfterApply != "10.98.0.7" {
		t.Fatalf("client got %+v, want the lease's 10.98.0.50, then 10.98.0.7\n%s", r, stderr)
	}
	routes6 := ipCmd(t, "-n", cli, "-6", "route", "show", "dev", "vc2")
	for _, want := range []string{"2001:db8::/64 proto kernel metric 256", "fe80::/64 proto kernel metric 256"} {
		if !strings.Contains(routes6, want) {
			t.Errorf("vc2's IPv6 routes:\n%s\nwant %s (the kernel's)", routes6, want)
		}
	}
	if got := strings.TrimSpace(ipCmd(t, "-n", cli, "-4", "route", "show", "default")); got != "default via 10.98.0.1 dev vc2 proto static metric 50" {
		t.Errorf("IPv4 default routes:\n%s\nwant the static one alone (the lease's, metric 256, gone)", got)
	}
}

// TestRefusedLeaseLeavesTheMTU: a lease whose route the kernel refuses (a
// router at the subnet's broadcast address) is not used, and the link is
// left as it was: its address, and its MTU, which the lease's option 26
// had changed first.
func TestRefusedLeaseLeavesTheMTU(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_ROUTER=10.99.0.255", "ETOILE_NETTEST_SRV_MTU=1400")
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_DHCP_TIMEOUT=3s", "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.IP != "none" || !strings.Contains(stderr, "adding route <nil> via 10.99.0.255 on vc") {
		t.Fatalf("client got %+v, want no lease, its route refused\n%s", r, stderr)
	}
	if got := regexp.MustCompile(`mtu \d+`).FindString(ipCmd(t, "-n", cli, "link", "show", "vc")); got != "mtu 1500" {
		t.Errorf("vc has %s after its lease was refused, want its own mtu 1500\n%s", got, stderr)
	}
	if !strings.Contains(stderr, `msg="MTU back: the lease could not be applied" iface=vc mtu=1500 was=1400`) {
		t.Errorf("the MTU put back is not logged:\n%s", stderr)
	}
}

// TestWriteFileReplacesAtOnce: resolv.conf and hostname are replaced by a
// rename: the name never goes missing or holds a partial file (a resolver
// reading it meanwhile), as the kernel's file events show; a dangling
// symlink in its place is replaced, the mode is 0644, and no temporary
// file stays.
func TestWriteFileReplacesAtOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	if err := os.Symlink("/run/nowhere/resolv.conf", path); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(path, []byte("nameserver 10.0.0.1\n")); err != nil {
		t.Fatalf("over a dangling symlink: %v", err)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("after the write: %v %v, want a regular file, mode 0644", fi.Mode(), err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_DELETE|unix.IN_MODIFY|unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_ATTRIB); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(path, []byte("nameserver 10.0.0.2\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64*1024)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatalf("no file events: %v", err)
	}
	var events []string
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
		off += unix.SizeofInotifyEvent + int(ev.Len)
		if name != "resolv.conf" {
			continue
		}
		if ev.Mask != unix.IN_MOVED_TO {
			events = append(events, name+" "+map[uint32]string{unix.IN_CREATE: "created", unix.IN_DELETE: "deleted", unix.IN_MODIFY: "written", unix.IN_ATTRIB: "chmod"}[ev.Mask])
		} else {
			events = append(events, name+" renamed over")
		}
	}
	if strings.Join(events, ",") != "resolv.conf renamed over" {
		t.Errorf("resolv.conf's events: %v, want it renamed over only", events)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "nameserver 10.0.0.2\n" {
		t.Errorf("resolv.conf holds %q %v", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v %v, want 0644", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left in the folder: %v", entries)
	}
}

// TestResolvConfWarnsOfSkippedNameServers: a name server left out of
// resolv.conf is warned about once, naming the link, the address, why and
// what to do; written again, it is at debug level.
func TestResolvConfWarnsOfSkippedNameServers(t *testing.T) {
	warned.Clear() // once's record: another run of the test in this process
	log, out := testLog()
	path := filepath.Join(t.TempDir(), "resolv.conf")
	leases := []Lease{{Iface: "eth7", DNS: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)}}}
	for range 2 {
		if err := writeResolvConf(path, leases, log); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(out.String(), `msg="name server not written to resolv.conf" iface=eth7 dns=127.0.0.1 why="is a loopback address`); n != 1 ||
		!strings.Contains(out.String(), "fix=") {
		t.Errorf("warned %d times, want once with why and fix:\n%s", n, out)
	}
	if b, _ := os.ReadFile(path); !strings.HasSuffix(string(b), "\nnameserver 10.0.0.1\n") || strings.Contains(string(b), "127.0.0.1") {
		t.Errorf("resolv.conf:\n%s", b)
	}
}

// TestLeaseTimeWarnedOnce: a lease whose lease time was not the server's
// is warned about once for its link and server, naming them.
func TestLeaseTimeWarnedOnce(t *testing.T) {
	warned.Clear() // once's record: another run of the test in this process
	log, out := testLog()
	l := Lease{Iface: "eth8", Server: net.IPv4(10, 0, 2, 2), Addr: net.IPNet{IP: net.IPv4(10, 0, 2, 15), Mask: net.CIDRMask(24, 32)},
		Lifetime: defaultLease, lifetimeIssue: "gives no lease time (option 51): 1h0m0s is used"}
	noteLease(log, l, nil)
	noteLease(log, l, nil)
	if n := strings.Count(out.String(), `msg="DHCP server's lease time not used" iface=eth8 server=10.0.2.2`); n != 1 ||
		!strings.Contains(out.String(), `why="gives no lease time (option 51): 1h0m0s is used" fix=`) {
		t.Errorf("warned %d times, want once naming the link, the server, why and what to do:\n%s", n, out)
	}
}

// TestReacquireCarrierRestartsTheBackoff: a lost lease is asked for again
// with a growing wait; the carrier's return asks at once, and when that
// try fails (a switch port that does not forward yet) the next wait is the
// first one again, not a longer one.
func TestReacquireCarrierRestartsTheBackoff(t *testing.T) {
	lo := loopback(t)
	out := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tries := make(chan struct{}, 8)
	kick := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lc := &lifecycle{ctx: ctx, l: lo, kick: kick, renewed: func(Lease) {}, lease: Lease{Iface: "lo"}, lost: true,
		cfg: Config{Log: log, Retry: time.Hour, RetryMax: 8 * time.Hour,
			dhcpHook: func(context.Context, netlink.Link) (Lease, error) {
				tries <- struct{}{}
				return Lease{}, errors.New("no DHCP offer (test)")
			}}}
	done := make(chan bool, 1)
	go func() { done <- lc.reacquire() }()
	for i := range 3 {
		<-tries
		waitCount(out, `msg="no DHCP lease yet"`, i+1, 10*time.Second)
		if i < 2 {
			kick <- struct{}{} // the carrier came back
		}
	}
	cancel()
	if <-done {
		t.Error("reacquire reported a lease")
	}
	waits := regexp.MustCompile(`msg="no DHCP lease yet" .*next_in=(\S+)`).FindAllStringSubmatch(out.String(), -1)
	var got []string
	for _, m := range waits {
		got = append(got, m[1])
	}
	if strings.Join(got, ",") != "1h0m0s,1h0m0s,1h0m0s" {
		t.Errorf("waits after each try: %v, want the first (1h) each time the carrier came back\n%s", got, out)
	}
}
