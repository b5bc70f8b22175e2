package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/agent/inventory"
	"github.com/etoile-os/etoile/agent/k3s"
	"github.com/etoile-os/etoile/agent/kmsg"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/timesync"
	"github.com/etoile-os/etoile/internal/syncbuf"
)

// standinNotice is logged by every test that runs the K3s stand-in, so that
// its output never passes for K3s's (issue 3).
const standinNotice = "K3s STAND-IN (qa/k3sstandin, a test double of K3s's command line), NOT K3s: the k3s states and files here are the stand-in's, results are not K3s's"

// buildStandin compiles the K3s stand-in (a test double of K3s, not K3s)
// into root/usr/local/bin/k3s, and says in the test's output that the test
// uses it.
func buildStandin(t *testing.T, root string) {
	t.Helper()
	t.Log(standinNotice)
	bin := filepath.Join(root, "usr/local/bin/k3s")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", bin, "github.com/etoile-os/etoile/qa/k3sstandin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the K3s stand-in: %v\n%s", err, out)
	}
}

type consoleLines struct {
	mu    sync.Mutex
	lines []string
}

func (c *consoleLines) add(l string) { c.mu.Lock(); c.lines = append(c.lines, l); c.mu.Unlock() }
func (c *consoleLines) has(sub string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
func (c *consoleLines) count(sub string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}
func (c *consoleLines) all() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

func configVolume(t *testing.T, root, yaml string) string {
	t.Helper()
	vol := filepath.Join(root, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "config.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return vol
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStandinK3sFromConfigVolumeReachesReady(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	vol := configVolume(t, root, `apiVersion: etoile.io/v1alpha1
kind: MachineConfig
hostname: edge-1
role: server
cluster: {init: true}
k3s:
  https-listen-port: 0
`)
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{
		Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Broadcast: con.add, ReadyLine: func() string { return "etoile: ready version=t boot=bios source=iso slot=none ip=none" },
		K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}, NodeName: "ignored",
		Socket: filepath.Join(root, "agent.sock"),
	})
	waitUntil(t, "k3s=ready", 60*time.Second, func() bool { return n.K3sState() == "ready" })
	waitUntil(t, "the ready line with k3s=ready", 5*time.Second, func() bool { return con.has("source=iso slot=none ip=none k3s=ready") })
	if !con.has("etoile: k3s state=ready was=running") && !con.has("etoile: k3s state=ready was=starting") {
		t.Errorf("no state change line:\n%s", con.all())
	}
	cfg, err := os.ReadFile(filepath.Join(root, "etc/rancher/k3s/config.yaml"))
	if err != nil || !strings.Contains(string(cfg), "cluster-init: \"true\"") || !strings.Contains(string(cfg), "node-name: \"edge-1\"") {
		t.Errorf("K3s config.yaml: %v\n%s", err, cfg)
	}
	// The inventory is collected once K3s has started, in the background.
	var st api.Status
	waitUntil(t, "the status with the inventory", 30*time.Second, func() bool {
		var err error
		st, err = api.NewClient(filepath.Join(root, "agent.sock")).Status(ctx)
		return err == nil && len(st.Inventory) > 0
	})
	if st.K3s.State != "ready" || !strings.Contains(st.Config, "ETOILE-CFG") || len(st.Inventory) == 0 {
		t.Errorf("status over the local API: k3s=%+v config=%q inventory=%d bytes", st.K3s, st.Config, len(st.Inventory))
	}
	cancel()
	n.Wait()
	if n.K3sState() != "stopped" {
		t.Errorf("after shutdown k3s=%s, want stopped", n.K3sState())
	}
}

// TestK3sFollowsTheNodeAddress: K3s (the stand-in) took 10.0.0.5 as its
// node address; a renewal gives the machine 10.0.0.9. A server on an
// external datastore is restarted and ready again; a lost lease restarts
// nothing, nor does an address that is the one K3s has. A config naming
// node-ip or flannel-iface keeps K3s as it is; so does a server with
// embedded etcd (cluster init), whose etcd member cannot change its
// address: the status says so, also after K3s started again meanwhile,
// until the address comes back.
func TestK3sFollowsTheNodeAddress(t *testing.T) {
	const head = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\n"
	const external = "cluster: {server: \"https://10.0.0.1:6443\", token: K10abc::server:secret}\nk3s:\n  https-listen-port: 0\n  datastore-endpoint: \"postgres://k3s:pw@db.site.test:5432/k3s\"\n"
	for _, tc := range []struct{ name, yaml string }{
		{"external datastore", head + external},
		{"node-ip", head + external + "  node-ip: 10.0.0.5\n"},
		{"flannel-iface", head + external + "  flannel-iface: eth1\n"},
		{"embedded etcd", head + "cluster: {init: true}\nk3s:\n  https-listen-port: 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			buildStandin(t, root)
			vol := configVolume(t, root, tc.yaml)
			var addr atomic.Value
			addr.Store("10.0.0.5")
			var con consoleLines
			ctx, cancel := context.WithCancel(context.Background())
			n := Start(ctx, Env{
				Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
				Broadcast: con.add, K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root},
				NodeAddress: func() string { return addr.Load().(string) },
				Socket:      filepath.Join(root, "agent.sock"),
			})
			defer n.Wait()
			defer cancel()
			k3sStatus := func() k3s.Status {
				n.mu.Lock()
				sup := n.sup
				n.mu.Unlock()
				return sup.Status()
			}
			waitUntil(t, "k3s=ready", 60*time.Second, func() bool { return n.K3sState() == "ready" })
			addr.Store("10.0.0.9")
			n.AddressChanged("eth0", "10.0.0.9/24")
			restart := "restarting: the node's address changed from 10.0.0.5 to 10.0.0.9 (eth0)"
			if tc.name != "external datastore" {
				time.Sleep(2 * time.Second)
				if con.has(restart) || k3sStatus().Restarts != 0 {
					t.Fatalf("K3s was restarted:\n%s", con.all())
				}
				warned := slices.ContainsFunc(n.Status(ctx).Warnings, func(w string) bool {
					return strings.Contains(w, "the node's address changed from 10.0.0.5 to 10.0.0.9 (eth0), but K3s keeps 10.0.0.5: its embedded etcd member")
				})
				if warned != (tc.name == "embedded etcd") {
					t.Errorf("the status's warnings: %q", n.Status(ctx).Warnings)
				}
				if tc.name == "embedded etcd" {
					// K3s started again meanwhile (a crash, say): the etcd
					// member still has its address, the warning stays.
					n.mu.Lock()
					sup := n.sup
					n.mu.Unlock()
					sup.Restart("a test")
					waitUntil(t, "K3s started again", 30*time.Second, func() bool { return k3sStatus().Restarts == 1 })
					waitUntil(t, "k3s=ready again", 60*time.Second, func() bool { return n.K3sState() == "ready" })
					if w := n.Status(ctx).Warnings; len(w) != 1 || !strings.Contains(w[0], "but K3s keeps 10.0.0.5") {
						t.Errorf("warnings after K3s started again: %q", w)
					}
				}
				// The address back: the warning goes.
				addr.Store("10.0.0.5")
				n.AddressChanged("eth0", "10.0.0.5/24")
				if w := n.Status(ctx).Warnings; len(w) != 0 {
					t.Errorf("warnings once the address came back: %q", w)
				}
				return
			}
			waitUntil(t, "the restart", 30*time.Second, func() bool { return con.has(restart) })
			waitUntil(t, "k3s=ready again", 60*time.Second, func() bool {
				return n.K3sState() == "ready" && k3sStatus().Restarts == 1
			})
			// The lease lost, then the same address again: nothing to do.
			addr.Store("")
			n.AddressChanged("eth0", "")
			addr.Store("10.0.0.9")
			n.AddressChanged("eth0", "10.0.0.9/24")
			time.Sleep(2 * time.Second)
			if st := k3sStatus(); st.Restarts != 1 || st.State != "ready" {
				t.Errorf("after the lease was lost and came again: %+v, want one restart and ready\n%s", st, con.all())
			}
		})
	}
}

