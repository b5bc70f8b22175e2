package network

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/internal/syncbuf"
	"github.com/vishvananda/netlink"
)

// loopback is the host's lo, which these tests pass where a link is needed
// and never change: what would change it is refused first, or a hook.
func loopback(t *testing.T) netlink.Link {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatalf("no loopback link to stand for a NIC (the test needs lo): %v", err)
	}
	return lo
}

func testLog() (*slog.Logger, *syncbuf.Buffer) {
	b := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// TestApplyRefusesANonContiguousMask: the netlink library indexes an empty
// broadcast address for such a mask (a panic); apply refuses it before, and
// so does dropOld when it would delete it.
func TestApplyRefusesANonContiguousMask(t *testing.T) {
	lo := loopback(t)
	bad := Lease{Iface: "lo", Addr: net.IPNet{IP: net.IPv4(10, 77, 0, 5).To4(), Mask: net.IPv4Mask(255, 0, 255, 0)}}
	err := apply(lo, bad, 0)
	if err == nil || !strings.Contains(err.Error(), "subnet mask 255.0.255.0 is not contiguous") {
		t.Errorf("apply = %v, want the mask refused", err)
	}
	dropOld(lo, bad, Lease{}, 0) // must not panic
}

// TestRetryDHCPCrashLeavesTheLockUsable: a panic while a lease asked for
// again is applied (under the renewals' lock) is logged with where it
// happened, and the lock is free after: AllLeases (the status, the ready
// line, resolv.conf, the clock's NTP servers) does not block for ever.
func TestRetryDHCPCrashLeavesTheLockUsable(t *testing.T) {
	lo := loopback(t)
	log, out := testLog()
	r := &renewals{}
	lease := Lease{Iface: "lo", Addr: net.IPNet{IP: net.IPv4(10, 77, 0, 5).To4(), Mask: net.CIDRMask(24, 32)}}
	cfg := Config{Log: log, Retry: 10 * time.Millisecond, RetryMax: 10 * time.Millisecond,
		dhcpHook:  func(context.Context, netlink.Link) (Lease, error) { return lease, nil },
		applyHook: func(netlink.Link, Lease, int) error { panic("applying crashed") },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.retryDHCP(ctx, lo, lateMetric+1, cfg)
	var done <-chan struct{}
	locked(&r.mu, func() { done = r.m["lo"].done })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the retry did not end after the crash")
	}
	got := make(chan []Lease, 1)
	go func() { got <- Result{renew: r}.AllLeases() }()
	select {
	case l := <-got:
		if len(l) != 0 {
			t.Errorf("AllLeases = %v after a lease that was not applied", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AllLeases blocks: the renewals' lock was left held by the crash")
	}
	waitLog(out, "crashed", 5*time.Second)
	if s := out.String(); !strings.Contains(s, `level=ERROR msg="DHCP on lo crashed" reason="applying crashed"`) ||
		!strings.Contains(s, "network.TestRetryDHCPCrashLeavesTheLockUsable") {
		t.Errorf("the crash is not logged with where it happened:\n%s", s)
	}
}

// TestLateLeaseCallbackCrashIsLogged: OnLateLease (the boot's resolv.conf
// and K3s's address news) runs in retryDHCP's goroutine; a panic there is
// logged, not PID 1's end.
func TestLateLeaseCallbackCrashIsLogged(t *testing.T) {
	lo := loopback(t)
	log, out := testLog()
	r := &renewals{}
	lease := Lease{Iface: "lo", Addr: net.IPNet{IP: net.IPv4(10, 77, 0, 5).To4(), Mask: net.CIDRMask(24, 32)}}
	cfg := Config{Log: log, Retry: 10 * time.Millisecond,
		dhcpHook:    func(context.Context, netlink.Link) (Lease, error) { return lease, nil },
		applyHook:   func(netlink.Link, Lease, int) error { return nil },
		OnLateLease: func(Lease) { panic("late lease news crashed") },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.retryDHCP(ctx, lo, lateMetric+1, cfg)
	if !waitLog(out, "crashed", 10*time.Second) {
		t.Fatalf("no crash logged:\n%s", out)
	}
	if s := out.String(); !strings.Contains(s, `level=ERROR msg="asking DHCP again on lo crashed" reason="late lease news crashed"`) {
		t.Errorf("log:\n%s", s)
	}
	if l := r.lateLeases(); len(l) != 1 || !l[0].Addr.IP.Equal(lease.Addr.IP) {
		t.Errorf("late leases %v, want the lease applied before the news crashed", l)
	}
}

// TestRenewedCallbackCrashIsLogged: OnRenewed runs in a goroutine of its
// own (a lost lease here); a panic there is logged, not PID 1's end.
func TestRenewedCallbackCrashIsLogged(t *testing.T) {
	lo := loopback(t)
	log, out := testLog()
	lc := &lifecycle{ctx: context.Background(), l: lo, renewed: func(Lease) {}, lease: Lease{Iface: "lo"},
		cfg: Config{Log: log, OnRenewed: func(Lease) { panic("renewal news crashed") }}}
	lc.lose("lease lost (test)", nil)
	if !waitLog(out, "crashed", 10*time.Second) {
		t.Fatalf("no crash logged:\n%s", out)
	}
	if s := out.String(); !strings.Contains(s, `level=ERROR msg="following a lost DHCP lease crashed" reason="renewal news crashed"`) {
		t.Errorf("log:\n%s", s)
	}
}
