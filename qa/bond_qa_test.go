//go:build qa

package qa

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBondFailsOverToTheOtherPort boots the stand-in image with a machine
// config (served over QEMU's user network, eth0) that bonds two more NICs,
// each cabled to a wire of its own with a DHCP server on it, in
// active-backup with the first as primary, asks DHCP on the bond and puts a
// tagged VLAN on it, with a static route — in an entry listed before the
// bond's. The boot's DHCP
// runs on both ports first (a lease of their own, as a switch's ports give
// before the bond exists); the agent takes them over. The bond's lease comes
// through the primary's wire. When QEMU takes that port's link down, the
// bond moves to the other port, which announces the bond's address there
// (a gratuitous ARP from the bond's MAC, the primary's): the address lives
// on across the failover, and nothing but the bonding driver had to act.
func TestBondFailsOverToTheOtherPort(t *testing.T) {
	t.Parallel()
	out := standinOut(t)
	wireA, wireB := newLateDHCPWire(t), newLateDHCPWire(t)
	wireA.answer.Store(true)
	wireB.answer.Store(true)
	const macA, macB = "52:54:00:77:10:01", "52:54:00:77:10:02"
	yaml := serverConfig + `network:
  interfaces:
    - name: bond0
      vlan: 7
      addresses: [192.168.7.5/24]
      routes:
        - {to: 10.8.0.0/16, via: 192.168.7.1}
    - name: bond0
      bond:
        mode: active-backup
        members: ["` + macA + `", "` + macB + `"]
        primary: "` + macA + `"
      dhcp: true
hosts:
  - {ip: 10.77.0.1, names: [registry.qa.example, registry]}
`
	k := netbootWithConfig(t, out, yaml, "")
	vm := Start(t, Config{QMP: true, Devices: []Device{SeaBIOS{}, k, UserNIC{},
		SilentNIC{Sink: wireA.port(), MAC: macA, ID: "bonda"}, SilentNIC{Sink: wireB.port(), MAC: macB, ID: "bondb"}}})
	bond := vm.WaitFor(regexp.MustCompile(`^etoile: network config applied iface=bond0 addresses=10\.77\.0\.50/24 dhcp=true`), ReadyTimeout)
	vm.Find(regexp.MustCompile(`^etoile: network config applied iface=bond0\.7 addresses=192\.168\.7\.5/24 routes="10\.8\.0\.0/16 via 192\.168\.7\.1"$`), 10*time.Second)
	// The kernel names the NICs in the order they probe: the two members
	// are any two of eth0–eth2.
	added := regexp.MustCompile(`^etoile: bond member added iface=(eth\d) bond=bond0 mode=active-backup$`)
	members := map[string]bool{}
	for _, l := range vm.Lines() {
		if m := added.FindStringSubmatch(l.Text); m != nil {
			members[m[1]] = true
		}
	}
	if len(members) != 2 {
		t.Errorf("bond members added: %v, want two ports", members)
	}
	vm.Find(regexp.MustCompile(`^etoile: hosts written file=/etc/hosts entries="10\.77\.0\.1=registry\.qa\.example\|registry"$`), 10*time.Second)
	vm.Absent(regexp.MustCompile(`^etoile: (warning|error)\b.*bond`), time.Second)
	t.Logf("bond up: %s", bond.Line)
	// The ports' own DHCP, which the boot started, got its lease or was
	// stopped by the takeover (in either order on a loaded machine).
	for _, l := range vm.Lines() {
		if m := regexp.MustCompile(`^etoile: (?:dhcp lease|DHCP stopped) iface=(eth\d) `).FindStringSubmatch(l.Text); m != nil && members[m[1]] {
			t.Logf("boot DHCP on a member: %s", l.Text)
		}
	}
	// The bond's DHCP went through the primary.
	if !drainHas(wireA.log, "REQUEST") {
		t.Errorf("no DHCP request came through the primary's wire")
	}
	drain(wireB.arps)
	if err := vm.QMP("set_link", map[string]any{"name": "bonda", "up": false}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("from=%s sender=10.77.0.50 target=10.77.0.50", macA)
	deadline := time.After(Scale(t, 30*time.Second))
	var seen []string
	for {
		select {
		case a := <-wireB.arps:
			seen = append(seen, a)
			if a == want {
				t.Logf("after the primary's link went down, the other port announced the bond's address: %s", a)
				return
			}
		case <-deadline:
			t.Fatalf("the bond did not move to the other port: no gratuitous ARP %q on its wire within 30 s (ARP seen there: %s)", want, strings.Join(seen, "; "))
		}
	}
}

// drainHas empties c and reports whether a message held sub.
func drainHas(c chan string, sub string) bool {
	found := false
	for {
		select {
		case m := <-c:
			found = found || strings.Contains(m, sub)
		default:
			return found
		}
	}
}

// drain empties c.
func drain(c chan string) { drainHas(c, "") }