func TestInvalidConfigIsShownAndK3sNotStarted(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	vol := configVolume(t, root, `apiVersion: etoile.io/v1alpha1
kind: MachineConfig
role: server
cluster: {init: true}
network:
  interfaces:
    - {name: eth0, vlan: 5000}
`)
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Broadcast: con.add, Socket: filepath.Join(root, "agent.sock")})
	if !con.has("etoile: error step=config") || !con.has("network.interfaces[0].vlan") || !con.has("5000") {
		t.Errorf("console does not show the field error:\n%s", con.all())
	}
	if n.K3sState() != "stopped" {
		t.Errorf("k3s state = %s, want stopped", n.K3sState())
	}
	if _, err := os.Stat(filepath.Join(root, "etc/rancher/k3s/config.yaml")); err == nil {
		t.Error("K3s config written from an invalid machine config")
	}
	// The API still answers, and a corrected config starts K3s.
	c := api.NewClient(filepath.Join(root, "agent.sock"))
	waitUntil(t, "the local API", 5*time.Second, func() bool { _, err := c.Status(ctx); return err == nil })
	res, err := c.ValidateConfig(ctx, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\n"))
	if err != nil || res.Valid || len(res.Errors) == 0 {
		t.Errorf("validate over the API: %+v %v", res, err)
	}
	cancel()
	n.Wait()
}

// TestCorrectedConfigIsTakenFromItsSource: a node whose config is invalid
// shows the errors once (not at every read), and takes the config once it
// is corrected where it came from, with no reboot and no API call.
func TestCorrectedConfigIsTakenFromItsSource(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	bad := "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\n" // no cluster
	vol := configVolume(t, root, bad)
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Broadcast: con.add, ReadyLine: func() string { return "etoile: ready version=t" }, ConfigRetry: 20 * time.Millisecond,
		K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}, Socket: filepath.Join(root, "agent.sock")})
	if !con.has("etoile: error step=config") || !con.has("read again every 20ms") || !con.has("waiting for a machine config") {
		t.Fatalf("console:\n%s", con.all())
	}
	time.Sleep(300 * time.Millisecond) // many reads of the same invalid config
	if got := strings.Count(con.all(), "etoile: error step=config"); got != 1 || n.K3sState() != "stopped" {
		t.Fatalf("%d error lines for one invalid config (want 1), k3s=%s:\n%s", got, n.K3sState(), con.all())
	}
	// Another invalid version is shown too.
	configVolume(t, root, bad+"hostname: -bad-\n")
	waitUntil(t, "the second invalid config's error", 10*time.Second, func() bool { return con.has("hostname") })
	configVolume(t, root, bad+"hostname: edge-2\ncluster: {init: true}\nk3s:\n  https-listen-port: 0\n")
	waitUntil(t, "k3s=ready from the corrected config", 60*time.Second, func() bool { return n.K3sState() == "ready" })
	st := n.Status(ctx)
	if !strings.Contains(st.Config, "ETOILE-CFG") || st.K3s.State != "ready" {
		t.Errorf("status: config from %q, k3s %+v", st.Config, st.K3s)
	}
	if cfg, err := os.ReadFile(filepath.Join(root, "etc/rancher/k3s/config.yaml")); err != nil || !strings.Contains(string(cfg), `node-name: "edge-2"`) {
		t.Errorf("K3s config.yaml: %v\n%s", err, cfg)
	}
	// The watch has ended: a config changed now is not taken (only an apply
	// or the next boot changes a running node's config).
	configVolume(t, root, bad+"hostname: edge-3\ncluster: {init: true}\n")
	time.Sleep(300 * time.Millisecond)
	if st := n.Status(ctx); st.K3s.Restarts != 0 || con.has("edge-3") {
		t.Errorf("a config changed after one was taken restarted K3s: %+v", st.K3s)
	}
	cancel()
	n.Wait()
}

// TestConfigPluggedInLater: a node booted with no config takes one from a
// volume that shows up later (a USB stick plugged in), and a source that
// fails (a download) is shown once, not at every read.
func TestConfigPluggedInLater(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	var vol swappableSource
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, ConfigVolume: vol.get,
		Broadcast: con.add, ConfigRetry: 20 * time.Millisecond, Socket: filepath.Join(root, "agent.sock"),
		K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}})
	if n.K3sState() != "stopped" || !con.has("waiting for a machine config") {
		t.Fatalf("k3s=%s console:\n%s", n.K3sState(), con.all())
	}
	vol.set(&failingSource{})
	waitUntil(t, "the failing source's error", 10*time.Second, func() bool { return con.has("stick unreadable") })
	time.Sleep(200 * time.Millisecond)
	// Its wording changes from read to read (as a network error's port
	// does): still the same source failing, shown once.
	if got := strings.Count(con.all(), "stick unreadable"); got != 1 {
		t.Errorf("the same source's failure shown %d times:\n%s", got, con.all())
	}
	if st := n.Status(ctx); !strings.Contains(st.K3s.Reason, "stick unreadable") {
		t.Errorf("status while the stick fails: %+v", st.K3s)
	}
	// Pulled out: the status no longer names it.
	vol.set(nil)
	waitUntil(t, "the status without the stick", 10*time.Second, func() bool {
		st := n.Status(ctx)
		return st.Config == "none" && strings.Contains(st.K3s.Reason, "no machine config")
	})
	vol.set(fileSource{"USB stick ETOILE-CFG", "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: late-1\nrole: server\ncluster: {init: true}\ntime: {disabled: true}\nk3s:\n  https-listen-port: 0\n"})
	waitUntil(t, "the plugged-in config", 10*time.Second, func() bool { return n.Status(ctx).Config == "USB stick ETOILE-CFG" })
	waitUntil(t, "k3s=ready from the plugged-in config", 60*time.Second, func() bool { return n.K3sState() == "ready" })
	if cfg, err := os.ReadFile(filepath.Join(root, "etc/rancher/k3s/config.yaml")); err != nil || !strings.Contains(string(cfg), `node-name: "late-1"`) {
		t.Errorf("K3s config.yaml: %v\n%s", err, cfg)
	}
	cancel()
	n.Wait()
}

// TestApplyThroughTheAPIEndsTheWatch: a config applied through the local API
// while the node waits for one is the node's; the watch does not replace it
// with what its source later holds.
func TestApplyThroughTheAPIEndsTheWatch(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	var vol swappableSource
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, ConfigVolume: vol.get,
		ConfigRetry: 20 * time.Millisecond, K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}, Socket: filepath.Join(root, "agent.sock")})
	if _, err := n.ApplyConfig(ctx, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: api-1\nrole: server\ncluster: {init: true}\nk3s:\n  https-listen-port: 0\n")); err != nil {
		t.Fatal(err)
	}
	vol.set(fileSource{"volume", "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: vol-1\nrole: server\ncluster: {init: true}\n"})
	time.Sleep(300 * time.Millisecond)
	if st := n.Status(ctx); st.Config != "local API" {
		t.Errorf("config from %q after an apply, want the local API's", st.Config)
	}
	if rc, err := n.Config(); err != nil || rc.From != "local API" || !strings.Contains(rc.YAML, "hostname: api-1") {
		t.Errorf("running config = %+v, %v", rc, err)
	}
	cancel()
	n.Wait()
}

