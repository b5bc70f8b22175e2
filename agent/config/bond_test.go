package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/schema"
)

// bondOf is a network section of one bond entry, bond0, with the bond's
// fields (members, mode…) and the entry's own after it.
func bondOf(bond, entry string) string {
	return "network: {interfaces: [{name: bond0, bond: {" + bond + "}, " + entry + "}]}\n"
}

// TestBondRejections: each rule of network.interfaces[].bond refuses at
// its field, showing the bad value and saying what to write instead.
func TestBondRejections(t *testing.T) {
	lacp := "members: [eth0, eth1], mode: 802.3ad"
	backup := "members: [eth0, eth1], mode: active-backup"
	var many []string
	for i := range 33 {
		many = append(many, fmt.Sprintf("eth%d", i))
	}
	for _, tc := range []struct {
		name string
		body string // after the header and server
		path string
		want []string // substrings of that field's message
	}{
		// 1. A bond is given by name, never by MAC.
		{"bond without name", "network: {interfaces: [{bond: {" + lacp + "}, dhcp: true}]}\n", "network.interfaces[0].bond", []string{"needs a name", "name: bond0"}},
		{"bond by mac", "network: {interfaces: [{mac: '52:54:00:00:00:01', bond: {" + lacp + "}, dhcp: true}]}\n", "network.interfaces[0].mac", []string{`"52:54:00:00:00:01"`, "no MAC of its own", "write name: bond0 instead of mac", "bond.members"}},
		{"bond by name and mac", "network: {interfaces: [{name: bond0, mac: '52:54:00:00:00:01', bond: {" + lacp + "}, dhcp: true}]}\n", "network.interfaces[0].mac", []string{`"52:54:00:00:00:01"`, `name "bond0"`, "remove mac"}},

		// 2. Members.
		{"no members", bondOf("mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members", []string{"empty", "eth0", "52:54:00:12:34:56"}},
		{"empty members list", bondOf("members: [], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members", []string{"empty"}},
		{"too many members", bondOf("members: ["+strings.Join(many, ", ")+"], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members", []string{"33 members, more than the 32 allowed"}},
		{"member bad MAC", bondOf("members: [eth0, '52:54:00:zz:00:01'], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members[1]", []string{`"52:54:00:zz:00:01"`, "not an Ethernet MAC address", "six hex bytes", "port's name"}},
		{"member long MAC", bondOf("members: ['00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01'], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members[0]", []string{"not an Ethernet MAC address"}},
		{"member multicast MAC", bondOf("members: ['01:00:5e:00:00:01'], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members[0]", []string{`"01:00:5e:00:00:01"`, "multicast", "etoile-agent inventory"}},
		{"member bad name", bondOf("members: [eth0, 'eth/1'], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members[1]", []string{`"eth/1"`, "not a Linux interface name"}},
		{"member empty", bondOf("members: [eth0, ''], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members[1]", []string{"empty", "port's name"}},
		{"member twice", bondOf("members: [eth0, eth1, eth0], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members[2]", []string{`"eth0"`, "network.interfaces[0].bond.members[0]", "each port once"}},
		{"member twice by MAC", bondOf("members: ['52:54:00:AB:00:01', '52:54:00:ab:00:01'], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members[1]", []string{"network.interfaces[0].bond.members[0]"}},
		{"member is the bond", bondOf("members: [eth0, bond0], mode: 802.3ad", "dhcp: true"), "network.interfaces[0].bond.members[1]", []string{`"bond0" is the bond itself`, "list the ports"}},
		{"member in two bonds", "network: {interfaces: [{name: bond0, bond: {" + lacp + "}, dhcp: true}, {name: bond1, bond: {members: [eth2, eth1], mode: active-backup}, dhcp: true}]}\n",
			"network.interfaces[1].bond.members[1]", []string{`"eth1"`, "already a member of bond0 (network.interfaces[0].bond.members[1])", "one bond at most"}},
		{"member in two bonds by MAC", "network: {interfaces: [{name: bond0, bond: {members: ['52:54:00:00:00:01'], mode: active-backup}, dhcp: true}, {name: bond1, bond: {members: ['52:54:00:00:00:0A', '52-54-00-00-00-01'], mode: active-backup}, dhcp: true}]}\n",
			"network.interfaces[1].bond.members[1]", []string{`"52-54-00-00-00-01"`, "bond0"}},
		{"member configured after the bond", "network: {interfaces: [{name: bond0, bond: {" + lacp + "}, dhcp: true}, {name: eth1, addresses: [10.0.0.2/24]}]}\n",
			"network.interfaces[1]", []string{"eth1 is a member of bond0 (network.interfaces[0].bond.members[1])", "no addresses or VLANs of its own", "put them on bond0"}},
		{"member configured before the bond", "network: {interfaces: [{name: eth0, dhcp: true}, {name: bond0, bond: {" + lacp + "}, dhcp: true}]}\n",
			"network.interfaces[0]", []string{"eth0 is a member of bond0 (network.interfaces[1].bond.members[0])", "put them on bond0"}},
		{"VLAN on a member", "network: {interfaces: [{name: bond0, bond: {" + lacp + "}, dhcp: true}, {name: eth0, vlan: 42, addresses: [10.0.0.2/24]}]}\n",
			"network.interfaces[1]", []string{"eth0 is a member of bond0", "put them on bond0 (name: bond0, vlan: 42)"}},
		{"member configured by MAC", "network: {interfaces: [{mac: '52:54:00:00:00:0a', dhcp: true}, {name: bond0, bond: {members: ['52:54:00:00:00:0A', eth1], mode: 802.3ad}, dhcp: true}]}\n",
			"network.interfaces[0]", []string{"52:54:00:00:00:0A is a member of bond0 (network.interfaces[1].bond.members[0])"}},
		{"bond given twice", "network: {interfaces: [{name: bond0, bond: {members: [eth0], mode: active-backup}, dhcp: true}, {name: bond0, vlan: 7, bond: {members: [eth1], mode: active-backup}, dhcp: true}]}\n",
			"network.interfaces[1].bond", []string{"bond0 is already a bond at network.interfaces[0].bond", "give its bond once"}},

		// 3. Mode.
		{"mode missing", bondOf("members: [eth0, eth1]", "dhcp: true"), "network.interfaces[0].bond.mode", []string{"missing", "balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb"}},
		{"mode unknown", bondOf("members: [eth0, eth1], mode: round-robin", "dhcp: true"), "network.interfaces[0].bond.mode", []string{`"round-robin" is not a bonding mode`, "use one of balance-rr"}},
		{"mode misspelt", bondOf("members: [eth0, eth1], mode: 802.3AD", "dhcp: true"), "network.interfaces[0].bond.mode", []string{`"802.3AD"`, `did you mean "802.3ad"`}},
		{"mode lacp", bondOf("members: [eth0, eth1], mode: LACP", "dhcp: true"), "network.interfaces[0].bond.mode", []string{`"LACP"`, "write mode: 802.3ad"}},
		{"mode number", bondOf("members: [eth0, eth1], mode: 1", "dhcp: true"), "network.interfaces[0].bond.mode", []string{`"1"`, "write active-backup"}},
		{"mode number 4", bondOf("members: [eth0, eth1], mode: '4'", "dhcp: true"), "network.interfaces[0].bond.mode", []string{`"4"`, "write 802.3ad"}},
		{"mode number out of range", bondOf("members: [eth0, eth1], mode: 7", "dhcp: true"), "network.interfaces[0].bond.mode", []string{`"7" is not a bonding mode`}},

		// 4. Primary.
		{"primary with 802.3ad", bondOf(lacp+", primary: eth0", "dhcp: true"), "network.interfaces[0].bond.primary", []string{`"eth0"`, "mode 802.3ad", "active-backup, balance-tlb and balance-alb", "remove it"}},
		{"primary with a mode number", bondOf("members: [eth0, eth1], mode: 0, primary: eth0", "dhcp: true"), "network.interfaces[0].bond.primary", []string{"mode balance-rr"}},
		{"primary not a member", bondOf(backup+", primary: eth2", "dhcp: true"), "network.interfaces[0].bond.primary", []string{`"eth2" is not one of the bond's members (eth0, eth1)`, "written as in members"}},
		{"primary spelt otherwise", bondOf("members: ['52:54:00:00:00:0a', eth1], mode: balance-alb, primary: '52:54:00:00:00:0A'", "dhcp: true"), "network.interfaces[0].bond.primary", []string{"not one of the bond's members"}},

		// 5. LACP rate.
		{"lacp_rate without LACP", bondOf(backup+", lacp_rate: fast", "dhcp: true"), "network.interfaces[0].bond.lacp_rate", []string{`"fast"`, "mode active-backup", "802.3ad only"}},
		{"lacp_rate unknown", bondOf(lacp+", lacp_rate: quick", "dhcp: true"), "network.interfaces[0].bond.lacp_rate", []string{`"quick"`, "slow, fast"}},
		{"lacp_rate number", bondOf(lacp+", lacp_rate: 1", "dhcp: true"), "network.interfaces[0].bond.lacp_rate", []string{`"1"`, "write fast"}},

		// 6. Transmit hash policy.
		{"xmit_hash_policy with active-backup", bondOf(backup+", xmit_hash_policy: layer2+3", "dhcp: true"), "network.interfaces[0].bond.xmit_hash_policy", []string{`"layer2+3"`, "mode active-backup", "balance-xor, 802.3ad and balance-tlb"}},
		{"xmit_hash_policy unknown", bondOf(lacp+", xmit_hash_policy: layer34", "dhcp: true"), "network.interfaces[0].bond.xmit_hash_policy", []string{`"layer34"`, "layer2, layer3+4, layer2+3, encap2+3, encap3+4, vlan+srcmac", `did you mean "layer3+4"`}},

		// 7. MII monitoring interval.
		{"miimon too long", bondOf(lacp+", miimon: 20000", "dhcp: true"), "network.interfaces[0].bond.miimon", []string{"20000", "1 to 10000 milliseconds", "leave miimon out"}},
		{"miimon negative", bondOf(lacp+", miimon: -1", "dhcp: true"), "network.interfaces[0].bond.miimon", []string{"-1", "1 to 10000"}},

		// 8. A bond without addresses carries VLANs only: not with a VLAN
		// of its own, and its gateway still needs an address.
		{"bond with a VLAN and no addresses", bondOf(lacp, "vlan: 42"), "network.interfaces[0]", []string{"static without addresses", "VLAN 42 over the bond", "dhcp: true"}},
		{"gateway on a bond without addresses", "network: {interfaces: [{name: bond0, bond: {" + lacp + "}, gateway: 10.0.0.1}, {name: bond0, vlan: 7, dhcp: true}]}\n",
			"network.interfaces[0].gateway", []string{"10.0.0.1", "no address of its family"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRefused(t, header+server+tc.body, tc.path, tc.want)
		})
	}
}

// TestBondOnlyItsOwnErrors: a bond's mistake is reported once, at its
// field, with no echo elsewhere (a bond's MAC is not also "give name or
// mac, not both").
func TestBondOnlyItsOwnErrors(t *testing.T) {
	for body, want := range map[string]string{
		"network: {interfaces: [{name: bond0, mac: '52:54:00:00:00:01', bond: {members: [eth0], mode: active-backup}, dhcp: true}]}\n": "network.interfaces[0].mac",
		"network: {interfaces: [{mac: '52:54:00:00:00:01', bond: {members: [eth0], mode: active-backup}, dhcp: true}]}\n":              "network.interfaces[0].mac",
		bondOf("members: [eth0, bond0], mode: active-backup", "dhcp: true"):                                                            "network.interfaces[0].bond.members[1]",
		bondOf("members: [eth0, eth1], mode: 4, lacp_rate: fast", "dhcp: true"):                                                        "network.interfaces[0].bond.mode", // judged as 802.3ad
	} {
		_, _, err := Check([]byte(header + server + body))
		if es, _ := err.(schema.Errors); findField(err, want) == nil || len(es) != 1 {
			t.Errorf("%s: want one error, at %s; got:\n%v", strings.TrimSpace(body), want, err)
		}
	}
}

func TestBondWarnings(t *testing.T) {
	// A bond with no address and no VLAN on it carries nothing.
	_, w, err := Check([]byte(header + server + bondOf("members: [eth0, eth1], mode: 802.3ad", "mtu: 9000")))
	if err != nil {
		t.Fatalf("a bond that only carries VLANs was refused: %v", err)
	}
	if len(w) != 1 || !strings.HasPrefix(w[0], "network.interfaces[0]: ") || !strings.Contains(w[0], "bond0 has no address and no VLAN on it, so it carries nothing") || !strings.Contains(w[0], "name: bond0, vlan: 100") {
		t.Errorf("warnings %q, want one that bond0 carries nothing", w)
	}
	// A VLAN on it, by the bond's name, before or after it: no warning.
	for _, body := range []string{
		"network: {interfaces: [{name: bond0, bond: {members: [eth0, eth1], mode: 802.3ad}}, {name: bond0, vlan: 100, addresses: [10.0.0.2/24], gateway: 10.0.0.1}]}\n",
		"network: {interfaces: [{name: bond0, vlan: 100, dhcp: true}, {name: bond0, bond: {members: [eth0, eth1], mode: 802.3ad}}]}\n",
	} {
		if _, w, err := Check([]byte(header + server + body)); err != nil || len(w) != 0 {
			t.Errorf("%s: warnings %q, err %v", strings.TrimSpace(body), w, err)
		}
	}
}

// TestBondAccepted: bonds the checks must not refuse, nor warn about.
func TestBondAccepted(t *testing.T) {
	for _, body := range []string{
		// Members by MAC (any case, any of Go's spellings), a VLAN on the
		// bond with static addresses, the untagged bond without any.
		"network: {interfaces: [" +
			"{name: bond0, mtu: 9000, bond: {members: ['52:54:00:00:00:01', '52-54-00-00-00-02'], mode: active-backup, primary: '52:54:00:00:00:01', miimon: 200}}, " +
			"{name: bond0, vlan: 100, addresses: [192.0.2.10/24, '2001:db8::10/64'], gateway: 192.0.2.1, dns: [192.0.2.53]}, " +
			"{name: eth2, dhcp: true}]}\n",
		// Every option of 802.3ad; a second bond; a member named eth0 and
		// an entry found by MAC, which only the node can match.
		"network: {interfaces: [" +
			"{name: bond0, dhcp: true, bond: {members: [eth0, eth1], mode: 802.3ad, lacp_rate: fast, xmit_hash_policy: layer3+4, miimon: 100}}, " +
			"{name: bond1, addresses: [10.0.0.2/24, '2001:db8::2/64'], gateway6: 'fe80::1', bond: {members: [eth2, eth3], mode: balance-tlb, primary: eth3, xmit_hash_policy: encap3+4}}, " +
			"{mac: '52:54:00:00:00:09', vlan: 7, addresses: [10.7.0.2/24]}]}\n",
		// A VLAN given on the bond's own entry; every mode by name.
		bondOf("members: [eth0], mode: balance-rr", "vlan: 42, dhcp: true"),
		bondOf("members: [eth0], mode: balance-xor, xmit_hash_policy: vlan+srcmac", "dhcp: true"),
		bondOf("members: [eth0], mode: broadcast", "dhcp: true"),
		bondOf("members: [eth0], mode: balance-alb, primary: eth0", "dhcp: true"),
		bondOf("members: [eth0, eth1], mode: 802.3ad, lacp_rate: slow, xmit_hash_policy: layer2", "dhcp: true"),
	} {
		if _, w, err := Check([]byte(header + server + body)); err != nil || len(w) != 0 {
			t.Errorf("%s: warnings %q, err %v", strings.TrimSpace(body), w, err)
		}
	}
	// The commented-out bond in the example validates once uncommented.
	doc := exampleWith("    ", "- name: bond0")
	if !strings.Contains(doc, "\n    - name: bond0\n      bond:\n") || !strings.Contains(doc, "\n    - name: bond0\n      vlan: 100\n") {
		t.Fatalf("the example's bond was not found to uncomment:\n%s", doc)
	}
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 {
		t.Fatalf("the example with its bond: warnings %q, err %v", w, err)
	}
	if b := c.Network.Interfaces[2].Bond; b == nil || b.Mode != "802.3ad" || len(b.Members) != 2 {
		t.Errorf("the example's bond decoded as %+v", b)
	}
}

// TestBondNotes: a static bond without a gateway gets the note a static
// interface gets (its members had the boot's DHCP lease); a bond that only
// carries VLANs, or DHCP anywhere, none.
func TestBondNotes(t *testing.T) {
	for _, tc := range []struct {
		body string
		note string // in the one note, "" for none
	}{
		{bondOf("members: [eth0, eth1], mode: 802.3ad", "addresses: [10.0.0.2/24]"), "network.interfaces[0]: static without a gateway, and no interface of this config has one: if a member of bond0 had the machine's default route from DHCP, it goes"},
		{"network: {interfaces: [{name: bond0, bond: {members: [eth0, eth1], mode: 802.3ad}}, {name: bond0, vlan: 100, addresses: [10.0.0.2/24]}]}\n", ""},
		{bondOf("members: [eth0, eth1], mode: 802.3ad", "vlan: 100, addresses: [10.0.0.2/24]"), ""},
		{"network: {interfaces: [{name: bond0, bond: {members: [eth0, eth1], mode: 802.3ad}, addresses: [10.0.0.2/24]}, {name: eth2, dhcp: true}]}\n", ""},
		{bondOf("members: [eth0, eth1], mode: 802.3ad", "addresses: [10.0.0.2/24], gateway: 10.0.0.1"), ""},
	} {
		c, _, err := Check([]byte(header + server + tc.body))
		if err != nil {
			t.Errorf("%s: %v", strings.TrimSpace(tc.body), err)
			continue
		}
		notes := c.Notes()
		if got := len(notes) == 1 && strings.Contains(notes[0], tc.note) && strings.Contains(notes[0], "add gateway"); got != (tc.note != "") || tc.note == "" && len(notes) != 0 {
			t.Errorf("%s: notes %q, want %q", strings.TrimSpace(tc.body), notes, tc.note)
		}
	}
}
