package network

import (
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/vishvananda/netlink"
)

// TestBondWanted: the config's bond options become netlink's, miimon
// defaulting to 100 (the kernel's 0 never notices a dead port), and an
// option left out stays the kernel's to choose (-1).
func TestBondWanted(t *testing.T) {
	b, err := bondWanted("bond0", &config.Bond{Mode: "802.3ad", LACPRate: "fast", XmitHashPolicy: "layer3+4"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "bond0" || b.Mode != netlink.BOND_MODE_802_3AD || b.Miimon != DefaultMIIMon ||
		b.LacpRate != netlink.BOND_LACP_RATE_FAST || b.XmitHashPolicy != netlink.BOND_XMIT_HASH_POLICY_LAYER3_4 {
		t.Errorf("bond %+v", b)
	}
	b, err = bondWanted("bond1", &config.Bond{Mode: "active-backup", MIIMon: 250})
	if err != nil {
		t.Fatal(err)
	}
	if b.Mode != netlink.BOND_MODE_ACTIVE_BACKUP || b.Miimon != 250 || b.LacpRate != -1 || b.XmitHashPolicy != -1 || b.Primary != -1 {
		t.Errorf("bond %+v", b)
	}
	for _, bad := range []config.Bond{{Mode: "lacp"}, {Mode: "802.3ad", LACPRate: "1"}, {Mode: "802.3ad", XmitHashPolicy: "layer4"}} {
		if _, err := bondWanted("bond0", &bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if got := BondModes(); !slices.Equal(got, []string{"balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"}) {
		t.Errorf("BondModes() = %q, want the kernel's order (mode 0 to 6)", got)
	}
	if _, err := bondWanted("bond0", &config.Bond{Mode: "lacp"}); err == nil || !strings.Contains(err.Error(), "802.3ad") {
		t.Errorf("a bad mode's error does not list the modes: %v", err)
	}
}

// TestSameBond: a bond made by an earlier apply is kept only when the
// kernel's options are the config's; the primary counts (the kernel says
// none as 0).
func TestSameBond(t *testing.T) {
	want, err := bondWanted("bond0", &config.Bond{Mode: "active-backup"})
	if err != nil {
		t.Fatal(err)
	}
	have := &netlink.Bond{Mode: netlink.BOND_MODE_ACTIVE_BACKUP, Miimon: 100, LacpRate: netlink.BOND_LACP_RATE_SLOW}
	if !sameBond(have, want) {
		t.Error("the same options read as other options")
	}
	for name, h := range map[string]netlink.Bond{
		"mode":    {Mode: netlink.BOND_MODE_BALANCE_RR, Miimon: 100},
		"miimon":  {Mode: netlink.BOND_MODE_ACTIVE_BACKUP},
		"primary": {Mode: netlink.BOND_MODE_ACTIVE_BACKUP, Miimon: 100, Primary: 3},
	} {
		if sameBond(&h, want) {
			t.Errorf("a bond with another %s reads as the same", name)
		}
	}
	want.Primary = 3
	have.Primary = 3
	if !sameBond(have, want) {
		t.Error("the same primary reads as another")
	}
	lacp, _ := bondWanted("bond0", &config.Bond{Mode: "802.3ad", LACPRate: "fast"})
	if sameBond(&netlink.Bond{Mode: netlink.BOND_MODE_802_3AD, Miimon: 100, LacpRate: netlink.BOND_LACP_RATE_SLOW}, lacp) {
		t.Error("a bond with another lacp_rate reads as the same")
	}
}
