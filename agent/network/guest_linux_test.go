//go:build guest

package network

// The tests in this file run inside a VM, never on the machine that builds
// them: qa's TestGuestNetwork boots the image's own kernel with its
// initramfs (and so its modules) and this package's test binary, built with
// -tags guest, as /init. That is where the bonding driver is (the machines
// running `make test` lack it) and where NICs have permanent MACs (virtio),
// each cabled to a wire of its own whose DHCP server gives 10.77.0.50/24.
//
// As PID 1 the binary (init below) mounts /proc, /sys and /dev, loads
// virtio_net, bonding (max_bonds=0, as the agent loads it) and 8021q with
// agent/kmod, sets lo up and runs the tests in a child process with -test.v:
// the package's TestMain is up_linux_test.go's, and a test that panics then
// fails the run instead of killing init. It prints "etoile-guest: PASS" or
// "etoile-guest: FAIL" last and powers the VM off. Anywhere else the binary
// refuses to run (exit 2): the tests make bonds and move addresses on the
// machine's own NICs.
//
// The kernel arguments etoile_guest.* tell the guest what the QA test set
// up: macs= the NICs' MACs, in the order the tests use them; run= the tests
// to run (-test.run); timeout= the whole run's -test.timeout; scale= the
// factor (ETOILE_QA_TIMEOUT_SCALE) the tests' own waits are multiplied by.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/cmdline"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/kmod"
	"github.com/etoile-os/etoile/agent/sysimage"
	"github.com/etoile-os/etoile/internal/syncbuf"
)

// guestChildEnv marks the child PID 1 runs the tests in.
const guestChildEnv = "ETOILE_GUEST_CHILD"

// The last line PID 1 prints, which qa's TestGuestNetwork waits for.
const (
	guestPass = "etoile-guest: PASS"
	guestFail = "etoile-guest: FAIL"
)

// wireAddr is the address the QA test's DHCP wires give (qa's lateDHCPWire).
const wireAddr = "10.77.0.50/24"

func init() {
	switch {
	case os.Getpid() == 1:
		guestInit() // never returns: the VM powers off
	case os.Getenv(guestChildEnv) == "1" && os.Getppid() == 1:
		// The tests, run by guestInit.
	default:
		fmt.Fprintln(os.Stderr, "etoile-guest: these tests make bonds and move addresses on the machine's own NICs: they run only as /init of the VM that qa's TestGuestNetwork boots (go test -tags qa -run TestGuestNetwork ./qa/), never on this machine")
		os.Exit(2)
	}
}

// guestInit is PID 1: it readies the VM, runs the tests in a child and
// powers off. A setup failure is a FAIL too, never a kernel panic.
func guestInit() {
	verdict := guestFail
	defer func() {
		if r := recover(); r != nil {
			fmt.Printf("etoile-guest: init panicked: %v\n", r)
			verdict = guestFail
		}
		fmt.Println(verdict)
		unix.Sync()
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		for {
			time.Sleep(time.Hour) // PID 1 must not exit: the kernel would panic
		}
	}()
	if err := guestSetup(); err != nil {
		fmt.Printf("etoile-guest: setup failed: %v\n", err)
		return
	}
	run := cmp.Or(guestParam("run"), "^TestGuest")
	timeout := cmp.Or(guestParam("timeout"), "3m")
	exe, err := os.Executable()
	if err != nil {
		exe = "/init"
	}
	cmd := exec.Command(exe, "-test.v=true", "-test.count=1", "-test.run="+run, "-test.timeout="+timeout)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), guestChildEnv+"=1")
	if err := cmd.Run(); err != nil {
		fmt.Printf("etoile-guest: the tests failed: %v\n", err)
		return
	}
	verdict = guestPass
}