// swappableSource is a config volume a test plugs in, swaps and pulls out.
type swappableSource struct {
	mu  sync.Mutex
	src config.Source
}

func (v *swappableSource) get() config.Source  { v.mu.Lock(); defer v.mu.Unlock(); return v.src }
func (v *swappableSource) set(s config.Source) { v.mu.Lock(); v.src = s; v.mu.Unlock() }

type failingSource struct{ reads atomic.Int32 }

func (*failingSource) Name() string { return "USB stick" }
func (f *failingSource) Read(context.Context) ([]byte, error) {
	return nil, fmt.Errorf("USB stick unreadable: I/O error at sector %d", f.reads.Add(1))
}

func TestNoConfigLeavesK3sStopped(t *testing.T) {
	root := t.TempDir()
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, Broadcast: con.add, BootMedia: []string{filepath.Join(root, "media")},
		Socket: filepath.Join(root, "agent.sock")})
	if n.K3sState() != "stopped" || con.has("error") {
		t.Errorf("state %s, console:\n%s", n.K3sState(), con.all())
	}
	st := n.Status(ctx)
	if st.Config != "none" || !strings.Contains(st.K3s.Reason, "no machine config") {
		t.Errorf("status = %+v", st)
	}
	if _, err := n.Config(); err == nil || !strings.Contains(err.Error(), "runs no machine config (no machine config found") {
		t.Errorf("running config without one: %v", err)
	}
	if err := n.Power("reboot"); err == nil || !strings.Contains(err.Error(), "not PID 1") {
		t.Errorf("reboot from an agent that does not run the machine: %v", err)
	}
	// As PID 1: a request the machine could not carry out is not one
	// under way (a later one is tried); the first carried out, a second
	// refused.
	n.env.Power = func(string) error { return errors.New("reboot(2): operation not permitted") }
	if err := n.Power("reboot"); err == nil || errors.Is(err, api.ErrShuttingDown) {
		t.Errorf("a failed reboot: %v, want its own error, not a refusal", err)
	}
	var asked []string
	n.env.Power = func(a string) error { asked = append(asked, a); return nil }
	if err := n.Power("reboot"); err != nil {
		t.Fatal(err)
	}
	if err := n.Power("poweroff"); err == nil || !strings.Contains(err.Error(), "already shutting down (reboot asked first)") || !errors.Is(err, api.ErrShuttingDown) {
		t.Errorf("a second request: %v", err)
	}
	if strings.Join(asked, ",") != "reboot" {
		t.Errorf("the machine was asked %q", asked)
	}
	cancel()
	n.Wait()
}

// TestConfigFromStatePartition: with no other source, the config saved on
// the STATE partition of an installed machine is used, and the partition
// is mounted only then.
func TestConfigFromStatePartition(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	if err := os.MkdirAll(filepath.Join(state, "etoile"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, config.StateFile), []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: from-state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mounts := 0
	n := &Node{env: Env{Root: root, BootMedia: []string{filepath.Join(root, "media")},
		State: func() (string, error) { mounts++; return state, nil }}}
	data, from, err := n.findConfig(context.Background())
	if err != nil || !strings.Contains(string(data), "from-state") || !strings.Contains(from, "state partition") {
		t.Fatalf("findConfig = %q from %q, %v", data, from, err)
	}
	// A config on the boot medium comes first: the state partition is not mounted.
	media := filepath.Join(root, "media")
	os.MkdirAll(filepath.Join(media, "etoile"), 0o755)
	os.WriteFile(filepath.Join(media, config.BootMediumFile), []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n"), 0o600)
	mounts = 0
	if _, from, err := n.findConfig(context.Background()); err != nil || !strings.HasPrefix(from, "boot medium") || mounts != 0 {
		t.Errorf("with a config on the boot medium: from %q, %v, state mounted %d times", from, err, mounts)
	}
	// No STATE partition is "not found"; one that cannot be mounted is an error naming it.
	os.RemoveAll(media)
	n.env.State = func() (string, error) { return "", fmt.Errorf("%w: no partition", config.ErrNotFound) }
	if _, _, err := n.findConfig(context.Background()); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("no state partition: %v, want ErrNotFound", err)
	}
	n.env.State = func() (string, error) { return "", errors.New("wrong fs type, bad superblock") }
	if _, _, err := n.findConfig(context.Background()); err == nil || errors.Is(err, config.ErrNotFound) || !strings.Contains(err.Error(), "ETOILE-STATE") {
		t.Errorf("unmountable state partition: %v", err)
	}
}

// TestConfigVolumeFoundByBoot: where the boot found and mounted the
// ETOILE-CFG volume (Env.ConfigVolume), it is read first; "" means there is
// none and the next source is read.
func TestConfigVolumeFoundByBoot(t *testing.T) {
	root := t.TempDir()
	vol := filepath.Join(root, "cfg")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, config.VolumeFile), []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: from-volume\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &Node{env: Env{Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		ESP: fileSource{"boot medium (EFI system partition)", "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: from-esp\n"}}}
	data, from, err := n.findConfig(context.Background())
	if err != nil || !strings.Contains(string(data), "from-volume") || !strings.Contains(from, "ETOILE-CFG") {
		t.Fatalf("findConfig = %q from %q, %v", data, from, err)
	}
	n.env.ConfigVolume = func() config.Source { return nil }
	data, from, err = n.findConfig(context.Background())
	if err != nil || !strings.Contains(string(data), "from-esp") || from != "boot medium (EFI system partition)" {
		t.Fatalf("no volume: findConfig = %q from %q, %v", data, from, err)
	}
}

// fileSource is a config source holding data.
type fileSource struct{ name, data string }

func (s fileSource) Name() string                         { return s.name }
func (s fileSource) Read(context.Context) ([]byte, error) { return []byte(s.data), nil }

// TestLogsAgentAndK3s: /v1/logs's sources on a node: the agent's own log
// (the default source), K3s's (empty before it runs), the kernel's (empty
// where it cannot be read), and an unknown one.
func TestLogsAgentAndK3s(t *testing.T) {
	ring := logring.New(100)
	for _, l := range []string{"etoile: step=mount-api t=0.10s", "etoile: step=cmdline t=0.11s", "etoile: ready version=dev"} {
		ring.Add(l)
	}
	n := &Node{env: Env{AgentLogs: ring.Since}}
	for _, src := range []string{"agent", ""} {
		got, err := n.Logs(src, 2, 0)
		if err != nil || strings.Join(got.Lines, "|") != "etoile: step=cmdline t=0.11s|etoile: ready version=dev" || got.Next != 3 || got.Skipped != 0 {
			t.Errorf("Logs(%q, 2, 0) = %+v, %v; want the last two agent lines, next 3", src, got, err)
		}
	}
	// Following: only what came after, and lines over the count are counted
	// as skipped rather than dropped silently.
	for i := range 5 {
		ring.Add(fmt.Sprintf("line %d", i))
	}
	got, err := n.Logs("agent", 3, 3)
	if err != nil || strings.Join(got.Lines, "|") != "line 2|line 3|line 4" || got.Next != 8 || got.Skipped != 2 {
		t.Errorf("Logs(agent, 3, after 3) = %+v, %v", got, err)
	}
	if got, err := n.Logs("agent", 3, 8); err != nil || len(got.Lines) != 0 || got.Next != 8 {
		t.Errorf("Logs with nothing new = %+v, %v", got, err)
	}
	if got, err := n.Logs("k3s", 10, 0); err != nil || len(got.Lines) != 0 {
		t.Errorf("Logs(k3s) before K3s ran = %+v, %v", got, err)
	}
	if got, err := n.Logs("kernel", 10, 0); err != nil || len(got.Lines) != 0 {
		t.Errorf("Logs(kernel) without a kernel log to read = %+v, %v", got, err)
	}
	if got, err := n.Logs("syslog", 10, 0); err != nil || len(got.Lines) != 0 {
		t.Errorf("Logs(syslog) with nothing listening on /dev/log = %+v, %v", got, err)
	}
	daemons := logring.New(10)
	daemons.Add("2026-11-26T19:05:08.000Z daemon.warning nvidia-persistenced[412]: x")
	n.env.SyslogLogs = daemons.Since
	if got, err := n.Logs("syslog", 10, 0); err != nil || len(got.Lines) != 1 || !strings.HasSuffix(got.Lines[0], "nvidia-persistenced[412]: x") {
		t.Errorf("Logs(syslog) = %+v, %v", got, err)
	}
	if _, err := n.Logs("messages", 10, 0); err == nil || !strings.Contains(err.Error(), "use agent, k3s, kernel or syslog") {
		t.Errorf("Logs(messages) = %v", err)
	}
}

