package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/network"
	"github.com/etoile-os/etoile/agent/sysimage"
)

// serveBackend serves b on a fresh socket for the test.
func serveBackend(t *testing.T, b api.Backend) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, sock, b, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("the API socket never accepted a connection")
		}
	}
}

// k3sDownAgent applies configs, but K3s does not start again with them;
// and it refuses reboots, as an agent already shutting down does.
type k3sDownAgent struct{ *testAgent }

func (a k3sDownAgent) ApplyConfig(ctx context.Context, data []byte) ([]string, error) {
	w, err := a.testAgent.ApplyConfig(ctx, data)
	if err != nil {
		return w, err
	}
	return w, fmt.Errorf("%w: writing K3s config: no space left on device", api.ErrK3sNotStarted)
}

func (a k3sDownAgent) Power(string) error {
	return fmt.Errorf("already shutting down (reboot asked first): %w", api.ErrShuttingDown)
}

// TestConfigApplyWhenK3sDoesNotStart: the config is applied, but the
// command does not say all went well: it names what happened and fails.
func TestConfigApplyWhenK3sDoesNotStart(t *testing.T) {
	a := k3sDownAgent{&testAgent{agent: logring.New(10), k3s: logring.New(10)}}
	sock := serveBackend(t, a)
	file := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(file, config.Example(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"config", "apply", "--socket", sock, file}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "applied (the node runs it now), but K3s did not start again") {
		t.Errorf("err = %v", err)
	}
	if strings.Contains(out.String(), "K3s restarts with it") {
		t.Errorf("stdout says all went well: %q", out.String())
	}
	if !strings.Contains(errb.String(), "error: the config is applied, but K3s did not start with it: writing K3s config: no space left on device") {
		t.Errorf("stderr %q does not say why", errb.String())
	}
	if code := exitCode(err); code != exitFailed {
		t.Errorf("exit status %d, want %d", code, exitFailed)
	}
	if a.applied == nil {
		t.Error("the config was not applied")
	}
}

// TestExitStatuses: a usage mistake, an agent that is not there, a
// refusal and a failure each have their own exit status, as the usage says.
func TestExitStatuses(t *testing.T) {
	_, sock := serveAgent(t)
	refusing := serveBackend(t, k3sDownAgent{&testAgent{agent: logring.New(10), k3s: logring.New(10)}})
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: boss\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	none := filepath.Join(dir, "none.sock")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"status", "extra"}, exitUsage},
		{[]string{"logs", "-n", "0", "--socket", sock}, exitUsage},
		{[]string{"status", "--socket", none}, exitUnreachable},
		{[]string{"logs", "--socket", none}, exitUnreachable},
		{[]string{"reboot", "--socket", none}, exitUnreachable},
		{[]string{"config", "apply", "--socket", sock, bad}, exitRefused},
		{[]string{"config", "validate", bad}, exitRefused},
		{[]string{"reboot", "--socket", refusing}, exitRefused},
		{[]string{"config", "apply", "--socket", sock, filepath.Join(dir, "missing.yaml")}, exitFailed},
		{[]string{"status", "--socket", sock}, 0},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errb)
		if got := exitCode(err); got != tc.want {
			t.Errorf("%q: exit status %d (err %v), want %d", tc.args, got, err, tc.want)
		}
	}
	var out bytes.Buffer
	usage(&out)
	for _, want := range []string{"Exit status: 0 done; 1 failed", "2 usage mistake", "3 no agent answers", "4 refused"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the usage does not say %q:\n%s", want, out.String())
		}
	}
}

// TestStatusListsEveryLink: every physical link is in the status, with its
// carrier and its addresses or none; virtual links only when they hold a
// lease (a VLAN).
func TestStatusListsEveryLink(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"eth0/device/.keep": "", "eth0/address": "52:54:00:00:00:01\n", "eth0/carrier": "1\n",
		"eth1/device/.keep": "", "eth1/address": "52:54:00:00:00:02\n", "eth1/carrier": "0\n",
		"eth2/device/.keep": "", "eth2/address": "52:54:00:00:00:03\n", // down: carrier unreadable
		"lo/address": "00:00:00:00:00:00\n", "lo/carrier": "1\n",
		"eth0.42/address": "52:54:00:00:00:01\n", "eth0.42/carrier": "1\n",
	})
	addrs := map[string][]string{"eth0": {"10.0.0.5/24", "2001:db8::5/64"}}
	_, vlanNet, _ := net.ParseCIDR("192.0.2.0/24")
	vlanNet.IP = net.ParseIP("192.0.2.7").To4()
	leases := []network.Lease{{Iface: "eth0.42", Addr: *vlanNet}}
	got := links(root, func(name string) []string { return addrs[name] }, leases)
	want := []api.Interface{
		{Name: "eth0", MAC: "52:54:00:00:00:01", Carrier: true, Addresses: []string{"10.0.0.5/24", "2001:db8::5/64"}},
		{Name: "eth0.42", MAC: "52:54:00:00:00:01", Carrier: true, Addresses: []string{"192.0.2.7/24"}},
		{Name: "eth1", MAC: "52:54:00:00:00:02", Carrier: false, Addresses: []string{}},
		{Name: "eth2", MAC: "52:54:00:00:00:03", Carrier: false, Addresses: []string{}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("links:\n got %+v\nwant %+v", got, want)
	}
	var b bytes.Buffer
	if err := api.WriteStatus(&b, api.Status{Network: got}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "eth1       52:54:00:00:00:02 no carrier no address") {
		t.Errorf("status text:\n%s", b.String())
	}
}