// guestSetup mounts the kernel's filesystems, loads the drivers the tests
// need from the image's modules (agent/kmod, as the agent loads them) and
// waits for the NICs the kernel arguments name.
func guestSetup() error {
	for _, m := range []struct{ fs, dir string }{{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.fs, m.dir, err)
		}
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	rel, err := sysimage.KernelRelease("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cold, err := kmod.NewColdplug("/sys", "/lib/modules/"+rel, kmod.SyscallLoader{}, log)
	if err != nil {
		return err
	}
	ctx := context.Background()
	for _, m := range []struct {
		name string
		o    kmod.ProbeOptions
	}{
		{"virtio_pci", kmod.ProbeOptions{}}, // the NICs' bus: virtio_net drives what it finds
		{"virtio_net", kmod.ProbeOptions{}},
		// As the agent loads it: no bond0 of the driver's own.
		{"bonding", kmod.ProbeOptions{Params: "max_bonds=0"}},
		{"8021q", kmod.ProbeOptions{}},
		{"veth", kmod.ProbeOptions{}}, // a NIC that appears later, in TestGuestBondMemberAppearsLater
	} {
		if err := cold.ModprobeWith(ctx, m.name, m.o); err != nil {
			return fmt.Errorf("loading %s: %w", m.name, err)
		}
	}
	fmt.Printf("etoile-guest: modules loaded kernel=%s modules=%s\n", rel, strings.Join(cold.Loaded(0), ","))
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("setting lo up: %w", err)
	}
	macs := guestMACs()
	if len(macs) == 0 {
		return errors.New("no NIC named by etoile_guest.macs= on the kernel command line: the QA test gives the VM's NICs' MACs there")
	}
	deadline := time.Now().Add(guestScale(30 * time.Second))
	for {
		found, missing := guestFind(macs)
		if len(missing) == 0 {
			fmt.Printf("etoile-guest: NICs %s\n", strings.Join(found, " "))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no NIC with MAC %s after %s (%s)", strings.Join(missing, ", "), guestScale(30*time.Second), linkNames())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// guestFind finds the NICs with the MACs given: "name=mac" for those found,
// and the MACs missing.
func guestFind(macs []string) (found, missing []string) {
	for _, m := range macs {
		if l := guestLinkByMAC(m); l != nil {
			found = append(found, l.Attrs().Name+"="+m)
		} else {
			missing = append(missing, m)
		}
	}
	return found, missing
}

// guestLinkByMAC is the NIC whose permanent MAC is mac (nil if none).
func guestLinkByMAC(mac string) netlink.Link {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil
	}
	all, _ := netlink.LinkList()
	for _, l := range all {
		a := l.Attrs()
		if l.Type() == "device" && (slices.Equal(a.PermHWAddr, hw) || len(a.PermHWAddr) == 0 && slices.Equal(a.HardwareAddr, hw)) {
			return l
		}
	}
	return nil
}

// guestParam is the kernel argument etoile_guest.<key>.
func guestParam(key string) string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return ""
	}
	return cmdline.Parse(string(b)).Raw["etoile_guest."+key]
}

func guestMACs() []string {
	var out []string
	for _, m := range strings.Split(guestParam("macs"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, strings.ToLower(m))
		}
	}
	return out
}

// guestScale multiplies d by etoile_guest.scale (the QA test's
// ETOILE_QA_TIMEOUT_SCALE).
func guestScale(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(guestParam("scale"), 64)
	if err != nil || f <= 0 {
		return d
	}
	return time.Duration(float64(d) * f)
}

// guestPort is one of the VM's NICs, each on a wire with a DHCP server.
type guestPort struct{ name, mac string }

// guest is one scenario's view of the VM: its ports, a context that ends
// what the agent started in the background (renewals, the cable watch) when
// the test ends, and the agent's log.
type guest struct {
	t     *testing.T
	ctx   context.Context
	ports []guestPort
	log   *slog.Logger
	logs  *syncbuf.Buffer
}

