package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/boot"
	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/network"
	"github.com/etoile-os/etoile/agent/sysimage"
)

// TestStatusListsAStaticVLAN: a VLAN link the machine config gave a static
// address (eth0.42: no device in sysfs, no DHCP lease, named in the network
// result's links) is in `status --json` and `status` with its address; the
// virtual links the network step did not configure (lo, K3s's cni0) are not.
func TestStatusListsAStaticVLAN(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"sys/class/net/eth0/device/vendor": "0x1af4\n",
		"sys/class/net/eth0/address":       "52:54:00:00:00:01\n",
		"sys/class/net/eth0/carrier":       "1\n",
		"sys/class/net/eth0.42/address":    "52:54:00:00:00:01\n",
		"sys/class/net/eth0.42/carrier":    "1\n",
		"sys/class/net/cni0/address":       "aa:bb:cc:00:00:01\n",
		"sys/class/net/cni0/carrier":       "1\n",
		"sys/class/net/lo/address":         "00:00:00:00:00:00\n",
		"sys/class/net/lo/carrier":         "1\n",
	})
	addrs := map[string][]string{"eth0.42": {"192.168.42.5/24"}, "cni0": {"10.42.0.1/24"}, "lo": {"127.0.0.1/8"}}
	m := &boot.Machine{Source: sysimage.SourceDisk, Slot: "a", Network: &network.Result{Links: []string{"eth0", "eth0.42"}}}
	sock := serveBackend(t, statusOnly{
		testAgent: &testAgent{agent: logring.New(10), k3s: logring.New(10)},
		status: func() api.Status {
			return machineStatusAt(root, m, "edge-1", "a", func(name string) []string { return addrs[name] })
		},
	})

	out := runStatusCommand(t, sock, true)
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json printed no JSON: %v\n%s", err, out)
	}
	links, _ := json.Marshal(st.Network)
	want := `[{"name":"eth0","mac":"52:54:00:00:00:01","carrier":true,"addresses":[]},` +
		`{"name":"eth0.42","mac":"52:54:00:00:00:01","carrier":true,"addresses":["192.168.42.5/24"]}]`
	if string(links) != want {
		t.Errorf("status --json network:\n got %s\nwant %s", links, want)
	}
	text := runStatusCommand(t, sock, false)
	if !strings.Contains(text, "\n  net:     eth0.42    52:54:00:00:00:01 carrier [192.168.42.5/24]\n") {
		t.Errorf("status does not list eth0.42 with its address:\n%s", text)
	}
	for _, not := range []string{"cni0", " lo "} {
		if strings.Contains(text, not) {
			t.Errorf("status lists %q, a link the network step did not configure:\n%s", not, text)
		}
	}
}
