package network

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestNodeNetworks: the networks of a machine's global addresses, IPv4 and
// IPv6, host bits cleared, each once; not the loopback's nor link-local
// ones, nor those of a link that is down. Run in a network namespace of its own (the test binary again,
// under ip netns exec).
func TestNodeNetworks(t *testing.T) {
	if os.Getenv("ETOILE_NODENETWORKS_CHILD") == "1" {
		fmt.Println("NETS=" + strings.Join(NodeNetworks(), " "))
		return
	}
	ns := fmt.Sprintf("etoile-nodenets-%d", os.Getpid())
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "d0", "type", "veth", "peer", "name", "d1"},
		{"link", "set", "d1", "up"},
		{"link", "set", "d0", "up"},
		{"addr", "add", "192.0.2.7/24", "dev", "d0"},
		{"addr", "add", "192.0.2.8/24", "dev", "d0"}, // the same network
		{"addr", "add", "10.1.2.3/8", "dev", "d0"},
		{"addr", "add", "169.254.1.1/16", "dev", "d0"},
		{"addr", "add", "2001:db8:1::5/64", "dev", "d0", "nodad"},
		// A link that is down (kube-proxy's kube-ipvs0, one /32 per Service): not the machine's network.
		{"link", "add", "d2", "type", "veth", "peer", "name", "d3"},
		{"addr", "add", "10.43.0.10/32", "dev", "d2"},
	} {
		ipCmd(t, append([]string{"-n", ns}, args...)...)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestNodeNetworks$")
	cmd.Env = append(os.Environ(), "ETOILE_NODENETWORKS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got []string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "NETS="); ok {
			got = strings.Fields(v)
		}
	}
	slices.Sort(got)
	if want := []string{"10.0.0.0/8", "192.0.2.0/24", "2001:db8:1::/64"}; !slices.Equal(got, want) {
		t.Errorf("NodeNetworks() = %q, want %q\n%s", got, want, out)
	}
}