// standinProcesses counts the running processes whose program is the
// stand-in at bin.
func standinProcesses(t *testing.T, bin string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			n++
		}
	}
	return n
}

// TestConcurrentAppliesRunOneK3s: configs applied through the local API at
// once leave one K3s (stand-in) running: each apply stops the K3s before
// it, which says why, and no supervisor is left behind.
func TestConcurrentAppliesRunOneK3s(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); time.Sleep(100 * time.Millisecond) }()
	n := Start(ctx, Env{Root: root, Broadcast: con.add, K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root},
		NodeName: "edge-1", Socket: filepath.Join(root, "agent.sock")})
	if n.K3sState() != "stopped" {
		t.Fatalf("k3s=%s without a config", n.K3sState())
	}
	cfg := []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true}\nk3s: {https-listen-port: 0}\n")
	var wg sync.WaitGroup
	const applies = 6
	errs := make(chan error, applies)
	for range applies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := n.ApplyConfig(ctx, cfg)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("ApplyConfig: %v", err)
		}
	}
	bin := filepath.Join(root, "usr/local/bin/k3s")
	waitUntil(t, "k3s running", 30*time.Second, func() bool { return n.K3sState() == "running" || n.K3sState() == "ready" })
	time.Sleep(500 * time.Millisecond)
	if got := standinProcesses(t, bin); got != 1 {
		t.Errorf("%d K3s stand-in processes after %d applies, want 1\n%s", got, applies, con.all())
	}
	if got := strings.Count(con.all(), `reason="stopped to start again with the config applied through the local API"`); got != applies-1 {
		t.Errorf("%d K3s stops say they were replaced, want %d (one per apply after the first):\n%s", got, applies-1, con.all())
	}
	cancel()
	n.Wait()
}

func TestRegisteredNodeWarnings(t *testing.T) {
	parse := func(body string) *config.MachineConfig {
		t.Helper()
		c, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true}\n" + body))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	prev := parse("site: lyon\nlabels: {rack: r1, zone: z1}\ntaints: [gpu=true:NoSchedule]\n")
	if w := registeredNodeWarnings(prev, parse("site: lyon\nlabels: {rack: r2, zone: z1}\ntaints: [gpu=true:NoSchedule]\n"), "edge-1", "edge-1"); len(w) != 0 {
		t.Errorf("a changed label value and the same taints: %q, want nothing (K3s updates labels)", w)
	}
	w := registeredNodeWarnings(prev, parse("labels: {zone: z1}\n"), "edge-1", "edge-1")
	if len(w) != 2 || !strings.Contains(w[0], "taints") || !strings.Contains(w[1], "etoile.io/site, rack") {
		t.Errorf("warnings %q, want the taints and the removed labels rack and etoile.io/site", w)
	}
	if w := registeredNodeWarnings(nil, prev, "", "edge-1"); w != nil {
		t.Errorf("first config: %q", w)
	}
}

// TestRegisteredNodeWarningsIdentity: what makes K3s register a second
// Node, or what K3s's data fixes (a server's role and cluster, the token,
// the cluster's networks), is warned about with what to do.
func TestRegisteredNodeWarningsIdentity(t *testing.T) {
	parse := func(doc string) *config.MachineConfig {
		t.Helper()
		c, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n" + doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	server := parse("role: server\ncluster: {init: true, token: old-token}\nk3s: {cluster-cidr: 10.42.0.0/16}\n")
	for _, tc := range []struct {
		name               string
		next               *config.MachineConfig
		prevName, nextName string
		want               []string
	}{
		{"hostname", server, "edge-1", "edge-2", []string{"hostname: the node's name changes from edge-1 to edge-2", "kubectl delete node edge-1"}},
		{"server to agent", parse("role: agent\ncluster: {server: 'https://cp:6443', token: old-token}\n"), "edge-1", "edge-1",
			[]string{"role: this server becomes an agent", "remove the node from its cluster first"}},
		{"init to server", parse("role: server\ncluster: {server: 'https://cp:6443', token: old-token}\nk3s: {cluster-cidr: 10.42.0.0/16}\n"), "edge-1", "edge-1",
			[]string{"cluster: this server started its own cluster (init) and is now told to join another"}},
		{"token", parse("role: server\ncluster: {init: true, token: new-token}\nk3s: {cluster-cidr: 10.42.0.0/16}\n"), "edge-1", "edge-1",
			[]string{"cluster.token: the token changes", "Node password rejected", "k3s token rotate"}},
		{"cluster-cidr", parse("role: server\ncluster: {init: true, token: old-token}\nk3s: {cluster-cidr: 10.50.0.0/16}\n"), "edge-1", "edge-1",
			[]string{"k3s.cluster-cidr: changes from 10.42.0.0/16 to 10.50.0.0/16", "rebuilding the cluster"}},
		{"flannel-backend", parse("role: server\ncluster: {init: true, token: old-token}\nk3s: {cluster-cidr: 10.42.0.0/16, flannel-backend: wireguard-native}\n"), "edge-1", "edge-1",
			[]string{"k3s.flannel-backend: changes from K3s's default to wireguard-native"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := strings.Join(registeredNodeWarnings(server, tc.next, tc.prevName, tc.nextName), "\n")
			for _, want := range tc.want {
				if !strings.Contains(w, want) {
					t.Errorf("missing %q in:\n%s", want, w)
				}
			}
			if strings.Contains(w, "old-token") || strings.Contains(w, "new-token") {
				t.Errorf("a warning shows the token:\n%s", w)
			}
		})
	}
	if w := registeredNodeWarnings(server, server, "edge-1", "edge-1"); len(w) != 0 {
		t.Errorf("the same config again: %q", w)
	}
}

func TestMachineIdentity(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"sys/class/dmi/id/product_uuid":    "4C4C4544-0042-3510-8052-B7C04F565032\n",
		"sys/class/net/eth1/address":       "52:54:00:00:00:99\n",
		"sys/class/net/eth1/device/vendor": "0x8086\n",
		"sys/class/net/eth0/address":       "52:54:00:00:00:10\n",
		"sys/class/net/eth0/device/vendor": "0x8086\n",
		"sys/class/net/br0/address":        "02:00:00:00:00:01\n", // virtual: no device
		"sys/class/net/lo/address":         "00:00:00:00:00:00\n",
	})
	if got := machineIdentity(root); got != "4c4c4544-0042-3510-8052-b7c04f565032" {
		t.Errorf("machineIdentity = %q, want the SMBIOS UUID", got)
	}
	// A placeholder UUID: the lowest permanent MAC (not a random one).
	fakeroot.Write(t, root, map[string]string{
		"sys/class/dmi/id/product_uuid":       "03000200-0400-0500-0006-000700080009\n",
		"sys/class/net/eth0/addr_assign_type": "0\n",
		"sys/class/net/eth1/addr_assign_type": "0\n",
		"sys/class/net/eth2/address":          "02:11:22:33:44:55\n",
		"sys/class/net/eth2/device/vendor":    "0x8086\n",
		"sys/class/net/eth2/addr_assign_type": "1\n",
	})
	if got := machineIdentity(root); got != "52:54:00:00:00:10" {
		t.Errorf("machineIdentity = %q, want the lowest permanent MAC", got)
	}
	// Bonded: eth0 and eth1 show the bond's address (eth1's, stolen):
	// their own, kept by the bond, still name the machine.
	fakeroot.Write(t, root, map[string]string{
		"sys/class/net/eth0/address":                   "52:54:00:00:00:99\n",
		"sys/class/net/eth0/addr_assign_type":          "3\n",
		"sys/class/net/eth0/bonding_slave/perm_hwaddr": "52:54:00:00:00:10\n",
		"sys/class/net/eth1/addr_assign_type":          "3\n",
		"sys/class/net/eth1/bonding_slave/perm_hwaddr": "52:54:00:00:00:99\n",
		"sys/class/net/bond0/address":                  "52:54:00:00:00:99\n",
		"sys/class/net/bond0/bonding/mode":             "802.3ad 4\n",
	})
	if got := machineIdentity(root); got != "52:54:00:00:00:10" {
		t.Errorf("machineIdentity with the ports bonded = %q, want eth0's own 52:54:00:00:00:10, as before the bond", got)
	}
	if got := machineIdentity(t.TempDir()); got != "" {
		t.Errorf("nothing readable: %q", got)
	}
}