// newGuest resets the VM's network (no bond, no VLAN, the ports up,
// enslaved to nothing and without addresses) now and when the test ends,
// and returns its first n ports.
func newGuest(t *testing.T, n int) *guest {
	t.Helper()
	macs := guestMACs()
	if len(macs) < n {
		t.Fatalf("the VM has %d NICs (etoile_guest.macs=%q) and this test needs %d: give qa's TestGuestNetwork more", len(macs), guestParam("macs"), n)
	}
	guestReset(t, macs)
	t.Cleanup(func() { guestReset(t, macs) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // runs before the reset: nothing of the agent's is left to undo it
	g := &guest{t: t, ctx: ctx, logs: &syncbuf.Buffer{}}
	g.log = slog.New(slog.NewTextHandler(io.MultiWriter(os.Stdout, g.logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	for _, m := range macs[:n] {
		l := guestLinkByMAC(m)
		if l == nil {
			t.Fatalf("no NIC with MAC %s (%s)", m, linkNames())
		}
		g.ports = append(g.ports, guestPort{name: l.Attrs().Name, mac: m})
	}
	return g
}

// guestReset deletes every bond and VLAN and leaves the NICs with the MACs
// given up, enslaved to nothing, without addresses or the agent's routes.
func guestReset(t *testing.T, macs []string) {
	all, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("listing links: %v", err)
	}
	for _, l := range all {
		if l.Type() == "bond" || l.Type() == "vlan" || l.Type() == "veth" {
			// A veth's peer goes with it: gone already is done.
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				t.Errorf("reset: deleting %s: %v", l.Attrs().Name, err)
			}
		}
	}
	for _, m := range macs {
		l := guestLinkByMAC(m)
		if l == nil {
			t.Fatalf("reset: no NIC with MAC %s (%s)", m, linkNames())
		}
		if l.Attrs().MasterIndex != 0 {
			_ = netlink.LinkSetNoMaster(l)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() {
				continue
			}
			if err := netlink.AddrDel(l, &a); err != nil {
				t.Errorf("reset: removing %s from %s: %v", a.IPNet, l.Attrs().Name, err)
			}
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_ALL)
		for _, r := range routes {
			if r.Protocol == protoDHCP || r.Protocol == protoStatic {
				_ = netlink.RouteDel(&r)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Errorf("reset: setting %s up: %v", l.Attrs().Name, err)
		}
	}
}

// up runs the boot's network step (Up) on the guest's ports, as the agent
// does before it applies the machine config: each port gets its wire's
// lease.
func (g *guest) up() *Result {
	g.t.Helper()
	var names []string
	for _, p := range g.ports {
		names = append(names, p.name)
	}
	res, err := Up(g.ctx, Config{
		Log: g.log, CarrierWait: guestScale(10 * time.Second), CarrierGrace: 200 * time.Millisecond,
		DHCPTimeout: guestScale(10 * time.Second), Renew: true, Only: names,
		SetHostname: func(string) error { return nil },
	})
	if err != nil {
		g.t.Fatalf("Up: %v", err)
	}
	for _, n := range names {
		if !slices.ContainsFunc(res.Leases, func(l Lease) bool { return l.Iface == n && l.Addr.IP != nil }) {
			g.t.Fatalf("Up gave %s no lease (leases: %v): the QA test's wires answer DHCP on every port", n, res.Leases)
		}
	}
	return &res
}

// apply applies a machine config's interfaces (Apply), as the agent does
// after Up and again for each config the local API takes, and logs what
// the kernel has then.
func (g *guest) apply(res *Result, ifaces []config.Interface) ([]Applied, error) {
	g.t.Helper()
	applied, err := Apply(g.ctx, ifaces, res, Config{Log: g.log, DHCPTimeout: guestScale(15 * time.Second), Renew: true})
	g.t.Logf("Apply: applied=%+v err=%v", applied, err)
	g.show()
	return applied, err
}

// show logs the bonds' and the ports' state.
func (g *guest) show() {
	g.t.Helper()
	all, _ := netlink.LinkList()
	for _, l := range all {
		a := l.Attrs()
		if l.Type() != "bond" && !slices.ContainsFunc(g.ports, func(p guestPort) bool { return p.name == a.Name }) {
			continue
		}
		master := "-"
		if a.MasterIndex != 0 {
			master = fmt.Sprint(a.MasterIndex)
			if m, err := netlink.LinkByIndex(a.MasterIndex); err == nil {
				master = m.Attrs().Name
			}
		}
		extra := ""
		if b, ok := l.(*netlink.Bond); ok {
			extra = fmt.Sprintf(" mode=%s primary=%d", b.Mode, b.Primary)
		}
		g.t.Logf("  %s: index=%d up=%t master=%s mac=%s ipv4=%v%s", a.Name, a.Index, a.Flags&net.FlagUp != 0, master, a.HardwareAddr, ipv4s(l), extra)
	}
}

// link is the link named name; the test ends without it.
func (g *guest) link(name string) netlink.Link {
	g.t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		g.t.Fatalf("%s: %v (%s)", name, err, linkNames())
	}
	return l
}

// bond is the bond named name; the test ends without it.
func (g *guest) bond(name string) *netlink.Bond {
	g.t.Helper()
	l := g.link(name)
	b, ok := l.(*netlink.Bond)
	if !ok {
		g.t.Fatalf("%s is a %s, not a bond", name, l.Type())
	}
	return b
}

// wantMembers checks that each port is enslaved to bond, up (IFF_UP), and
// without an IPv4 address of its own.
func (g *guest) wantMembers(bond string, ports ...guestPort) {
	g.t.Helper()
	b := g.link(bond)
	for _, p := range ports {
		l := g.link(p.name)
		a := l.Attrs()
		if a.MasterIndex != b.Attrs().Index {
			g.t.Errorf("%s (%s): master %s, want %s (index %d)", p.name, p.mac, masterName(l), bond, b.Attrs().Index)
		}
		if a.Flags&net.FlagUp == 0 {
			g.t.Errorf("%s (%s), a member of %s, is down (IFF_UP unset): the bond cannot use it", p.name, p.mac, bond)
		}
		if got := ipv4s(l); len(got) > 0 {
			g.t.Errorf("%s, a member of %s, has IPv4 addresses %v: a bond's member carries none", p.name, bond, got)
		}
	}
}

// wantAddr checks that link name has the IPv4 address cidr on it, in the kernel.
func (g *guest) wantAddr(name, cidr string) {
	g.t.Helper()
	if got := ipv4s(g.link(name)); !slices.Contains(got, cidr) {
		g.t.Errorf("%s has IPv4 addresses %v on the link, want %s", name, got, cidr)
	}
}

// wantNoAddr checks that port has none of the addresses (CIDR) on it.
func (g *guest) wantNoAddr(p guestPort, cidrs ...string) {
	g.t.Helper()
	got := ipv4s(g.link(p.name))
	for _, c := range cidrs {
		if slices.Contains(got, c) {
			g.t.Errorf("%s (%s) has %s (IPv4 addresses %v): it must not", p.name, p.mac, c, got)
		}
	}
}

// primary is the active-backup primary the kernel has for bond ("" for none).
func primary(bond string) string {
	b, _ := os.ReadFile(filepath.Join("/sys/class/net", bond, "bonding", "primary"))
	return strings.TrimSpace(string(b))
}

func masterName(l netlink.Link) string {
	m := l.Attrs().MasterIndex
	if m == 0 {
		return "none"
	}
	if ml, err := netlink.LinkByIndex(m); err == nil {
		return ml.Attrs().Name
	}
	return fmt.Sprint(m)
}

func ipv4s(l netlink.Link) []string {
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return out
}

func hasLease(res *Result, iface, cidr string) bool {
	return slices.ContainsFunc(res.Leases, func(l Lease) bool { return l.Iface == iface && l.Addr.String() == cidr })
}

// TestGuestBondSameConfigKept: a machine config applied again unchanged
// (the local API, a restart of the agent's config watch) keeps the bond:
// the same link, its members, and its DHCP lease, whose address is never
// taken off the link meanwhile.
func TestGuestBondSameConfigKept(t *testing.T) {
	g := newGuest(t, 2)
	a, b := g.ports[0], g.ports[1]
	res := g.up()
	ifaces := []config.Interface{{Name: "bond0", DHCP: true, Bond: &config.Bond{Mode: "active-backup", Members: []string{a.name, b.name}}}}
	if _, err := g.apply(res, ifaces); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	first := g.bond("bond0").Attrs().Index
	g.wantMembers("bond0", a, b)
	g.wantAddr("bond0", wireAddr)

	updates, done := make(chan netlink.AddrUpdate, 64), make(chan struct{})
	defer close(done)
	if err := netlink.AddrSubscribe(updates, done); err != nil {
		t.Fatal(err)
	}
	applied, err := g.apply(res, ifaces)
	if err != nil {
		t.Errorf("the same config applied again: %v", err)
	}
	if now := g.bond("bond0").Attrs().Index; now != first {
		t.Errorf("bond0 was made again (index %d, then %d) though its config did not change: its members left it for a moment, and its lease went", first, now)
	}
	g.wantMembers("bond0", a, b)
	g.wantAddr("bond0", wireAddr)
	if len(applied) != 1 || !slices.Contains(applied[0].Addresses, wireAddr) {
		t.Errorf("Apply returned %+v, want bond0 with its lease's %s", applied, wireAddr)
	}
	if !hasLease(res, "bond0", wireAddr) {
		t.Errorf("the Result has no lease %s on bond0 any more: %v", wireAddr, res.Leases)
	}
	quiet := time.After(300 * time.Millisecond) // for the last updates to be read
drain:
	for {
		select {
		case u := <-updates:
			if !u.NewAddr && u.LinkIndex == first && u.LinkAddress.IP.To4() != nil {
				t.Errorf("the second apply took %s off bond0: an unchanged config must keep the lease's address on the link", u.LinkAddress.String())
			}
		case <-quiet:
			break drain
		}
	}
}

// TestGuestBondOptionsChanged: a config that changes the bond's primary,
// then its mode (active-backup to 802.3ad, which the kernel changes only on
// a bond without members: the agent makes it again) leaves both members
// enslaved to the bond there is now, and up; the bond, dhcp: true, has a
// lease's address on the link each time, not only in the Result.
func TestGuestBondOptionsChanged(t *testing.T) {
	g := newGuest(t, 2)
	a, b := g.ports[0], g.ports[1]
	res := g.up()
	bond := &config.Bond{Mode: "active-backup", Members: []string{a.mac, b.mac}, Primary: a.mac}
	ifaces := []config.Interface{{Name: "bond0", DHCP: true, Bond: bond}}
	if _, err := g.apply(res, ifaces); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	g.wantMembers("bond0", a, b)
	g.wantAddr("bond0", wireAddr)
	if p := primary("bond0"); p != a.name {
		t.Errorf("bond0's primary is %q, want %s (%s)", p, a.name, a.mac)
	}

	for _, step := range []struct {
		what   string
		change func()
		check  func()
	}{
		{"primary changed to the other member", func() { bond.Primary = b.mac }, func() {
			if p := primary("bond0"); p != b.name {
				t.Errorf("bond0's primary is %q, want %s (%s)", p, b.name, b.mac)
			}
		}},
		{"mode changed to 802.3ad", func() { bond.Mode, bond.Primary = "802.3ad", "" }, func() {
			if m := g.bond("bond0").Mode; m != netlink.BOND_MODE_802_3AD {
				t.Errorf("bond0's mode is %s, want 802.3ad", m)
			}
		}},
	} {
		t.Logf("=== %s", step.what)
		step.change()
		applied, err := g.apply(res, ifaces)
		if err != nil {
			t.Errorf("%s: %v", step.what, err)
		}
		g.bond("bond0")
		step.check()
		g.wantMembers("bond0", a, b)
		g.wantAddr("bond0", wireAddr)
		if len(applied) != 1 || !slices.Contains(applied[0].Addresses, wireAddr) {
			t.Errorf("%s: Apply returned %+v, want bond0 with a lease's %s", step.what, applied, wireAddr)
		}
		if !hasLease(res, "bond0", wireAddr) {
			t.Errorf("%s: the Result has no lease %s on bond0: %v", step.what, wireAddr, res.Leases)
		}
	}
}

// TestGuestBondMemberDropped: a member the config no longer lists — the
// one whose MAC the bond took — is released: enslaved to nothing, and up.
// The bond keeps its other member and its address, and no longer carries
// the released port's MAC (two ports of one network would share it).
func TestGuestBondMemberDropped(t *testing.T) {
	g := newGuest(t, 2)
	a, b := g.ports[0], g.ports[1]
	res := g.up()
	bond := &config.Bond{Mode: "active-backup", Members: []string{a.name, b.name}}
	ifaces := []config.Interface{{Name: "bond0", Addresses: []string{"10.33.0.1/24"}, Bond: bond}}
	if _, err := g.apply(res, ifaces); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	g.wantMembers("bond0", a, b)
	bond.Members = []string{b.name}
	if _, err := g.apply(res, ifaces); err != nil {
		t.Errorf("the config without %s: %v", a.name, err)
	}
	l := g.link(a.name)
	if m := l.Attrs().MasterIndex; m != 0 {
		t.Errorf("%s, which the config no longer lists, is still enslaved to %s", a.name, masterName(l))
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s, released from bond0, is down (IFF_UP unset): the released port must be up again", a.name)
	}
	g.wantMembers("bond0", b)
	g.wantAddr("bond0", "10.33.0.1/24")
	if mac := g.link("bond0").Attrs().HardwareAddr.String(); mac == a.mac {
		t.Errorf("bond0 kept %s, the MAC of %s, which it released: two ports of the network now share it", mac, a.name)
	}
}

// TestGuestBondDroppedByAnEmptyConfig: a config with no network entries at
// all, after one with a bond (the boot applies it only because the Result
// says it made bonds: Result.HasBonds), removes the bond, and its ports are
// up and free.
func TestGuestBondDroppedByAnEmptyConfig(t *testing.T) {
	g := newGuest(t, 2)
	a, b := g.ports[0], g.ports[1]
	res := g.up()
	if _, err := g.apply(res, []config.Interface{{Name: "bond0", Addresses: []string{"10.34.0.1/24"},
		Bond: &config.Bond{Mode: "active-backup", Members: []string{a.name, b.name}}}}); err != nil {
		t.Fatalf("the config with the bond: %v", err)
	}
	if !res.HasBonds() {
		t.Errorf("the Result does not say a bond was made: a config without network entries would not be applied to remove it")
	}
	if _, err := g.apply(res, nil); err != nil {
		t.Errorf("the empty config: %v", err)
	}
	if _, err := netlink.LinkByName("bond0"); err == nil {
		t.Errorf("bond0 stays after a config without it")
	}
	if res.HasBonds() {
		t.Errorf("the Result still says bonds were made")
	}
	for _, p := range []guestPort{a, b} {
		l := g.link(p.name)
		if l.Attrs().MasterIndex != 0 || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s after the bond went: master %q, up %v; want free and up", p.name, masterName(l), l.Attrs().Flags&net.FlagUp != 0)
		}
	}
}

// TestGuestBondPortGetsNoAddress: an entry that gives addresses to a port
// the bond enslaves (the bond lists it by name, the entry by MAC) is an
// error of Apply naming the port and its bond, and the port gets no
// address. Each member in turn: the one whose MAC the bond took, and the
// other, which now shows the bond's MAC, not its own.
func TestGuestBondPortGetsNoAddress(t *testing.T) {
	for i, what := range []string{"the member whose MAC the bond took", "the other member"} {
		t.Run(fmt.Sprintf("member%d", i+1), func(t *testing.T) {
			g := newGuest(t, 2)
			a, b := g.ports[0], g.ports[1]
			p := g.ports[i]
			t.Logf("the entry names %s: %s (%s)", what, p.name, p.mac)
			res := g.up()
			_, err := g.apply(res, []config.Interface{
				{Name: "bond0", Addresses: []string{"10.44.0.1/24"}, Bond: &config.Bond{Mode: "active-backup", Members: []string{a.name, b.name}}},
				{MAC: p.mac, Addresses: []string{"10.44.0.2/24"}},
			})
			switch {
			case err == nil:
				t.Errorf("Apply gave no error for an entry that gives %s, a member of bond0, an address", p.name)
			case !namesPortAndBond(err, p.name, "bond0"):
				t.Errorf("Apply's error does not name the port %s with its bond bond0: %v", p.name, err)
			}
			g.wantNoAddr(a, "10.44.0.2/24")
			g.wantNoAddr(b, "10.44.0.2/24")
			g.wantMembers("bond0", a, b)
			g.wantAddr("bond0", "10.44.0.1/24")
		})
	}
}

// TestGuestConfigWithoutBond: a config without the bond, after one with
// it, whose entries give the bond's ports addresses (one by name, one by
// MAC) and a third port its own. The bond the earlier config made is
// removed, and each former member is up, free, with its entry's address;
// the third port has its own; Apply says nothing went wrong.
func TestGuestConfigWithoutBond(t *testing.T) {
	g := newGuest(t, 3)
	a, b, c := g.ports[0], g.ports[1], g.ports[2]
	res := g.up()
	if _, err := g.apply(res, []config.Interface{
		{Name: "bond0", Addresses: []string{"10.55.0.1/24"}, Bond: &config.Bond{Mode: "active-backup", Members: []string{a.name, b.mac}}},
	}); err != nil {
		t.Fatalf("the config with the bond: %v", err)
	}
	g.wantMembers("bond0", a, b)
	want := map[string]string{a.name: "10.55.0.2/24", b.name: "10.55.0.3/24"}
	_, err := g.apply(res, []config.Interface{
		{Name: a.name, Addresses: []string{want[a.name]}},
		{MAC: b.mac, Addresses: []string{want[b.name]}},
		{Name: c.name, Addresses: []string{"10.56.0.3/24"}},
	})
	if err != nil {
		t.Errorf("the config without the bond: %v", err)
	}
	g.wantAddr(c.name, "10.56.0.3/24")
	// The bond the earlier config made goes with the config that no
	// longer lists it, and its ports are free for their own entries.
	if _, gone := netlink.LinkByName("bond0"); gone == nil {
		t.Errorf("bond0 stays though the config no longer lists it")
	}
	for _, p := range []guestPort{a, b} {
		l := g.link(p.name)
		if l.Attrs().MasterIndex != 0 {
			t.Errorf("%s is still enslaved to %s", p.name, masterName(l))
			g.wantNoAddr(p, want[a.name], want[b.name])
			continue
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s, no bond's member any more, is down (IFF_UP unset)", p.name)
		}
		g.wantAddr(p.name, want[p.name])
		if err != nil && strings.Contains(linksListed.ReplaceAllString(err.Error(), ""), p.name) {
			t.Errorf("%s is no bond's member and has its address, yet Apply's error names it: %v", p.name, err)
		}
	}
}

// namesPortAndBond reports whether a line of err names both port and bond
// (an error's list of the machine's links, "(links: …)", does not count).
func namesPortAndBond(err error, port, bond string) bool {
	if err == nil {
		return false
	}
	for _, line := range strings.Split(linksListed.ReplaceAllString(err.Error(), ""), "\n") {
		if strings.Contains(line, port) && strings.Contains(line, bond) {
			return true
		}
	}
	return false
}

var linksListed = regexp.MustCompile(`\(links: [^)]*\)`)

// TestGuestBondMemberByMACFoundAgain: members (and the primary) given by
// MAC are found again when the config is applied a second time, though
// the bond gave the second member its own MAC: a NIC's permanent address
// names it. The bond is kept as it is, with both members, and nothing is
// said to be missing.
func TestGuestBondMemberByMACFoundAgain(t *testing.T) {
	g := newGuest(t, 2)
	a, b := g.ports[0], g.ports[1]
	res := g.up()
	ifaces := []config.Interface{{Name: "bond0", Addresses: []string{"10.66.0.1/24"},
		Bond: &config.Bond{Mode: "active-backup", Members: []string{a.mac, b.mac}, Primary: b.mac}}}
	if _, err := g.apply(res, ifaces); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	g.wantMembers("bond0", a, b)
	first := g.bond("bond0").Attrs().Index
	if now := g.link(b.name).Attrs().HardwareAddr.String(); now == b.mac {
		t.Fatalf("%s still shows its own MAC %s once enslaved: this test needs a port that shows the bond's", b.name, now)
	}
	before := len(g.logs.String())
	if _, err := g.apply(res, ifaces); err != nil {
		t.Errorf("the same config applied again: %v", err)
	}
	if now := g.bond("bond0").Attrs().Index; now != first {
		t.Errorf("bond0 was made again (index %d, then %d): its members or primary, given by MAC, were not found again", first, now)
	}
	g.wantMembers("bond0", a, b)
	if p := primary("bond0"); p != b.name {
		t.Errorf("bond0's primary is %q, want %s (%s)", p, b.name, b.mac)
	}
	for _, line := range strings.Split(g.logs.String()[before:], "\n") {
		for _, bad := range []string{"bond is missing members", "bond member released", "bond made again", "level=WARN", "level=ERROR"} {
			if strings.Contains(line, bad) {
				t.Errorf("the second apply of the same config logged: %s", line)
				break
			}
		}
	}
}

// TestGuestBondMemberAppearsLater: a member the config names that is not
// there when the bond is made (a driver that loads late, a NIC plugged in:
// a veth made after the apply stands for it) joins the bond when it
// appears, as its primary when the config says so, with no DHCP or address
// of its own, and again when it goes and comes back; a link that appears
// after a config without it stays apart.
func TestGuestBondMemberAppearsLater(t *testing.T) {
	g := newGuest(t, 1)
	a := g.ports[0]
	res := g.up()
	ifaces := []config.Interface{{Name: "bond0", DHCP: true, Bond: &config.Bond{Mode: "active-backup", Members: []string{a.name, "late0"}, Primary: "late0"}}}
	if _, err := g.apply(res, ifaces); err != nil {
		t.Fatalf("apply: %v", err)
	}
	g.wantMembers("bond0", a)
	g.wantAddr("bond0", wireAddr)
	if !strings.Contains(g.logs.String(), "joins the bond then") {
		t.Errorf("the missing member is not said to join later:\n%s", g.logs.String())
	}
	late := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "late0"}, PeerName: "late0p"}
	if err := netlink.LinkAdd(late); err != nil {
		t.Fatalf("making late0: %v", err)
	}
	deadline := time.Now().Add(guestScale(10 * time.Second))
	for masterName(g.link("late0")) != "bond0" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	g.show()
	g.wantMembers("bond0", a, guestPort{name: "late0"})
	if p := primary("bond0"); p != "late0" {
		t.Errorf("bond0's primary is %q, want late0, which the config names", p)
	}
	if !strings.Contains(g.logs.String(), "bond member appeared: added") {
		t.Errorf("no log line for the member that joined:\n%s", g.logs.String())
	}
	time.Sleep(guestScale(500 * time.Millisecond)) // DHCP would have started by now
	if got := ipv4s(g.link("late0")); len(got) > 0 {
		t.Errorf("late0, a member, got addresses %v", got)
	}
	g.wantAddr("bond0", wireAddr)

	// Unplugged and plugged in again: it joins again.
	if err := netlink.LinkDel(late); err != nil {
		t.Fatal(err)
	}
	time.Sleep(guestScale(300 * time.Millisecond))
	late = &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "late0"}, PeerName: "late0p"}
	if err := netlink.LinkAdd(late); err != nil {
		t.Fatalf("making late0 again: %v", err)
	}
	deadline = time.Now().Add(guestScale(10 * time.Second))
	for masterName(g.link("late0")) != "bond0" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	g.wantMembers("bond0", a, guestPort{name: "late0"})
	if p := primary("bond0"); p != "late0" {
		t.Errorf("after late0 came back, bond0's primary is %q, want late0", p)
	}

	// A config without it: released; one that appears after it stays apart.
	ifaces[0].Bond.Members, ifaces[0].Bond.Primary = []string{a.name, "late1"}, ""
	if _, err := g.apply(res, ifaces); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if m := masterName(g.link("late0")); m != "none" {
		t.Errorf("late0, no longer listed, is still enslaved to %s", m)
	}
	ifaces[0].Bond.Members = []string{a.name}
	if _, err := g.apply(res, ifaces); err != nil {
		t.Fatalf("third apply: %v", err)
	}
	other := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "late1"}, PeerName: "late1p"}
	if err := netlink.LinkAdd(other); err != nil {
		t.Fatalf("making late1: %v", err)
	}
	time.Sleep(guestScale(time.Second))
	if m := masterName(g.link("late1")); m != "none" {
		t.Errorf("late1, which the config applied last does not list, joined %s", m)
	}
}
