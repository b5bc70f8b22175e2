package network

import (
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestTakePending: a link that appears is matched to the bond member the
// config lists by name, or by MAC (its permanent one first, a NIC's only),
// for as long as that config stands; an apply's clearPending forgets them.
func TestTakePending(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	r := &renewals{}
	r.addPending("eth9", "bond0", true)
	r.addPending("52:54:00:aa:bb:cc", "bond1", false)
	if _, ok := r.takePending(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth8"}}); ok {
		t.Error("eth8 taken for a member the config does not name")
	}
	p, ok := r.takePending(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth9"}})
	if !ok || p.bond != "bond0" || !p.primary {
		t.Errorf("eth9: %+v %v", p, ok)
	}
	// A member that goes and comes back (a USB NIC plugged in again)
	// is still the bond's.
	if _, ok := r.takePending(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth9"}}); !ok {
		t.Error("eth9 not a member any more once it joined")
	}
	byPerm := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "enp3s0", HardwareAddr: mac("52:54:00:00:00:01"), PermHWAddr: mac("52:54:00:aa:bb:cc")}}
	if p, ok := r.takePending(byPerm); !ok || p.bond != "bond1" || p.primary {
		t.Errorf("by permanent MAC: %+v %v", p, ok)
	}
	// A VLAN showing the NIC's MAC is not the NIC.
	vlan := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "enp3s0.10", HardwareAddr: mac("52:54:00:aa:bb:cc")}, VlanId: 10}
	if _, ok := r.takePending(vlan); ok {
		t.Error("a VLAN taken for a member named by MAC")
	}
	r.addPending("eth7", "bond0", false)
	r.clearPending()
	if _, ok := r.takePending(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth7"}}); ok {
		t.Error("eth7 taken after clearPending")
	}
}

// TestEntryErrorNamesTheEntryOnEachLine: an entry's error of several lines
// (a bond's members, an entry's routes) names the entry on each, and still
// unwraps to what it holds.
func TestEntryErrorNamesTheEntryOnEachLine(t *testing.T) {
	inner := &partialError{errors.Join(errors.New("bond bond0 member eth9: no interface named eth9"), errors.New("bond bond0 member eth8: no interface named eth8"))}
	err := error(&entryError{2, inner})
	want := "network.interfaces[2]: bond bond0 member eth9: no interface named eth9\nnetwork.interfaces[2]: bond bond0 member eth8: no interface named eth8"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	if !errors.As(err, new(*partialError)) {
		t.Error("the entry's error no longer unwraps to what it wraps")
	}
}