// TestTimeServersFromConfigThenDHCP: the time service asks the machine
// config's servers, else DHCP's; time.disabled runs none; the status shows it.
func TestTimeServersFromConfigThenDHCP(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // nil: no time service
	}{
		{"config's servers", "time: {servers: ['127.0.0.1:1']}\n", []string{"127.0.0.1:1"}},
		{"DHCP's servers", "", []string{"127.0.0.2:1"}},
		{"disabled", "time: {disabled: true}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			var con consoleLines
			ctx, cancel := context.WithCancel(context.Background())
			defer func() { cancel() }()
			clock := timesync.NewManualClock(time.Now())
			n := Start(ctx, Env{Root: root, Broadcast: con.add, Socket: filepath.Join(root, "agent.sock"),
				ConfigVolume: func() config.Source {
					// K3s is not in root: its start fails, which this test leaves aside.
					return fileSource{"test volume", "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true}\n" + tc.yaml}
				},
				Clock: clock, NTPServers: func() []string { return []string{"127.0.0.2:1"} },
				Status: func() api.Status { return api.Status{} }})
			st := n.Status(ctx)
			switch {
			case tc.want == nil && st.Time != nil:
				t.Errorf("time.disabled: a time service runs: %+v", st.Time)
			case tc.want != nil && st.Time == nil:
				t.Errorf("no time service: %+v", st)
			case tc.want != nil:
				waitUntil(t, "the first round", 10*time.Second, func() bool { return len(n.Status(ctx).Time.Servers) > 0 })
				if got := n.Status(ctx).Time.Servers; !slices.Equal(got, tc.want) {
					t.Errorf("servers %v, want %v", got, tc.want)
				}
			}
			cancel()
			n.Wait()
		})
	}
}

// TestSysctlsAppliedBeforeK3s: the default kernel parameters and the
// config's (which win) are written under proc/sys; one the kernel lacks is
// a warning naming it, and the others are still set.
func TestSysctlsAppliedBeforeK3s(t *testing.T) {
	root := t.TempDir()
	for path, v := range map[string]string{
		"proc/sys/fs/inotify/max_user_instances":   "128\n",
		"proc/sys/fs/inotify/max_user_watches":     "65536\n",
		"proc/sys/vm/max_map_count":                "65530\n",
		"proc/sys/net/ipv4/conf/eth0.42/rp_filter": "1\n",
		"proc/sys/kernel/pid_max":                  "32768\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var con consoleLines
	yaml := "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true}\n" +
		"sysctls: {vm.max_map_count: 262144, fs.inotify.max_user_instances: 1024, net/ipv4/conf/eth0.42/rp_filter: 2, net.ipv4.tcp_nope: 1}\n"
	n := Start(ctx, Env{Root: root, Broadcast: con.add, Socket: filepath.Join(root, "agent.sock"),
		ConfigVolume: func() config.Source { return fileSource{"test volume", yaml} },
		Status:       func() api.Status { return api.Status{} }})
	for path, want := range map[string]string{
		"proc/sys/fs/inotify/max_user_instances":   "1024",   // the config's
		"proc/sys/fs/inotify/max_user_watches":     "524288", // the default
		"proc/sys/kernel/pid_max":                  "4194304",
		"proc/sys/vm/max_map_count":                "262144",
		"proc/sys/net/ipv4/conf/eth0.42/rp_filter": "2",
	} {
		if b, _ := os.ReadFile(filepath.Join(root, path)); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, want %s", path, b, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "proc/sys/net/ipv4/tcp_nope")); err == nil {
		t.Error("a parameter the kernel lacks was created")
	}
	st := n.Status(ctx)
	if !slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, "sysctls.net.ipv4.tcp_nope") }) {
		t.Errorf("no warning about net.ipv4.tcp_nope: %q", st.Warnings)
	}
	cancel()
	n.Wait()
}

// TestAppliedConfigStartsAndStopsTime: time.disabled in a config applied
// through the local API stops the time service; its removal starts it.
func TestAppliedConfigStartsAndStopsTime(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := Start(ctx, Env{Root: root, Broadcast: func(string) {}, Socket: filepath.Join(root, "agent.sock"),
		Clock: timesync.NewManualClock(time.Now()), NTPServers: func() []string { return []string{"127.0.0.2:1"} },
		Status: func() api.Status { return api.Status{} }})
	if n.Status(ctx).Time == nil {
		t.Fatal("no time service at boot")
	}
	base := "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true}\n"
	// K3s is not in root: the apply's K3s start fails, which this test leaves aside.
	_, _ = n.ApplyConfig(ctx, []byte(base+"time: {disabled: true}\n"))
	if st := n.Status(ctx).Time; st != nil {
		t.Errorf("time.disabled applied: the time service still runs: %+v", st)
	}
	_, _ = n.ApplyConfig(ctx, []byte(base))
	if n.Status(ctx).Time == nil {
		t.Error("time.disabled removed: no time service")
	}
	cancel()
	n.Wait()
}

// gpuRoot is a root holding the real H100 host's snapshot (its sysfs and the
// driver's files, as the inventory reads a copied tree) and the K3s stand-in.
func gpuRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../inventory/testdata/h100-vm")); err != nil {
		t.Fatal(err)
	}
	buildStandin(t, root)
	return root
}