// TestStatusShowsBonds: a bond is listed (it has no device folder) with its
// mode, members and the member in use; each member names its bond.
func TestStatusShowsBonds(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"eth0/device/.keep": "", "eth0/address": "52:54:00:00:00:01\n", "eth0/carrier": "1\n",
		"eth1/device/.keep": "", "eth1/address": "52:54:00:00:00:01\n", "eth1/carrier": "0\n",
		"eth1/bonding_slave/perm_hwaddr": "52:54:00:00:00:02\n",
		"bond0/address":                  "52:54:00:00:00:01\n", "bond0/carrier": "1\n",
		"bond0/bonding/mode": "active-backup 1\n", "bond0/bonding/slaves": "eth0 eth1\n", "bond0/bonding/active_slave": "eth0\n",
		"bond1/address": "52:54:00:00:00:09\n", "bond1/carrier": "0\n",
		"bond1/bonding/mode": "802.3ad 4\n", "bond1/bonding/slaves": "\n", "bond1/bonding/active_slave": "\n",
	})
	for _, m := range []string{"eth0", "eth1"} {
		if err := os.Symlink("../bond0", filepath.Join(root, m, "master")); err != nil {
			t.Fatal(err)
		}
	}
	addrs := map[string][]string{"bond0": {"10.0.0.5/24"}}
	got := links(root, func(name string) []string { return addrs[name] }, nil)
	want := []api.Interface{
		{Name: "bond0", MAC: "52:54:00:00:00:01", Carrier: true, Addresses: []string{"10.0.0.5/24"},
			Bond: &api.Bond{Mode: "active-backup", Members: []string{"eth0", "eth1"}, Active: "eth0"}},
		{Name: "bond1", MAC: "52:54:00:00:00:09", Addresses: []string{}, Bond: &api.Bond{Mode: "802.3ad", Members: []string{}}},
		{Name: "eth0", MAC: "52:54:00:00:00:01", Carrier: true, Addresses: []string{}, Master: "bond0"},
		{Name: "eth1", MAC: "52:54:00:00:00:02", Addresses: []string{}, Master: "bond0"}, // its own, not the bond's
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("links:\n got %s\nwant %s", gj, wj)
	}
	var b bytes.Buffer
	if err := api.WriteStatus(&b, api.Status{Network: got}); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"bond0      52:54:00:00:00:01 carrier [10.0.0.5/24] bond active-backup members eth0,eth1 active eth0\n",
		"bond1      52:54:00:00:00:09 no carrier no address bond 802.3ad with no member\n",
		"eth1       52:54:00:00:00:02 no carrier no address in bond0\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("status text lacks %q:\n%s", line, b.String())
		}
	}
}

// TestGoRecoveredShowsAPanic: a panic in a goroutine PID 1 starts is an
// `etoile: error` line, and the process goes on.
func TestGoRecoveredShowsAPanic(t *testing.T) {
	lines := make(chan string, 1)
	goRecovered(func(l string) { lines <- l }, "syslog server", func() { panic("boom") })
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, `etoile: error: syslog server crashed reason="boom" stack="`) {
			t.Errorf("line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no line for the panic")
	}
}

// TestNetbootStatePartition: with no boot disk (netboot), an ETOILE-STATE
// partition is used only when it is the only one, and said; with several,
// none is, and the warning names them (once, though asked again).
func TestNetbootStatePartition(t *testing.T) {
	var out bytes.Buffer
	told := &toldOnce{log: slog.New(slog.NewTextHandler(&out, nil))}
	one := []sysimage.BlockDev{{Name: "sdb3", Path: "/dev/sdb3", Disk: "sdb", Partition: true}}
	if d, err := pickPartition(one, config.StateLabel, "", told); err != nil || d.Name != "sdb3" || !strings.Contains(out.String(), "using the only partition") {
		t.Errorf("one partition: %v, %v; console %q", d, err, out.String())
	}
	out.Reset()
	two := append(one, sysimage.BlockDev{Name: "sda3", Path: "/dev/sda3", Disk: "sda", Partition: true})
	for range 2 {
		if d, err := pickPartition(two, config.StateLabel, "", told); err == nil || !errors.Is(err, config.ErrNotFound) {
			t.Errorf("two partitions: %v, %v; want none", d, err)
		}
	}
	if strings.Count(out.String(), "none is used") != 1 || !strings.Contains(out.String(), "/dev/sdb3,/dev/sda3") {
		t.Errorf("console %q: want one warning naming both", out.String())
	}
	// With a boot disk, its own, and nothing said.
	out.Reset()
	if d, err := pickPartition(two, config.StateLabel, "sda", told); err != nil || d.Name != "sda3" || out.Len() != 0 {
		t.Errorf("boot disk sda: %v, %v; console %q", d, err, out.String())
	}
}
