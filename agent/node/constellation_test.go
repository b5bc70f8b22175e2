package node

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
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
// with a constellation section joins the hub; one without it does not.
func TestStandinAppliedConfigJoins(t *testing.T) {
	hubDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	cfg := "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nk3s:\n  https-listen-port: 0\n" +
		"constellation:\n  join: \"" + strings.TrimSpace(out.String()) + "\"\n"
	if _, err := client.ApplyConfig(ctx, []byte(cfg)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	waitUntil(t, "the join of the applied config", 60*time.Second, func() bool { return con.has("etoile: constellation joined") })
}