// startGPUNode starts a server node on root and waits until K3s has been
// started; it returns the agent's log and the local API's status. edit, when
// given, changes the node's Env first.
func startGPUNode(t *testing.T, root string, edit ...func(*Env)) (string, api.Status) {
	t.Helper()
	vol := configVolume(t, root, `apiVersion: etoile.io/v1alpha1
kind: MachineConfig
hostname: gpu-1
role: server
cluster: {init: true}
k3s:
  https-listen-port: 0
`)
	var logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	env := Env{
		Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Log:    slog.New(slog.NewTextHandler(&logs, nil)),
		K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}, Socket: filepath.Join(root, "agent.sock"),
	}
	for _, f := range edit {
		f(&env)
	}
	n := Start(ctx, env)
	t.Cleanup(func() { cancel(); n.Wait() })
	waitUntil(t, "K3s started", 60*time.Second, func() bool { s := n.K3sState(); return s == "running" || s == "ready" })
	st, err := api.NewClient(filepath.Join(root, "agent.sock")).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return logs.String(), st
}

// TestGPUNodeStartsK3sWhenTheInventoryHangs: on a machine with an NVIDIA
// GPU, K3s waits for the inventory (its GPU labels), but not for ever: an
// inventory that does not end (nvidia-smi stuck in the driver; here a
// stand-in that blocks it) has K3s started without the labels, and says so.
func TestGPUNodeStartsK3sWhenTheInventoryHangs(t *testing.T) {
	release := make(chan struct{})
	defer func(w time.Duration) { inventoryWait, inventoryHook = w, nil }(inventoryWait)
	inventoryWait, inventoryHook = 500*time.Millisecond, func() { <-release }
	defer close(release)
	root := gpuRoot(t)
	logs, _ := startGPUNode(t, root)
	if !strings.Contains(logs, "the hardware inventory is not done: K3s starts without the GPU labels") {
		t.Errorf("the wait's end is not logged:\n%s", logs)
	}
	cfg, err := os.ReadFile(filepath.Join(root, "etc/rancher/k3s/config.yaml"))
	if err != nil || strings.Contains(string(cfg), "etoile.io/gpu.vendor") {
		t.Errorf("K3s's config without the inventory: %v\n%s", err, cfg)
	}
}

