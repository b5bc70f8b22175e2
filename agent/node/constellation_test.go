package node

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"unicode/utf8"

	"github.com/etoile-os/etoile/agent"
	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/inventory"
	capi "github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hubcli"
)

// TestUnattendedJoinFromMachineConfig runs a real hub (real TLS on
// loopback, SQLite) and a node whose machine config carries the join
// string: the node joins without anyone running `etoile-agent join`, and
// the hub lists the site with its heartbeat.
func TestStandinUnattendedJoinFromMachineConfig(t *testing.T) {
	hubDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- hubcli.Serve(ctx, hubcli.ServeOptions{Data: hubDir, Listen: "127.0.0.1:0", SANs: []string{"127.0.0.1"},
			HeartbeatInterval: time.Second, Ready: func(u, _ string) { ready <- u }})
	}()
	select {
	case <-ready:
	case err := <-served:
		t.Fatalf("hub: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("hub did not start")
	}
	var out, errb bytes.Buffer
	if err := hubcli.Command(ctx, []string{"token", "create", "--data", hubDir, "--site", "edge-lyon", "--country", "FR", "--tag", "gdpr", "--qr", "never"}, &out, &errb); err != nil {
		t.Fatalf("token create: %v\n%s", err, errb.String())
	}
	joinString := strings.TrimSpace(out.String())
	if !strings.HasPrefix(joinString, "etoile://") {
		t.Fatalf("join string = %q", joinString)
	}

	root := t.TempDir()
	buildStandin(t, root) // the K3s stand-in, a test double: the site runs "K3s" while it heartbeats
	const base = `apiVersion: etoile.io/v1alpha1
kind: MachineConfig
role: server
cluster: {init: true}
k3s:
  https-listen-port: 0
`
	vol := configVolume(t, root, base+`constellation:
  join: "`+joinString+`"
`)
	var con consoleLines
	nctx, ncancel := context.WithCancel(ctx)
	n := Start(nctx, Env{Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Broadcast: con.add, NodeName: "edge-1", Slot: "a", Socket: filepath.Join(root, "agent.sock"),
		K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}})
	waitUntil(t, "the unattended join", 60*time.Second, func() bool {
		if con.has("error") {
			t.Fatalf("console:\n%s", con.all())
		}
		return con.has("etoile: constellation joined")
	})
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for {
		var sites, serr bytes.Buffer
		err := hubcli.Command(ctx, []string{"sites", "--json", "--data", hubDir}, &sites, &serr)
		last = sites.String() + serr.String()
		if err == nil && strings.Contains(last, `"edge-lyon"`) && strings.Contains(last, `"online"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub does not list the site online:\n%s\nconsole:\n%s", last, con.all())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Revoked on the hub: the status says so, and the client stops — it
	// neither joins nor says "joined" again on every retry.
	var rout, rerr bytes.Buffer
	if err := hubcli.Command(ctx, []string{"sites", "revoke", "edge-lyon", "--data", hubDir}, &rout, &rerr); err != nil {
		t.Fatalf("sites revoke: %v\n%s", err, rerr.String())
	}
	client := api.NewClient(filepath.Join(root, "agent.sock"))
	revoked := func() bool {
		st, err := client.Status(ctx)
		return err == nil && slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, "revoked on the hub") })
	}
	waitUntil(t, "the revocation in the status", 30*time.Second, revoked)
	time.Sleep(7 * time.Second) // the client used to join again after 5 s
	if got := con.count("etoile: constellation joined"); got != 1 {
		t.Errorf("%d \"constellation joined\" lines after the revocation, want the first alone:\n%s", got, con.all())
	}
	// A config applied without the section stops the client: the warning goes.
	if _, err := client.ApplyConfig(ctx, []byte(base)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if revoked() {
		t.Error("the revocation is still in the status after the constellation section was removed")
	}
	ncancel()
	n.Wait()
}

// TestStandinAppliedConfigJoins: a config applied through the local API
// with a constellation section joins the hub; one without it does not. The
// hub records the join under the config's hostname, not the name the
// machine had before (Env.NodeName: DHCP's or a generated one).
func TestStandinAppliedConfigJoins(t *testing.T) {
	hubDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveTestHub(t, ctx, hubDir)
	var out, errb bytes.Buffer
	if err := hubcli.Command(ctx, []string{"token", "create", "--data", hubDir, "--site", "edge-nice", "--country", "FR", "--qr", "never"}, &out, &errb); err != nil {
		t.Fatalf("token create: %v\n%s", err, errb.String())
	}
	root := t.TempDir()
	buildStandin(t, root)
	var con consoleLines
	nctx, ncancel := context.WithCancel(ctx)
	n := Start(nctx, Env{Root: root, Broadcast: con.add, NodeName: "edge-2", Slot: "a", Socket: filepath.Join(root, "agent.sock"),
		K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}})
	defer func() { ncancel(); n.Wait() }()
	client := api.NewClient(filepath.Join(root, "agent.sock"))
	waitUntil(t, "the local API", 30*time.Second, func() bool { _, err := client.Status(ctx); return err == nil })
	cfg := "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: nice-gpu-1\nrole: server\ncluster: {init: true}\nk3s:\n  https-listen-port: 0\n" +
		"constellation:\n  join: \"" + strings.TrimSpace(out.String()) + "\"\n"
	if _, err := client.ApplyConfig(ctx, []byte(cfg)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	waitUntil(t, "the join of the applied config", 60*time.Second, func() bool { return con.has("etoile: constellation joined") })
	var audit, aerr bytes.Buffer
	if err := hubcli.Command(ctx, []string{"audit", "--data", hubDir, "--action", capi.AuditSiteJoin}, &audit, &aerr); err != nil {
		t.Fatalf("audit: %v\n%s", err, aerr.String())
	}
	if !strings.Contains(audit.String(), "host=nice-gpu-1") || strings.Contains(audit.String(), "host=edge-2") {
		t.Errorf("the hub's join record does not name the config's hostname nice-gpu-1:\n%s", audit.String())
	}
	// The same config with a proxy section: the client starts again, to
	// reach the hub the new way (a loopback hub is reached directly all
	// the same, as Go's proxy rules say).
	withProxy := cfg + "proxy:\n  https_proxy: http://proxy.example.com:3128\n"
	if _, err := client.ApplyConfig(ctx, []byte(withProxy)); err != nil {
		t.Fatalf("apply with a proxy: %v", err)
	}
	waitUntil(t, "the client started again for the proxy", 60*time.Second, func() bool { return con.count("etoile: constellation joined") == 2 })
	// The same once more: left alone.
	if _, err := client.ApplyConfig(ctx, []byte(withProxy)); err != nil {
		t.Fatalf("apply again: %v", err)
	}
	time.Sleep(time.Second)
	if got := con.count("etoile: constellation joined"); got != 2 {
		t.Errorf("the same config applied again restarted the constellation client (%d joins)", got)
	}
}

// TestJoinInventoryWithGPUsIsValid: a machine with GPUs sends the hub the
// models its inventory found (the pci.ids name, the driver's, or
// vendor:device), and the hub takes the join request; an over-long or
// unprintable name is made fit rather than keep the site out.
func TestJoinInventoryWithGPUsIsValid(t *testing.T) {
	// 'ü' is two bytes, the fourth one bytes 127 and 128: the cut lands inside it.
	long := "GPU: " + strings.Repeat("Grafikprozessor für Rechenzentren ", 8)
	hw := &inventory.Inventory{
		CPU:    inventory.CPU{Count: 16},
		Memory: inventory.Memory{TotalBytes: 64 << 30},
		GPUs: []inventory.GPU{
			{Vendor: "intel", Model: "Alder Lake-UP3 GT2 [Iris Xe Graphics]", ModelSource: "pci.ids"},
			{Vendor: "nvidia", Model: "NVIDIA H100 80GB HBM3", ModelSource: "driver"},
			{Vendor: "nvidia", Model: "NVIDIA H200", ModelSource: "driver"},
			{Vendor: "nvidia", Model: "10de:2335", ModelSource: "ids"},
			{Vendor: "amd", Model: "AMD Instinct MI300X", ModelSource: "driver"},
			{Vendor: "nvidia", Model: long, ModelSource: "pci.ids"},
			{Vendor: "amd", Model: " Radeon\tPro\x00 W7900\n", ModelSource: "pci.ids"},
			{Vendor: "amd", Model: "Radeon \xffPro", ModelSource: "pci.ids"},
		},
	}
	inv := joinInventory("edge-1", agent.Version, hw)
	if err := inv.Validate(); err != nil {
		t.Fatalf("the hub refuses the join inventory: %v", err)
	}
	id, secret, err := capi.NewTokenCredentials()
	if err != nil {
		t.Fatal(err)
	}
	req := capi.JoinRequest{Token: id + "." + secret, CSR: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", Inventory: inv}
	if err := req.Validate(); err != nil {
		t.Fatalf("the hub refuses the join request: %v", err)
	}
	if inv.Hostname != "edge-1" || inv.Nodes != 1 || inv.CPUMillis != 16000 || inv.MemoryBytes != 64<<30 || len(inv.GPUs) != len(hw.GPUs) {
		t.Fatalf("join inventory %+v", inv)
	}
	for i, want := range []string{"Alder Lake-UP3 GT2 [Iris Xe Graphics]", "NVIDIA H100 80GB HBM3", "NVIDIA H200", "10de:2335", "AMD Instinct MI300X"} {
		if g := inv.GPUs[i]; g.Model != want || g.Vendor != hw.GPUs[i].Vendor || g.Count != 1 {
			t.Errorf("gpus[%d] = %+v, want model %q as the inventory names it", i, g, want)
		}
	}
	clipped := inv.GPUs[5].Model
	if len(clipped) != capi.MaxGPUModelLen-1 || !utf8.ValidString(clipped) || !strings.HasPrefix(long, clipped) {
		t.Errorf("long model clipped to %q (%d bytes), want a prefix of %d bytes, cut before the 'ü' that straddles the limit", clipped, len(clipped), capi.MaxGPUModelLen-1)
	}
	if got := inv.GPUs[6].Model; got != "Radeon Pro W7900" {
		t.Errorf("model with control characters sent as %q", got)
	}
	if got := inv.GPUs[7].Model; got != "Radeon \uFFFDPro" {
		t.Errorf("model with invalid UTF-8 sent as %q", got)
	}
	// A machine with many GPUs sends one entry per kind: 32 H100s and two
	// of another model are two entries (the hub takes 16 kinds at most).
	many := &inventory.Inventory{CPU: inventory.CPU{Count: 8}}
	for i := range 34 {
		model := "NVIDIA H100 80GB HBM3"
		if i%17 == 16 {
			model = "NVIDIA A100-SXM4-40GB"
		}
		many.GPUs = append(many.GPUs, inventory.GPU{Vendor: "nvidia", Model: model})
	}
	inv = joinInventory("hgx-1", agent.Version, many)
	if err := inv.Validate(); err != nil {
		t.Fatalf("the hub refuses the join inventory of a machine with 34 GPUs: %v", err)
	}
	if want := []capi.GPU{{Vendor: "nvidia", Model: "NVIDIA H100 80GB HBM3", Count: 32}, {Vendor: "nvidia", Model: "NVIDIA A100-SXM4-40GB", Count: 2}}; !slices.Equal(inv.GPUs, want) {
		t.Errorf("34 GPUs sent as %+v, want %+v", inv.GPUs, want)
	}
	// Before the hardware inventory is collected, the site joins without it.
	if inv := joinInventory("edge-1", agent.Version, nil); inv.Validate() != nil || len(inv.GPUs) != 0 || inv.Nodes != 1 {
		t.Errorf("join inventory without hardware: %+v, %v", inv, inv.Validate())
	}
}

// serveTestHub serves a hub from hubDir on loopback, heartbeats every
// second, until ctx ends.
func serveTestHub(t *testing.T, ctx context.Context, hubDir string) {
	t.Helper()
	ready := make(chan string, 1)
	go func() {
		_ = hubcli.Serve(ctx, hubcli.ServeOptions{Data: hubDir, Listen: "127.0.0.1:0", SANs: []string{"127.0.0.1"},
			HeartbeatInterval: time.Second, Ready: func(u, _ string) { ready <- u }})
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("hub did not start")
	}
}