// TestGPUNodeWithoutNvidiaRuntime: on the H100 host's snapshot, K3s's
// config carries the GPU labels from the inventory, and an image without
// NVIDIA's container runtime gets a warning (log and status) that pods
// cannot use runtimeClassName: nvidia.
func TestGPUNodeWithoutNvidiaRuntime(t *testing.T) {
	root := gpuRoot(t)
	logs, st := startGPUNode(t, root)
	cfg, err := os.ReadFile(filepath.Join(root, "etc/rancher/k3s/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"etoile.io/gpu.vendor=nvidia", "etoile.io/gpu.model=NVIDIA-H100-80GB-HBM3", "etoile.io/gpu.count=1", "nvidia.com/gpu.present=true"} {
		if !strings.Contains(string(cfg), l) {
			t.Errorf("K3s's config.yaml lacks the node label %s:\n%s", l, cfg)
		}
	}
	if !strings.Contains(logs, noNvidiaRuntime) || !strings.Contains(logs, "README's Image extensions") {
		t.Errorf("no warning about the missing NVIDIA container runtime:\n%s", logs)
	}
	if !slices.Contains(st.Warnings, noNvidiaRuntime) {
		t.Errorf("status warnings %q lack %q", st.Warnings, noNvidiaRuntime)
	}
	// Installed since (NVIDIA's GPU Operator puts it in /usr/local/nvidia/toolkit): the status says
	// K3s takes it at its next start.
	fakeroot.Write(t, root, map[string]string{"usr/local/nvidia/toolkit/nvidia-container-runtime": "#!/bin/sh\n"})
	if err := os.Chmod(filepath.Join(root, "usr/local/nvidia/toolkit/nvidia-container-runtime"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err = api.NewClient(filepath.Join(root, "agent.sock")).Status(context.Background())
	if err != nil || slices.Contains(st.Warnings, noNvidiaRuntime) || !slices.Contains(st.Warnings, nvidiaRuntimeLate) {
		t.Errorf("status after the runtime was installed: %q, %v; want %q alone", st.Warnings, err, nvidiaRuntimeLate)
	}
}

// TestGPUNodeWithNvidiaRuntime: with nvidia-container-runtime in the image
// (as an extension puts it), the agent says K3s will add the nvidia runtime,
// and does not warn.
func TestGPUNodeWithNvidiaRuntime(t *testing.T) {
	root := gpuRoot(t)
	fakeroot.Write(t, root, map[string]string{"usr/bin/nvidia-container-runtime": "#!/bin/sh\n"})
	if err := os.Chmod(filepath.Join(root, "usr/bin/nvidia-container-runtime"), 0o755); err != nil {
		t.Fatal(err)
	}
	logs, st := startGPUNode(t, root)
	if !strings.Contains(logs, `container runtimes K3s adds to its containerd (runtimeClassName)" runtimes="nvidia=/usr/bin/nvidia-container-runtime"`) {
		t.Errorf("the agent does not say K3s adds the nvidia runtime:\n%s", logs)
	}
	if strings.Contains(logs, noNvidiaRuntime) || slices.Contains(st.Warnings, noNvidiaRuntime) {
		t.Errorf("warned about a missing NVIDIA runtime that the image has: %q\n%s", st.Warnings, logs)
	}
	// The runtime alone: its hook, nvidia-container-cli, ldconfig and the
	// driver's libraries in the ld.so.cache are missing, and said so.
	if !strings.Contains(logs, nvidiaRuntimeIncomplete) || !strings.Contains(logs, "nvidia-container-runtime-hook") {
		t.Errorf("no warning that the runtime lacks its hook:\n%s", logs)
	}
	incomplete := func(ws []string) string {
		for _, w := range ws {
			if strings.HasPrefix(w, nvidiaRuntimeIncomplete) {
				return w
			}
		}
		return ""
	}
	if w := incomplete(st.Warnings); !strings.Contains(w, "nvidia-container-cli") || !strings.Contains(w, "/sbin/ldconfig") || !strings.Contains(w, "libcuda.so.1") {
		t.Errorf("status warnings %q lack what the runtime needs", st.Warnings)
	}
	// Added since: the status's warning goes.
	fakeroot.WriteExec(t, root, map[string]string{
		"usr/bin/nvidia-container-runtime-hook": "#!/bin/sh\n", "usr/bin/nvidia-container-cli": "#!/bin/sh\n", "sbin/ldconfig": "#!/bin/sh\n",
	})
	fakeroot.Write(t, root, map[string]string{
		"etc/ld.so.cache": "glibc-ld.so.cache1.1\x00/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\x00/usr/lib/x86_64-linux-gnu/libcuda.so.1\x00",
	})
	st, err := api.NewClient(filepath.Join(root, "agent.sock")).Status(context.Background())
	if err != nil || incomplete(st.Warnings) != "" {
		t.Errorf("status once the toolkit is complete: %q, %v", st.Warnings, err)
	}
}

// TestGPUNodeRunsPersistenced: with NVIDIA's driver loaded and
// nvidia-persistenced in the image (here a STAND-IN of the daemon, see
// fakeroot.PersistencedStandin), the node starts the daemon before the
// inventory (so before K3s), says when it stops running (log and status),
// starts it again, and stops it with SIGTERM when the node stops.
func TestGPUNodeRunsPersistenced(t *testing.T) {
	root := gpuRoot(t)
	fakeroot.Write(t, root, map[string]string{"proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04\n"})
	env, dir, pidFile := fakeroot.Persistenced(t, root)
	// Runs after startGPUNode's clean-up, which stops the node.
	t.Cleanup(func() {
		if b, _ := os.ReadFile(filepath.Join(dir, "stopped")); string(b) != "stopped\n" {
			t.Errorf("the daemon did not get SIGTERM once when the node stopped (%q)", b)
		}
	})
	logs, st := startGPUNode(t, root, func(e *Env) { e.PersistencedEnv = env })
	running := strings.Index(logs, "NVIDIA persistence daemon running")
	k3sStarted := strings.Index(logs, "k3s started")
	if running < 0 || k3sStarted < 0 || running > k3sStarted {
		t.Fatalf("the daemon should run before K3s starts (log at %d, K3s at %d):\n%s", running, k3sStarted, logs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "args")); err != nil || strings.TrimSpace(string(b)) != "--verbose" {
		t.Errorf("daemon arguments %q, %v", b, err)
	}
	for _, w := range st.Warnings {
		if strings.Contains(w, "persistence") {
			t.Errorf("a warning while the daemon runs: %q", w)
		}
	}
	if len(st.Daemons) != 1 || st.Daemons[0].Name != "nvidia-persistenced" || st.Daemons[0].State != "running" || st.Daemons[0].PID <= 0 {
		t.Errorf("status daemons %+v, want nvidia-persistenced running with its pid", st.Daemons)
	}
	// It dies and cannot start again: the status says so.
	if err := os.WriteFile(filepath.Join(dir, "mode"), []byte("fail"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	client := api.NewClient(filepath.Join(root, "agent.sock"))
	waitUntil(t, "the status's warning", 30*time.Second, func() bool {
		st, err := client.Status(context.Background())
		return err == nil && slices.ContainsFunc(st.Warnings, func(w string) bool {
			return strings.HasPrefix(w, "NVIDIA persistence daemon not running:") && strings.Contains(w, "failed to initialize")
		}) && len(st.Daemons) == 1 && st.Daemons[0].State == "restarting" && strings.Contains(st.Daemons[0].Reason, "failed to initialize")
	})
	// It can again: started, the warning gone.
	if err := os.WriteFile(filepath.Join(dir, "mode"), []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the daemon running again", 60*time.Second, func() bool {
		st, err := client.Status(context.Background())
		return err == nil && !slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, "persistence") }) &&
			len(st.Daemons) == 1 && st.Daemons[0].State == "running" && st.Daemons[0].Restarts >= 2
	})
}

// TestGPUNodePersistencedWaitsForASlowDriver: NVIDIA's driver still loading
// when the inventory runs (a large one, many GPUs): the daemon (a STAND-IN,
// see fakeroot.PersistencedStandin) is started once the drivers settle and
// the driver is there; with the drivers settled and no driver, the console
// says why it was not started.
func TestGPUNodePersistencedWaitsForASlowDriver(t *testing.T) {
	for _, loads := range []string{"yes", "no", "never settles"} {
		root := gpuRoot(t)
		env, dir, _ := fakeroot.Persistenced(t, root)
		settled := make(chan struct{})
		var all syncbuf.Buffer
		_, st := startGPUNode(t, root, func(e *Env) {
			e.PersistencedEnv = env
			e.DriversSettled = settled
			e.Log = slog.New(slog.NewTextHandler(&all, nil))
		})
		if !strings.Contains(all.String(), "NVIDIA persistence daemon waits for the image's drivers, still loading") || len(st.Daemons) != 0 {
			t.Fatalf("before the driver (loads: %s): daemons %+v\n%s", loads, st.Daemons, all.String())
		}
		if loads == "never settles" {
			continue // the node still stops (startGPUNode's clean-up waits for it)
		}
		if loads == "yes" {
			fakeroot.Write(t, root, map[string]string{"proc/driver/nvidia/version": "NVRM version: 580.159.04\n"})
		}
		close(settled)
		client := api.NewClient(filepath.Join(root, "agent.sock"))
		if loads == "yes" {
			waitUntil(t, "the daemon once the driver is loaded", 30*time.Second, func() bool {
				st, err := client.Status(context.Background())
				return err == nil && len(st.Daemons) == 1 && st.Daemons[0].State == "running"
			})
			continue
		}
		waitUntil(t, "the console's word on the missing driver", 30*time.Second, func() bool {
			return strings.Contains(all.String(), "NVIDIA persistence daemon not started: NVIDIA's driver is not loaded")
		})
		st, err := client.Status(context.Background())
		if err != nil || len(st.Daemons) != 0 {
			t.Errorf("without a driver: daemons %+v, %v", st.Daemons, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "runs")); err == nil {
			t.Error("the daemon was run without its driver")
		}
	}
}

// TestKernelLog: /v1/logs?source=kernel gives the kernel's records as dmesg
// prints them, numbered by their sequence number so that -f goes on from the
// last one; records the kernel's ring dropped meanwhile are counted.
func TestKernelLog(t *testing.T) {
	recs := []kmsg.Record{
		{Seq: 40, Stamp: 1500 * time.Microsecond, Msg: "Linux version 6.1.0"},
		{Seq: 41, Stamp: 31*time.Second + 744999*time.Microsecond, Msg: "Out of memory: Killed process 93 (k3s)"},
		{Seq: 42, Stamp: 123456 * time.Second, Msg: "eth0: link up"},
	}
	n := &Node{env: Env{KernelLog: func() ([]kmsg.Record, error) { return recs, nil }}}
	page, err := n.Logs("kernel", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"[   31.744999] Out of memory: Killed process 93 (k3s)", "[123456.000000] eth0: link up"}
	if !slices.Equal(page.Lines, want) || page.Next != 43 || page.Skipped != 0 {
		t.Errorf("last 2: %+v, want %q next 43", page, want)
	}
	if page, _ := n.Logs("kernel", 100, 42); !slices.Equal(page.Lines, want[1:]) || page.Next != 43 {
		t.Errorf("after 42: %+v", page)
	}
	if page, _ := n.Logs("kernel", 100, 43); len(page.Lines) != 0 || page.Next != 43 {
		t.Errorf("after the newest: %+v", page)
	}
	// Asked from 30: records 31–40 (sequence 30–39) are gone from the ring.
	if page, _ := n.Logs("kernel", 100, 30); len(page.Lines) != 3 || page.Skipped != 10 {
		t.Errorf("after 30: %+v, want 3 lines and 10 skipped", page)
	}
	// A record lost in the middle (overwritten while being read) is counted too.
	gap := &Node{env: Env{KernelLog: func() ([]kmsg.Record, error) { return []kmsg.Record{recs[0], recs[2]}, nil }}}
	if page, _ := gap.Logs("kernel", 100, 41); len(page.Lines) != 1 || page.Skipped != 1 {
		t.Errorf("after 41 with record 42 lost: %+v, want 1 line and 1 skipped", page)
	}
	// A number beyond this log's (another log's): from the start.
	if page, _ := n.Logs("kernel", 100, 5000); len(page.Lines) != 3 || page.Skipped != 0 {
		t.Errorf("after 5000: %+v, want all 3 and none skipped", page)
	}
	n.env.KernelLog = func() ([]kmsg.Record, error) { return nil, errors.New("permission denied") }
	if _, err := n.Logs("kernel", 10, 0); err == nil || !strings.Contains(err.Error(), "kernel's log: permission denied") {
		t.Errorf("a failed read: %v", err)
	}
	if _, err := n.Logs("dmesg", 10, 0); err == nil || !strings.Contains(err.Error(), "use agent, k3s, kernel or syslog") {
		t.Errorf("an unknown log: %v", err)
	}
}

// TestApplyWarningsInStatus: a config applied through the API with warnings
// shows them in the status, and only them: the apply's own note to its
// caller ("applied until the next boot") is not the node's warning.
func TestApplyWarningsInStatus(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}, Socket: filepath.Join(root, "agent.sock")})
	defer func() { cancel(); n.Wait() }()
	warns, err := n.ApplyConfig(ctx, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true}\n"+
		"k3s:\n  https-listen-port: 0\n  disable-apiserver-lb: true\n  lb-server-port: 6444\n  node-ip: 10.0.0.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) < 2 || !strings.Contains(warns[len(warns)-1], "applied until the next boot") {
		t.Fatalf("apply's warnings %q: want the config's, then the note", warns)
	}
	st := n.Status(ctx)
	if !slices.Equal(st.Warnings, warns[:len(warns)-1]) {
		t.Errorf("status warnings %q, want the config's %q", st.Warnings, warns[:len(warns)-1])
	}
}

func TestOwnContainerd(t *testing.T) {
	for yaml, want := range map[string]bool{
		"":                        true,
		"k3s:\n  docker: true\n":  false,
		"k3s:\n  docker: false\n": true,
		"k3s:\n  container-runtime-endpoint: unix:///run/crio/crio.sock\n": false,
		"k3s:\n  container-runtime-endpoint: \"\"\n":                       true,
	} {
		cfg, _, err := config.Check([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true}\n" + yaml))
		if err != nil {
			t.Fatalf("%q: %v", yaml, err)
		}
		if got := ownContainerd(cfg); got != want {
			t.Errorf("%q: ownContainerd = %v, want %v", yaml, got, want)
		}
	}
}

// TestGPUNodeInventoryAgainAfterASlowDriver: NVIDIA's driver is not loaded
// yet when the inventory runs (the snapshot's driver captures held back):
// the GPU is listed without driver version; once the image's drivers have
// settled with the driver loaded, the inventory runs again and the status
// shows the driver's version.
func TestGPUNodeInventoryAgainAfterASlowDriver(t *testing.T) {
	root := gpuRoot(t)
	held := t.TempDir()
	captures := []string{"nvidia-driver-version.txt", "nvidia-gpus-information.txt", "nvidia-smi-q.xml"}
	for _, f := range captures {
		if err := os.Rename(filepath.Join(root, f), filepath.Join(held, f)); err != nil {
			t.Fatal(err)
		}
	}
	settled := make(chan struct{})
	var all syncbuf.Buffer
	startGPUNode(t, root, func(e *Env) {
		e.DriversSettled = settled
		e.Log = slog.New(slog.NewTextHandler(&all, nil))
	})
	client := api.NewClient(filepath.Join(root, "agent.sock"))
	inventoryGPUs := func() []inventory.GPU {
		st, err := client.Status(context.Background())
		if err != nil || len(st.Inventory) == 0 {
			return nil
		}
		var inv inventory.Inventory
		if err := json.Unmarshal(st.Inventory, &inv); err != nil {
			t.Fatalf("status inventory: %v", err)
		}
		return inv.GPUs
	}
	waitUntil(t, "the first inventory", 30*time.Second, func() bool { return len(inventoryGPUs()) == 1 })
	if g := inventoryGPUs()[0]; g.DriverVersion != "" {
		t.Fatalf("driver version %q before the driver loaded", g.DriverVersion)
	}
	for _, f := range captures {
		if err := os.Rename(filepath.Join(held, f), filepath.Join(root, f)); err != nil {
			t.Fatal(err)
		}
	}
	fakeroot.Write(t, root, map[string]string{"proc/driver/nvidia/version": "NVRM version: 580.159.04\n"})
	close(settled)
	waitUntil(t, "the inventory with the driver", 30*time.Second, func() bool {
		g := inventoryGPUs()
		return len(g) == 1 && g[0].DriverVersion == "580.159.04" && g[0].MemoryMiB == 81559
	})
	if !strings.Contains(all.String(), `msg="hardware inventory again: NVIDIA's driver is loaded" driver=580.159.04 gpus=1`) {
		t.Errorf("the second inventory is not logged:\n%s", all.String())
	}
}

// TestNetworkErrorsOnTheConsole: each interface the machine config could not
// configure is on the console and in the warnings; a dhcp: true entry that
// is asked again gets advice about its DHCP, not about the config.
func TestNetworkErrorsOnTheConsole(t *testing.T) {
	var con consoleLines
	n := &Node{env: Env{Broadcast: con.add, ApplyNetwork: func(context.Context, *config.MachineConfig) error {
		return errors.Join(errors.New("network.interfaces[0]: no link named eth9"),
			errors.New("network.interfaces[1]: DHCP on eth0.42: no DHCP offer: context deadline exceeded; asking again in the background"))
	}}}
	warns := n.applyNetwork(context.Background(), &config.MachineConfig{})
	if len(warns) != 2 || !strings.HasPrefix(warns[1], "network: network.interfaces[1]: DHCP on eth0.42") {
		t.Errorf("warnings %q", warns)
	}
	if !con.has(`reason="network.interfaces[0]: no link named eth9" fix="correct network.interfaces`) {
		t.Errorf("the missing link's line:\n%s", con.all())
	}
	if !con.has(`asking again in the background" fix="it is asked again, up to every minute: check the cable`) {
		t.Errorf("the DHCP entry's line:\n%s", con.all())
	}
	// Once its lease comes, its warning goes; the other stays.
	n.setWarnings(warns)
	n.AddressChanged("eth0.42", "10.42.0.5/24")
	if got := n.Status(context.Background()).Warnings; len(got) != 1 || !strings.Contains(got[0], "no link named eth9") {
		t.Errorf("warnings after the lease: %q", got)
	}
}

// TestApplyDuringASlowSourceRead: a config applied through the local API
// while the watch is reading a slow source (a download) stays the node's:
// what the read brings afterwards (an invalid config here) is neither
// shown nor named as the node's config source.
func TestApplyDuringASlowSourceRead(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	src := &blockingSource{reading: make(chan struct{}), release: make(chan struct{})}
	var vol swappableSource
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, ConfigVolume: vol.get, Broadcast: con.add,
		ConfigRetry: 20 * time.Millisecond, K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}, Socket: filepath.Join(root, "agent.sock")})
	vol.set(src)
	select {
	case <-src.reading:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch never read the source")
	}
	if _, err := n.ApplyConfig(ctx, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: api-1\nrole: server\ncluster: {init: true}\nk3s:\n  https-listen-port: 0\n")); err != nil {
		t.Fatal(err)
	}
	close(src.release)
	waitUntil(t, "the slow read's end", 10*time.Second, func() bool { return src.done.Load() })
	time.Sleep(100 * time.Millisecond) // what the watch would do with it, done
	if st := n.Status(ctx); st.Config != "local API" {
		t.Errorf("config from %q after an apply during a slow read, want the local API's", st.Config)
	}
	if con.has("not-a-field") {
		t.Errorf("the slow source's invalid config was shown after the apply:\n%s", con.all())
	}
	cancel()
	n.Wait()
}

// blockingSource is a config source whose first read blocks until
// release, then returns an invalid config.
type blockingSource struct {
	once             sync.Once
	reading, release chan struct{}
	done             atomic.Bool
}

func (*blockingSource) Name() string { return "slow download" }
func (b *blockingSource) Read(ctx context.Context) ([]byte, error) {
	b.once.Do(func() { close(b.reading) })
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer b.done.Store(true)
	return []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nnot-a-field: 1\n"), nil
}
